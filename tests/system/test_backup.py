"""`imageserver backup` of a running appliance under DHCP traffic, restored on another box.

The real daemon serves a lab segment with hosts, reservations, a client's lease and an image in two versions
that share their unchanged files (hard links across versions, like getimage's --link-dest). While busybox
udhcpc keeps renewing its lease (each renewal is a committed write), `imageserver backup` runs. Then the old
box is stopped, the backup is restored with the new box's own config into a fresh state dir, and a daemon
started on it: hosts, reservations, images and versions are the same rows, the lease is the same address
(and the client renews it from the new box), the image trees are identical file by file with their hard
links (same number of inodes). A tampered copy of the backup is refused naming the file, and the target
state dir is left exactly as it was.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from appliance.images.catalog import Catalog
from lab.clients import Udhcpc
from lab.daemon import daemon_env
from lab.netns import Lab
from tests.system._daemon import Imageserver
from tests.system._mastertree import build_master
from tests.system._treecmp import compare_trees

pytestmark = pytest.mark.system

STATIC_TABLES = {"hosts": "name", "reservations": "mac", "images": "name, version"}


def rows(db: Path, table: str, order: str, drop: tuple[str, ...] = ()) -> list[dict[str, object]]:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        conn.row_factory = sqlite3.Row
        out = [dict(r) for r in conn.execute(f"SELECT * FROM {table} ORDER BY {order}")]
    for row in out:
        for column in drop:
            row.pop(column)
    return out


def inodes(root: Path) -> tuple[int, int]:
    """(distinct inodes, paths) of the regular files under root."""
    seen, paths = set(), 0
    for dirpath, _, files in os.walk(root):
        for name in files:
            st = os.lstat(os.path.join(dirpath, name))
            if not os.path.islink(os.path.join(dirpath, name)):
                seen.add(st.st_ino)
                paths += 1
    return len(seen), paths


def two_versions(lab: Lab, state_dir: Path) -> None:
    """Image web: v1 the master tree (plus 32 MiB, so the copy takes a while), v2 = v1 with one file changed,
    every other file a hard link into v1."""
    master = build_master(lab.tmp_path("tree"), lab.tmp_path("disk.img"))
    (master.root / "srv/blob").write_bytes(os.urandom(32 << 20))
    catalog = Catalog(state_dir)
    staged = catalog.new_staging("web")
    subprocess.run(["cp", "-a", f"{master.root}/.", f"{staged}/"], check=True)
    v1 = catalog.register("web", staged, source="test", layout_json=None)
    staged = catalog.new_staging("web")
    subprocess.run(["cp", "-a", "--link", f"{v1.path}/.", f"{staged}/"], check=True)
    (staged / "etc/motd").unlink()
    (staged / "etc/motd").write_text("version two\n")
    catalog.register("web", staged, source="test", layout_json=None, previous=v1)
    catalog.paths.scripts.mkdir()
    catalog.paths.script("web").write_text("#!/bin/sh\n# the site's own install script for web\n")
    catalog.close()


def cli(server: Imageserver, config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`imageserver --config CONFIG ARGS` in the server's namespace."""
    return server.ns.run([sys.executable, "-m", "appliance.cli", "--config", str(config), *args],
                         env=daemon_env(), check=False, timeout=300)


def test_backup_under_dhcp_traffic_restores_identically_on_another_box(lab: Lab) -> None:
    pair = lab.server_client_pair()
    old = Imageserver(pair.server, pair.server_if, pair.server_ip, pair.subnet)
    old.state_dir.mkdir(mode=0o700)
    two_versions(lab, old.state_dir)
    old.start()
    net = pair.subnet.network_address
    old.cli("hosts", "add", "node1", "--mac", "52:54:00:10:00:01", "--image", "web", "--version", "1")
    old.cli("hosts", "add", "node2", "--mac", "52:54:00:10:00:02", "--image", "web", "--ip", str(net + 20))
    old.cli("reservations", "add", "52:54:00:10:00:03", str(net + 30), "--hostname", "printer")
    client = Udhcpc(pair.client, pair.client_if)
    lease = client.start()

    # DHCP traffic while the backup runs: udhcpc renews over and over (each renewal is a commit).
    renewals: list[float] = []
    stop = threading.Event()

    def traffic() -> None:
        while not stop.is_set():
            assert client.renew().ip == lease.ip
            renewals.append(time.monotonic())

    thread = threading.Thread(target=traffic, daemon=True)
    thread.start()
    backup = lab.tmp_path("backup")
    try:
        time.sleep(0.5)
        began = time.monotonic()
        taken = old.run_cli("backup", str(backup), "--json")
        ended = time.monotonic()
    finally:
        stop.set()
        thread.join(30)
    assert taken.returncode == 0, taken.stderr
    summary = json.loads(taken.stdout)
    during = [t for t in renewals if began <= t <= ended]
    print(f"\nbackup: {summary} with {len(during)} DHCP renewals during it")
    assert during, "no DHCP renewal happened while the backup ran"
    assert (summary["images"], summary["versions"]) == (1, 2) and summary["files"] > 50
    assert sorted(os.listdir(backup)) == ["config", "manifest.json", "state"]

    # Restoring onto the running box is refused (exit 4), even with --force, and changes nothing.
    busy = cli(old, old.config, "restore", str(backup), "--force")
    assert busy.returncode == 4 and "is in use by pid=" in busy.stderr, busy.stderr
    assert not [p for p in old.state_dir.parent.iterdir() if "pre-restore" in p.name or "restoring" in p.name]

    # The old box goes away; the new box has its own config (same LAN) and an empty state dir.
    assert old.daemon.stop() == 0
    new_config = lab.tmp_path("box2.toml")
    new_state = lab.tmp_path("box2-state")
    new_config.write_text(old.config.read_text().replace(f'state_dir = "{old.state_dir}"',
                                                         f'state_dir = "{new_state}"'))
    restored = cli(old, new_config, "restore", str(backup), "--json")
    assert restored.returncode == 0, restored.stderr
    report = json.loads(restored.stdout)
    assert report["state_dir"] == str(new_state) and report["versions"] == 2 and report["config"].startswith("kept")

    old_db, new_db = old.state_dir / "imageserver.db", new_state / "imageserver.db"
    for table, order in STATIC_TABLES.items():
        drop = ("path",) if table == "images" else ()
        assert rows(new_db, table, order, drop) == rows(old_db, table, order, drop), table
    assert [r["path"] for r in rows(new_db, "images", "version")] == [str(new_state / "images/web/v1"),
                                                                      str(new_state / "images/web/v2")]
    leases = rows(new_db, "leases", "mac", ("starts", "expires"))
    assert leases == rows(old_db, "leases", "mac", ("starts", "expires"))
    mac = pair.client.run(["cat", f"/sys/class/net/{pair.client_if}/address"]).stdout.strip()
    assert [(r["mac"], r["ip"]) for r in leases] == [(mac, int(lease.ip))]
    for version in ("v1", "v2"):
        assert compare_trees(old.state_dir / "images/web" / version, new_state / "images/web" / version) == []
    assert inodes(new_state / "images") == inodes(old.state_dir / "images/web")  # links kept, nothing doubled
    assert inodes(new_state / "images")[0] < inodes(new_state / "images")[1]
    assert (new_state / "admin.token").read_text() == (old.state_dir / "admin.token").read_text()
    assert os.stat(new_state / "admin.token").st_mode & 0o777 == 0o600

    # The new box runs on the restored state: the same hosts over its API, the same lease renewed.
    new = Imageserver(pair.server, pair.server_if, pair.server_ip, pair.subnet)
    new.daemon.config, new.daemon.state_dir = new_config, new_state
    new.start()
    hosts = new.cli_json("hosts", "list")
    assert sorted(h["name"] for h in (hosts["hosts"] if isinstance(hosts, dict) else hosts)) == ["node1", "node2"]
    assert {(i["name"], i["version"]) for i in new.cli_json("images", "list")} == {("web", 1), ("web", 2)}
    for version in ("v1", "v2"):  # each restored version against the manifest it was registered with
        assert new.cli_json("images", "verify", "web", version) == []
    assert client.renew().ip == lease.ip
    assert new.daemon.stop() == 0

    # A tampered copy of the backup is refused naming the file; the target (with --force) is untouched.
    bad = lab.tmp_path("tampered")
    subprocess.run(["cp", "-a", f"{backup}/.", f"{bad}/"], check=True)
    target = bad / "state/images/web/v2/etc/motd"
    target.write_text("version 2!!\n")  # same size: only the SHA-256 tells
    before = sorted(str(p.relative_to(new_state)) for p in new_state.rglob("*"))
    refused = cli(old, new_config, "restore", str(bad), "--force")
    assert refused.returncode == 1
    assert "state/images/web/v2/etc/motd: content differs" in refused.stderr, refused.stderr
    assert sorted(str(p.relative_to(new_state)) for p in new_state.rglob("*")) == before
    assert not [p for p in new_state.parent.iterdir() if "pre-restore" in p.name or "restoring" in p.name]
    # And a truncated one likewise.
    shutil.rmtree(bad)
    subprocess.run(["cp", "-a", f"{backup}/.", f"{bad}/"], check=True)
    os.truncate(bad / "state/images/web/v1/srv/blob", 1 << 20)
    refused = cli(old, new_config, "restore", str(bad), "--force")
    assert refused.returncode == 1 and "state/images/web/v1/srv/blob: 1048576 bytes" in refused.stderr
    assert sorted(str(p.relative_to(new_state)) for p in new_state.rglob("*")) == before
