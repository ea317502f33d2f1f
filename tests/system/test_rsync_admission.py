"""Issue 16, part 1: a mass install queues at the rsync daemon instead of failing.

The real daemon (`imageserver serve`, its supervised `rsync --daemon` with `[rsyncd] max_connections
= 2`) in a server namespace behind a bridge; five machines, each its own namespace with its own
address, run the real fetch of the autoinstall script (its shell functions, as generated: `pull_image`
through `rsync_admitted`, reporting stages to the daemon with the host's install token) at the same
moment. All five end with the image's tree; the server side never runs more than two transfers at once
(counted from /proc: the daemon's children chrooted into an image tree, sampled every 10 ms); the refused
machines reported stage "queued" and `/api/v1/hosts` showed them waiting.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from pathlib import Path

import pytest

from domain.hosts import new_host_op
from lab.netns import Lab, Namespace
from state.credentials import rsync_password
from state.db import connect, db_path
from state.images import ImageVersion, insert_version
from tests.installer_sh import runtime_header
from tests.system._daemon import Imageserver
from tests.system._treecmp import compare_trees

pytestmark = [pytest.mark.system, pytest.mark.skipif(shutil.which("rsync") is None, reason="rsync is needed")]

RSYNC_PORT = 8873
MACHINES = 5
SLOTS = 2

# The real script's first lines (the installer's runtime: its functions and variables), then
# the fetch: exactly what an installer runs at stage rsync. --bwlimit (KiB/s) is passed through to the
# transfer so that each takes about a second and the five overlap.
FETCH = runtime_header("web", 1, RSYNC_PORT) + """
stage rsync "$MODULE from $IMAGESERVER_HOST:$RSYNC_PORT"
pull_image --bwlimit=16000
stage fetched "tree in $TARGET"
"""


def make_image(tree: Path) -> None:
    (tree / "etc").mkdir(parents=True)
    (tree / "boot").mkdir()
    (tree / "etc/hostname").write_text("master\n")
    (tree / "boot/vmlinuz").write_bytes(os.urandom(1 << 20))
    (tree / "usr/lib").mkdir(parents=True)
    (tree / "usr/lib/big").write_bytes(os.urandom(16 << 20))
    os.link(tree / "usr/lib/big", tree / "usr/lib/big-link")  # hard links survive (-H)
    os.symlink("big", tree / "usr/lib/big-sym")
    # rsync compares a symlink's mtime to the second before setting it: one made in the same second as the
    # pull would keep the copy's own nanoseconds (see tests/system/_mastertree.py). A time in the past.
    os.utime(tree / "usr/lib/big-sym", ns=(1_600_000_000_123_456_789, 1_600_000_000_123_456_789),
             follow_symlinks=False)


def transfers_now(daemon_pid: int, trees: str) -> int:
    """The daemon's children serving a module now: they chroot into the image tree (`use chroot`)."""
    n = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            if ppid == daemon_pid and os.readlink(f"/proc/{entry}/root").startswith(trees):
                n += 1
        except (OSError, ValueError, IndexError):
            continue
    return n


def test_five_machines_share_two_rsync_slots_and_all_finish(lab: Lab) -> None:
    server_ns = lab.namespace("srv")
    bridge = lab.ifname("br")
    lab.bridge(server_ns, bridge)
    subnet = lab.random_subnet()
    server_ip = subnet.network_address + 1
    server_ns.add_address(bridge, f"{server_ip}/24")
    server = Imageserver(server_ns, bridge, server_ip, subnet,
                         extra=f"\n[rsyncd]\nport = {RSYNC_PORT}\nmax_connections = {SLOTS}\n")
    tree = server.state_dir / "images/web/v1"
    make_image(tree)
    machines: list[tuple[str, str, Namespace, str]] = []  # name, mac, namespace, address
    now = time.time()
    conn = connect(db_path(server.state_dir))
    try:
        insert_version(conn, ImageVersion("web", 1, str(tree), now, source="test"))
        for i in range(MACHINES):
            name, mac, ip = f"node{i + 1}", f"52:54:00:16:00:{i + 1:02x}", subnet.network_address + 20 + i
            new_host_op(name, mac, "web", ip, now)(conn)
            ns = lab.namespace(f"m{i + 1}")
            a, b = lab.ifname("vb"), lab.ifname("vm")
            lab.veth(server_ns, a, ns, b)
            server_ns.ip("link", "set", a, "master", bridge)
            ns.add_address(b, f"{ip}/24")
            machines.append((name, mac, ns, str(ip)))
        tokens = {name: conn.execute("SELECT install_token FROM hosts WHERE name = ?", (name,)).fetchone()[0]
                  for name, *_ in machines}
    finally:
        conn.close()
    server.start()
    deadline = time.monotonic() + 10
    while (rsyncd := server.api("/api/v1/status")["services"]["rsyncd"])["state"] != "running":
        assert time.monotonic() < deadline, "rsyncd never ran"
        time.sleep(0.1)
    assert f"max connections = {SLOTS}" in (server.state_dir / "rsyncd.conf").read_text()
    daemon_pid = rsyncd["pid"]
    trees = str(server.state_dir / "images")

    # The server side, sampled while the machines fetch; and what the operator's host list shows.
    peak, samples, seen_queued = 0, 0, set()
    stop = threading.Event()

    def watch_server() -> None:
        nonlocal peak, samples
        while not stop.is_set():
            peak = max(peak, transfers_now(daemon_pid, trees))
            samples += 1
            time.sleep(0.01)

    def watch_hosts() -> None:
        while not stop.is_set():
            for h in server.api("/api/v1/hosts")["hosts"]:
                if (h.get("progress") or {}).get("stage") == "queued":
                    seen_queued.add(h["name"])
            time.sleep(0.2)

    watchers = [threading.Thread(target=watch_server), threading.Thread(target=watch_hosts)]
    for t in watchers:
        t.start()
    script = lab.tmp_path("fetch.sh")
    script.write_text(FETCH)
    procs = []
    started = time.monotonic()
    try:
        for name, mac, ns, _ip in machines:
            target = lab.tmp_path(f"target-{name}")
            target.mkdir()
            env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "IMAGESERVER": str(server_ip),
                   "RSYNC_PORT": str(RSYNC_PORT), "IMAGE": "web", "VERSION": "1", "TARGET": str(target),
                   "RSYNC_USER": name, "RSYNC_PASSWORD": rsync_password(tokens[name]), "MAC": mac,
                   "INSTALL_TOKEN": tokens[name], "IMAGESERVER_URL": f"http://{server_ip}:8080",
                   "RSYNC_RETRY_FIRST": "1", "RSYNC_RETRY_MAX": "2", "RSYNC_QUEUE_TIMEOUT": "120"}
            procs.append((name, target, ns.popen(["sh", str(script)], env=env)))
        for name, _, proc in procs:
            code = proc.wait(120)
            assert code == 0, f"{name}: {proc.output()[-2000:]}"
    finally:
        stop.set()
        for t in watchers:
            t.join()
    elapsed = time.monotonic() - started
    print(f"\n{MACHINES} machines, {SLOTS} slots: {elapsed:.1f} s, server-side peak {peak} "
          f"transfers over {samples} samples, queued seen for {sorted(seen_queued)}")

    for name, target, _proc in procs:
        problems = compare_trees(tree, target)
        assert problems == [], f"{name}: " + "\n".join(problems[:10])
    assert 0 < peak <= SLOTS, f"the daemon ran {peak} transfers at once (cap {SLOTS})"
    status = server.api("/api/v1/status")["services"]["rsyncd"]
    assert status["counters"]["busy"] >= 1 and 0 < status["transfers_peak"] <= SLOTS, status

    # Who waited said so, with its own token, and then went back to rsync and finished.
    with server.db() as db:
        rows = db.execute("SELECT host, stage FROM install_events ORDER BY id").fetchall()
    queued = {h for h, s in rows if s == "queued"}
    assert len(queued) >= MACHINES - SLOTS, rows
    for host in queued:
        stages = [s for h, s in rows if h == host]
        assert stages[0] == "rsync" and "queued" in stages and stages[-1] == "fetched", stages
        assert stages[stages.index("queued") + 1:].count("rsync") >= 1, stages  # admitted: stage rsync again
    assert seen_queued, "no host was ever shown at stage queued by /api/v1/hosts"
    assert seen_queued <= queued
