"""Issue 16, part 1, for updates: updateclient waits in line when the rsync daemon is full.

The real daemon with `[rsyncd] max_connections = 1`; its one slot is held by another machine's
install pull (real rsync with its install credentials, slowed with --bwlimit to a few seconds). Meanwhile
updateclient (fetched from GET /client/updateclient) syncs node1 v1 -> v2: refused at first, it waits
with backoff and then completes; the tree is v2 except node1's own files, and the daemon counted the
refusals. (The updateclient before rsync_in_line fails here: its --list-only check is refused with
"max connections reached" and it reports the version as having no /etc.)
"""

from __future__ import annotations

import os
import shutil
import time

import pytest

from domain.hosts import new_host_op
from lab.netns import Lab
from state.credentials import rsync_password, update_token
from state.db import connect, db_path
from state.images import ImageVersion, insert_version
from tests.system._daemon import API_PORT, Imageserver
from tests.system.test_updateclient import HOST, MAC, build_v1, build_v2, install_client, manifest

pytestmark = [pytest.mark.system, pytest.mark.skipif(shutil.which("rsync") is None, reason="rsync is needed")]

RSYNC_PORT = 8873


def test_updateclient_waits_for_a_free_slot_and_then_syncs(lab: Lab) -> None:
    pair = lab.server_client_pair()
    node1, holder = pair.host(20), pair.host(21)
    for ip in (node1, holder):
        pair.client.add_address(pair.client_if, f"{ip}/{pair.subnet.prefixlen}")
    server = Imageserver(pair.server, pair.server_if, pair.server_ip, pair.subnet,
                         extra=f"\n[rsyncd]\nport = {RSYNC_PORT}\nmax_connections = 1\n")
    images = server.state_dir / "images"
    v1, v2 = images / "web/v1", images / "web/v2"
    build_v1(v1)
    build_v2(v1, v2)
    big = images / "big/v1"
    (big / "etc").mkdir(parents=True)
    (big / "blob").write_bytes(os.urandom(24 << 20))
    now = time.time()
    conn = connect(db_path(server.state_dir))
    try:
        for name, n, path in (("web", 1, v1), ("web", 2, v2), ("big", 1, big)):
            insert_version(conn, ImageVersion(name, n, str(path), now, source="test"))
        new_host_op(HOST, MAC, "web", node1, now)(conn)  # its update token works from its address
        conn.execute("UPDATE hosts SET state = 'installed', running_version = 1 WHERE name = ?", (HOST,))
        new_host_op("holder", "52:54:00:16:03:01", "big", holder, now)(conn)
        tokens = dict(conn.execute("SELECT name, install_token FROM hosts").fetchall())
    finally:
        conn.close()
    server.start()
    root = lab.tmp_path("node1-root")
    root.mkdir()
    install_client(v1, root, update_token(tokens[HOST]), f"{pair.server_ip}:{API_PORT}")
    kept = manifest(root, keep_only=True)
    script = lab.tmp_path("updateclient")
    pair.client.run(["curl", "-sSf", "-o", str(script), f"http://{pair.server_ip}:{API_PORT}/client/updateclient"])
    deadline = time.monotonic() + 10
    while server.api("/api/v1/status")["services"]["rsyncd"]["state"] != "running":
        assert time.monotonic() < deadline
        time.sleep(0.1)

    # The holder's install pull takes the only slot for about 4 s (24 MiB at 6 MiB/s).
    env = {"PATH": "/usr/bin:/bin", "RSYNC_PASSWORD": rsync_password(tokens["holder"])}
    hold = pair.client.popen(["rsync", "-a", "--bwlimit=6000", f"--address={holder}",
                              f"rsync://holder@{pair.server_ip}:{RSYNC_PORT}/big_v1/", str(lab.tmp_path("held"))],
                             env=env)
    deadline = time.monotonic() + 10
    while server.api("/api/v1/status")["services"]["rsyncd"]["transfers_active"] < 1:
        assert time.monotonic() < deadline, hold.output()
        time.sleep(0.05)
    started = time.monotonic()
    r = pair.client.run(["sh", str(script), "--root", str(root)], check=False, timeout=120,
                        env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "RSYNC_RETRY_FIRST": "1", "RSYNC_RETRY_MAX": "2"})
    took = time.monotonic() - started
    assert r.returncode == 0, r.stdout + r.stderr
    assert hold.wait(60) == 0, hold.output()
    assert "waiting in line" in r.stderr and "waited" in r.stderr, r.stderr
    assert "runs web v2" in r.stdout
    assert manifest(root) == manifest(v2) and manifest(root, keep_only=True) == kept
    status = server.api("/api/v1/status")["services"]["rsyncd"]
    assert status["counters"]["busy"] >= 1 and status["transfers_peak"] == 1, status
    print(f"\nupdateclient waited for the slot and finished in {took:.1f} s; busy refusals "
          f"{status['counters']['busy']}")
