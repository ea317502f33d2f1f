"""The generated NAME.master installs an image onto a file-backed disk on a loop device.

The layout is what the real prepareclient recorded for the master's disk; the script comes from the
real `imageserver mkautoinstallscript`; the image is pulled from the supervised rsync daemon over
loopback; stage reports go to an HTTP listener on loopback. The script runs in a private mount
namespace (`unshare -m`), so its mounts cannot outlive it. The boot loader is skipped
(SKIP_BOOTLOADER=1): installing GRUB and booting the result is the QEMU test's job.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from importlib.resources import files
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from appliance.images.catalog import Catalog
from appliance.images.layout import parse_sfdisk_dump, read_layout
from services.rsyncd import RsyncdService, RsyncdSettings
from state.images import list_versions
from tests.installer_sh import RUNTIME_ENV
from tests.system._mastertree import DISK_BYTES, build_master
from tests.system._treecmp import compare_trees

pytestmark = [
    pytest.mark.system,
    pytest.mark.skipif(os.geteuid() != 0, reason="loop devices and mounts need root"),
    pytest.mark.skipif(any(shutil.which(t) is None for t in ("losetup", "unshare", "mkfs.xfs", "mkfs.ext4", "curl")),
                       reason="needs losetup, unshare, mkfs.xfs (xfsprogs), mkfs.ext4 and curl"),
]

ROOT = Path(__file__).resolve().parents[2]
PREPARECLIENT = str(files("appliance") / "data" / "prepareclient")
MAC = "52:54:00:12:34:56"
TOKEN = "install-token-for-test"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def loops_of(path: Path) -> list[str]:
    out = subprocess.run(["losetup", "-j", str(path)], capture_output=True, text=True).stdout
    return [line.split(":")[0] for line in out.splitlines() if line.strip()]


@contextlib.contextmanager
def loop_device(path: Path) -> Iterator[str]:
    dev = subprocess.run(["losetup", "-f", "--show", str(path)], capture_output=True, text=True,
                         check=True).stdout.strip()
    try:
        yield dev
    finally:
        for d in loops_of(path):  # ours, and any the script failed to detach
            subprocess.run(["losetup", "-d", d], capture_output=True)


@contextlib.contextmanager
def mounted_partitions(disk_file: Path, parts: list[tuple[int, int, str]], where: Path) -> Iterator[Path]:
    """Mount (start, size, mountpoint) sector ranges of disk_file read-only under `where`."""
    mounted: list[Path] = []
    devs: list[str] = []
    try:
        for start, size, mountpoint in parts:
            dev = subprocess.run(["losetup", "-f", "--show", "-r", "-o", str(start * 512), "--sizelimit",
                                  str(size * 512), str(disk_file)], capture_output=True, text=True,
                                 check=True).stdout.strip()
            devs.append(dev)
            target = where / mountpoint.lstrip("/")
            subprocess.run(["mount", "-o", "ro", dev, str(target)], check=True)
            mounted.append(target)
        yield where
    finally:
        for target in reversed(mounted):
            subprocess.run(["umount", str(target)], capture_output=True)
        for dev in devs:
            subprocess.run(["losetup", "-d", dev], capture_output=True)


async def events_listener(events: list[dict[str, Any]]) -> tuple[web.AppRunner, int]:
    async def event(request: web.Request) -> web.Response:
        body = await request.json()
        events.append({"mac": request.match_info["mac"], "auth": request.headers.get("Authorization"), **body})
        return web.json_response({"ok": True})

    app = web.Application()
    app.add_routes([web.post("/install/{mac}/events", event)])
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, port


async def test_master_script_partitions_formats_and_installs_the_image(tmp_path: Path) -> None:
    master = build_master(tmp_path / "master", tmp_path / "master-disk.img")
    # The layout as the real prepareclient records it (--ssh: record only, no daemon).
    env = {"PATH": os.environ["PATH"], "SYSTEMIMAGER_ROOT": str(master.root), "SYSTEMIMAGER_DISKS": str(master.disk)}
    subprocess.run(["sh", PREPARECLIENT, "--ssh"], env=env, check=True, capture_output=True)
    state = tmp_path / "state"
    catalog = Catalog(state)
    staged = catalog.new_staging("lab")
    subprocess.run(["cp", "-a", f"{master.root}/.", f"{staged}/"], check=True)
    layout = read_layout(staged / "etc/systemimager")
    iv = catalog.register("lab", staged, source="test", layout_json=layout.to_json())
    catalog.close()
    rsync_port = free_port()
    config = tmp_path / "imageserver.toml"
    config.write_text(f'[appliance]\nstate_dir = "{state}"\n[rsyncd]\nport = {rsync_port}\n')
    made = subprocess.run([sys.executable, "-m", "appliance.cli", "mkautoinstallscript", "--image", "lab",
                           "--config", str(config)], cwd=ROOT, capture_output=True, text=True)
    assert made.returncode == 0, made.stderr
    script = state / "scripts/lab.master"

    reader = sqlite3.connect(state / "imageserver.db")
    rsyncd = RsyncdService(RsyncdSettings(state_dir=state, address="127.0.0.1", port=rsync_port),
                           lambda: [(v.name, v.version, v.path) for v in list_versions(reader)])
    events: list[dict[str, Any]] = []
    runner, http_port = await events_listener(events)
    await rsyncd.start()
    target_file = tmp_path / "target-disk.img"
    with open(target_file, "wb") as f:
        f.truncate(DISK_BYTES + (64 << 20))  # a bigger disk: the last partition grows
    try:
        with loop_device(target_file) as disk:
            run_env = {"PATH": os.environ["PATH"], "DISK": disk, "IMAGESERVER": "127.0.0.1",
                       "RSYNC_PORT": str(rsync_port), "TARGET": str(tmp_path / "target"), "SKIP_BOOTLOADER": "1",
                       "HOSTNAME": "node7", "DOMAIN": "lab.test", "IPADDR": "10.9.8.7", "NETMASK": "255.255.255.0",
                       "GATEWAY": "10.9.8.1", "DNS": "10.9.8.1", "MAC": MAC, "INSTALL_TOKEN": TOKEN,
                       "IMAGESERVER_URL": f"http://127.0.0.1:{http_port}", **RUNTIME_ENV}
            proc = await asyncio.create_subprocess_exec(
                "unshare", "-m", "--propagation", "private", "sh", str(script), env=run_env,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
            out, _ = await asyncio.wait_for(proc.communicate(), 120)
            log = out.decode(errors="replace")
            assert proc.returncode == 0, log
            assert loops_of(target_file) == [disk], "the script left partition loop devices behind"
            dump = subprocess.run(["sfdisk", "--dump", disk], capture_output=True, text=True, check=True).stdout
    finally:
        await rsyncd.stop()
        await runner.cleanup()
        reader.close()
    print(f"\n{log}")

    # Stages, in order, each reported with the install token.
    stages = [e["stage"] for e in events]
    mkfs = ["mkfs"] * (4 if master.vfat else 3)
    # "partition" twice: the disk size check, then the table itself.
    assert stages == ["partition", "partition", *mkfs, "mount", "rsync", "fstab", "hostname", "network", "identity",
                      "bootloader", "post-install", "finished"]
    assert all(e["auth"] == f"Bearer {TOKEN}" and e["mac"] == MAC for e in events)
    assert "skipped" in events[stages.index("bootloader")]["detail"]

    # The partition table: same numbers and types, the data partitions where they were; the last data
    # partition (/srv) grew into the bigger disk, and the trailing swap kept its size at the disk's end.
    header, parts = parse_sfdisk_dump(dump)
    old = layout.disks[0].partitions
    assert header["label"] == "gpt"
    assert [(p.number, p.type) for p in parts] == [(p.number, p.type) for p in old]
    assert [p.start for p in parts[:3]] == [p.start for p in old[:3]]
    assert parts[0].type == "c12a7328-f81f-11d2-ba4b-00a0c93ec93b"  # the ESP
    assert parts[2].size > old[2].size, (parts[2], old[2])
    assert parts[3].size == old[3].size and parts[3].start > old[3].start, (parts[3], old[3])
    blkid = {p.number: subprocess.run(["blkid", "-p", "-o", "export", "--offset", str(p.start * 512), "--size",
                                       str(p.size * 512), str(target_file)], capture_output=True, text=True).stdout
             for p in parts}
    assert "TYPE=ext4" in blkid[2] and "TYPE=xfs" in blkid[3] and "TYPE=swap" in blkid[4]
    uuids = {n: next(line[5:] for line in text.splitlines() if line.startswith("UUID=")) for n, text in blkid.items()
             if "UUID=" in text}

    # The installed files are the image, except what the script rewrote for this machine.
    where = tmp_path / "check"
    where.mkdir()
    with mounted_partitions(target_file, [(parts[1].start, parts[1].size, "/"), (parts[2].start, parts[2].size,
                                                                                  "/srv")], where):
        rewritten = ["etc/fstab", "etc/hostname", "etc/hosts", "etc/resolv.conf", "etc/hook-ran",
                     "etc/systemd/network/10-imageserver.network", "lost+found",
                     # updateclient's settings and script, added to every installed machine
                     "etc/systemimager/updateclient.conf", "usr/local", "usr/local/sbin",
                     "usr/local/sbin/updateclient"]
        problems = compare_trees(Path(iv.path), where, ignore=rewritten)
        assert problems == [], "\n".join(problems[:20])
        fstab = (where / "etc/fstab").read_text()
        assert f"UUID={uuids[2]}\t/\text4" in fstab and f"UUID={uuids[3]}\t/srv\txfs" in fstab
        assert f"UUID={uuids[4]}\tnone\tswap" in fstab and "PARTUUID" not in fstab.split("\n", 1)[1]
        assert "proc /proc proc defaults 0 0" in fstab
        assert (where / "etc/hostname").read_text() == "node7\n"
        assert "127.0.1.1\tnode7.lab.test node7" in (where / "etc/hosts").read_text()
        network = (where / "etc/systemd/network/10-imageserver.network").read_text()
        assert f"MACAddress={MAC}" in network and "Address=10.9.8.7/24" in network and "Gateway=10.9.8.1" in network
        assert (where / "etc/hook-ran").read_text() == "hook ran for node7 on lab\n"  # ran inside the new system
