"""Capture over a real network: a master client in its own namespace runs the real prepareclient over a
test tree (SYSTEMIMAGER_ROOT); the imageserver's getimage runs in the server namespace and pulls it
with rsync over a veth pair. Then the supervised rsync daemon serves versions to a client namespace.
"""

from __future__ import annotations

import asyncio
import os
import platform
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

import pytest

from appliance.images.catalog import Catalog
from lab.netns import Lab, Namespace, Pair, child_pids, process_name
from protocols.arch import canonical_arch
from services.rsyncd import RsyncdService, RsyncdSettings
from state.images import list_versions
from tests.system._mastertree import NON_UTF8, Master, build_master, mount_virtual, unmount
from tests.system._treecmp import compare_trees

pytestmark = pytest.mark.system

ROOT = Path(__file__).resolve().parents[2]
PREPARECLIENT = str(files("appliance") / "data" / "prepareclient")
# What getimage must leave out of this tree (contents only; the directories stay as mount points).
EXCLUDED = ("proc", "mnt/ram", "tmp", "run")


@dataclass
class Site:
    lab: Lab
    pair: Pair
    master: Master
    state: Path
    config: Path

    @property
    def client_ip(self) -> str:
        return str(self.pair.host(2))

    def env(self) -> dict[str, str]:
        return {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"), "PYTHONPATH": str(ROOT),
                "LANG": "C.UTF-8"}

    def prepareclient(self, *args: str) -> subprocess.CompletedProcess[str]:
        env = {**self.env(), "SYSTEMIMAGER_ROOT": str(self.master.root), "SYSTEMIMAGER_DISKS": str(self.master.disk)}
        return self.lab.run(self.pair.client, ["sh", PREPARECLIENT, *args], env=env)

    def imageserver(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.lab.run(self.pair.server, [sys.executable, "-m", "appliance.cli", *args, "--config",
                                               str(self.config)], env=self.env(), check=check, timeout=120)

    def getimage_argv(self, *extra: str) -> list[str]:
        return [sys.executable, "-m", "appliance.cli", "getimage", "--config", str(self.config), "--master-client",
                self.client_ip, "--image", "lab", "--yes", *extra]

    def rows(self) -> list[tuple[str, int]]:
        conn = sqlite3.connect(f"file:{self.state / 'imageserver.db'}?mode=ro", uri=True)
        try:
            return [tuple(r) for r in conn.execute("SELECT name, version FROM images ORDER BY version")]
        finally:
            conn.close()


def make_site(lab: Lab) -> Site:
    pair = lab.server_client_pair()
    pair.client.add_address(pair.client_if, f"{pair.host(2)}/{pair.subnet.prefixlen}")
    master = build_master(lab.tmp_path("master"), lab.tmp_path("master-disk.img"))
    state = lab.tmp_path("state")
    config = lab.tmp_path("imageserver.toml")
    config.write_text(f'[appliance]\nstate_dir = "{state}"\naddress = "{pair.server_ip}"\n')
    return Site(lab, pair, master, state, config)


def test_capture_is_faithful_versions_share_inodes_and_a_killed_pull_leaves_nothing(lab: Lab) -> None:
    site = make_site(lab)
    mounts = mount_virtual(site.master.root)
    try:
        out = site.prepareclient("--server", str(site.pair.server_ip)).stdout
        assert "listening on port 873" in out
        t0 = time.monotonic()
        got = site.imageserver("getimage", "--master-client", site.client_ip, "--image", "lab", "--yes")
        took = time.monotonic() - t0
        assert "image lab v1" in got.stdout
        # Its architecture, read from the tree's /bin/sh (this host's busybox).
        assert f"architecture {canonical_arch(platform.machine())}\n" in got.stdout, got.stdout
        print(f"\ngetimage v1 over veth: {took:.2f} s\n{got.stdout}")
        v1 = site.state / "images/lab/v1"

        # Identical to the master except the excluded contents (mounts and runtime dirs stay as empty dirs).
        problems = compare_trees(site.master.root, v1, skip_contents=EXCLUDED, dir_attrs_of=("proc", "mnt/ram"))
        assert problems == [], "\n".join(problems[:20])
        for rel in EXCLUDED:
            assert (v1 / rel).is_dir() and os.listdir(v1 / rel) == [], rel
        sparse = os.stat(v1 / "var/sparse.img")
        assert sparse.st_size == 64 << 20 and sparse.st_blocks * 512 < 1 << 20  # still sparse
        assert os.path.exists(os.path.join(os.fsencode(v1 / "home/alice"), NON_UTF8))
        assert (site.state / "scripts/lab.master").exists()  # written after the capture
        subprocess.run(["sh", "-n", str(site.state / "scripts/lab.master")], check=True)

        # Changes on the master, then v2: unchanged files are the same inodes as in v1.
        root = site.master.root
        (root / "etc/motd").write_text("changed for v2\n")
        (root / "etc/added").write_text("new in v2\n")
        (root / "usr/share/doc/gone").unlink()
        os.chmod(root / "usr/share/doc/readme", 0o600)
        os.setxattr(root / "etc/xattr-file", "user.role", b"db")
        site.imageserver("getimage", "--master-client", site.client_ip, "--image", "lab", "--yes")
        v2 = site.state / "images/lab/v2"
        assert compare_trees(root, v2, skip_contents=EXCLUDED, dir_attrs_of=("proc", "mnt/ram")) == []
        for same in ("usr/bin/big", "usr/bin/tool", "var/sparse.img", "etc/fstab"):
            assert os.stat(v1 / same).st_ino == os.stat(v2 / same).st_ino, same
        for changed in ("etc/motd", "etc/xattr-file", "usr/share/doc/readme"):
            assert os.stat(v1 / changed).st_ino != os.stat(v2 / changed).st_ino, changed
        diff = site.imageserver("images", "diff", "lab", "v1", "v2").stdout.splitlines()
        assert diff == ["+ /etc/added", "M /etc/motd  (content, mtime)", "M /etc/xattr-file  (xattrs)",
                        "- /usr/share/doc/gone", "M /usr/share/doc/readme  (mode, xattrs)"]

        # kill -9 of rsync in the middle of pulling v3: no row, no directory, no staging.
        (root / "usr/bin/big2").write_bytes(os.urandom(3 << 20))
        proc = site.lab.popen(site.pair.server, site.getimage_argv("--bwlimit", "500"), env=site.env())
        rsync_pid = wait_for_pull(site, proc.pid)
        os.kill(rsync_pid, signal.SIGKILL)
        assert proc.wait(30) == 1
        output = proc.output()
        assert "killed by signal SIGKILL" in output and "nothing was registered" in output, output
        assert site.rows() == [("lab", 1), ("lab", 2)]
        assert not (site.state / "images/lab/v3").exists()
        staging = site.state / "images/.staging"
        assert [p.name for p in staging.iterdir() if not p.name.endswith(".lock")] == []
    finally:
        site.prepareclient("--stop")
        unmount(mounts)


def wait_for_pull(site: Site, getimage_pid: int, timeout: float = 30) -> int:
    """The pid of getimage's rsync once file data is arriving in staging."""
    staging = site.state / "images/.staging"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        child = next((pid for pid in child_pids(getimage_pid) if process_name(pid) == "rsync"), None)
        trees = [p for p in staging.glob("lab.*") if p.is_dir() and "." not in p.name.split("lab.", 1)[1]]
        if child and trees and (trees[0] / "usr/bin").is_dir():
            return child
        time.sleep(0.05)
    raise AssertionError("getimage's rsync never started pulling")


async def test_supervised_rsyncd_serves_a_namespace_client_and_survives_kill_9(lab: Lab) -> None:
    pair = lab.server_client_pair()
    pair.client.add_address(pair.client_if, f"{pair.host(2)}/{pair.subnet.prefixlen}")
    state = lab.tmp_path("state")
    master = build_master(lab.tmp_path("tree"), lab.tmp_path("disk.img"))
    catalog = Catalog(state)
    staged = catalog.new_staging("served")
    subprocess.run(["cp", "-a", f"{master.root}/.", f"{staged}/"], check=True)
    iv = catalog.register("served", staged, source="test", layout_json=None)
    catalog.close()
    reader = sqlite3.connect(state / "imageserver.db")
    svc = RsyncdService(
        RsyncdSettings(state_dir=state, address=str(pair.server_ip), port=873, hosts_allow=(str(pair.subnet),),
                       launcher=("ip", "netns", "exec", pair.server.name)),
        lambda: [(v.name, v.version, v.path) for v in list_versions(reader)])
    await svc.start()
    try:
        assert svc.status()["state"] == "running"
        dest = lab.tmp_path("pulled")
        await pull_in(lab, pair.client, f"rsync://{pair.server_ip}/served_v1/", dest)
        assert compare_trees(Path(iv.path), dest) == []
        old = svc.pid
        assert old is not None
        os.kill(old, signal.SIGKILL)
        start = time.monotonic()
        while not (svc.pid not in (None, old) and svc.status()["state"] == "running"):
            assert time.monotonic() - start < 2.0, svc.status()
            await asyncio.sleep(0.02)
        print(f"\nrsync daemon back after kill -9 in {time.monotonic() - start:.2f} s")
        st = svc.status()
        assert st["restarts"] == 1 and st["last_exit"]["reason"] == "signal SIGKILL"
        again = lab.tmp_path("pulled-again")
        await pull_in(lab, pair.client, f"rsync://{pair.server_ip}/served/", again)
        assert compare_trees(Path(iv.path), again) == []
        for _ in range(100):
            if svc.status()["counters"].get("transfer", 0) >= 2:
                break
            await asyncio.sleep(0.02)
        assert svc.status()["counters"]["transfer"] >= 2
    finally:
        await svc.stop()
        reader.close()


async def pull_in(lab: Lab, ns: Namespace, url: str, dest: Path) -> None:
    await asyncio.to_thread(lab.run, ns, ["rsync", "-aHAXS", "--numeric-ids", url, f"{dest}/"], timeout=60)
