"""Issue 16, part 2: a satellite appliance for another subnet, with the primary away for a while.

Two real daemons (`imageserver serve`), each in its own namespace on its own subnet: the primary on
subnet A, the satellite on A (uplink) and B (its machines), a machine namespace on B that reaches only
the satellite. The primary's admin issues the satellite's token (`imageserver satellites add edge`);
the satellite mirrors the captured image version over the primary's satellite rsync module (real rsync)
and the hosts over GET /satellite/v1/config. A machine on B runs the real install fetch of the
autoinstall script (its shell functions, as generated) against the satellite's rsync daemon and reports
its stages to the satellite; the reports reach the primary. With the primary stopped, a second machine
still installs from the satellite; its reports wait in the satellite's outbox (status: backlog,
primary-unreachable; they survive a kill -9 of the satellite) and arrive when the primary starts
again: the host shows installed on the primary, whose /api/v1/status lists the satellite with its
versions and an empty backlog.

Strangers: a wrong token gets 401 on both satellite routes; the satellite module refuses rsync without
the satellite's password and with a host's install password; the satellite token is no admin token.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from domain.hosts import new_host_op
from lab.netns import Lab, Namespace
from state.credentials import rsync_password
from state.db import connect, db_path
from state.images import ImageVersion, insert_version
from tests.installer_sh import runtime_header
from tests.system._daemon import API_PORT, Imageserver
from tests.system._treecmp import compare_trees

pytestmark = [pytest.mark.system, pytest.mark.skipif(shutil.which("rsync") is None, reason="rsync is needed")]

RSYNC_PORT = 8873
MACS = {"node1": "52:54:00:16:02:01", "node2": "52:54:00:16:02:02"}

# The real script's functions, the fetch an installer runs, and its final report.
INSTALL = runtime_header("web", 1, RSYNC_PORT) + """
stage rsync "$MODULE from $IMAGESERVER_HOST:$RSYNC_PORT"
pull_image
stage done "installed from $IMAGESERVER_HOST"
"""


def wait_for(what: str, check: Callable[[], object], timeout: float = 30.0) -> object:
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def make_image(tree: Path) -> None:
    (tree / "etc").mkdir(parents=True)
    (tree / "boot").mkdir()
    (tree / "etc/hostname").write_text("master\n")
    (tree / "etc/shadow").write_text("root:$6$master-secret:19000:0:99999:7:::\n")
    (tree / "etc/shadow").chmod(0o640)
    (tree / "boot/vmlinuz").write_bytes(bytes(range(256)) * 4096)
    (tree / "usr/bin").mkdir(parents=True)
    (tree / "usr/bin/tool").write_bytes(b"\x7fELF" + b"x" * 100_000)
    (tree / "usr/bin/tool").chmod(0o755)
    (tree / "usr/bin/tool-link").hardlink_to(tree / "usr/bin/tool")
    (tree / "usr/bin/sym").symlink_to("tool")


def host_state(server: Imageserver, name: str) -> str | None:
    with server.db() as db:
        row = db.execute("SELECT state FROM hosts WHERE name = ?", (name,)).fetchone()
    return row[0] if row else None


def curl(ns: Namespace, url: str, *args: str) -> tuple[int, str]:
    r = ns.run(["curl", "-s", "--max-time", "10", "-o", "/dev/stdout", "-w", "\n%{http_code}", *args, url],
               check=False, timeout=20)
    body, _, code = r.stdout.rpartition("\n")
    return int(code or 0), body


def test_satellite_mirrors_serves_and_buffers_while_the_primary_is_away(lab: Lab) -> None:
    p_ns, s_ns, m_ns = lab.namespace("prim"), lab.namespace("sat"), lab.namespace("mach")
    p_if, s_up, s_down, m_if = lab.ifname("vp"), lab.ifname("vu"), lab.ifname("vd"), lab.ifname("vm")
    lab.veth(p_ns, p_if, s_ns, s_up)
    lab.veth(s_ns, s_down, m_ns, m_if)
    net_a, net_b = lab.random_subnet(), lab.random_subnet()
    primary_ip, sat_up_ip = net_a.network_address + 1, net_a.network_address + 2
    sat_ip = net_b.network_address + 1
    p_ns.add_address(p_if, f"{primary_ip}/24")
    s_ns.add_address(s_up, f"{sat_up_ip}/24")
    s_ns.add_address(s_down, f"{sat_ip}/24")
    # Routed: the primary reaches subnet B through the satellite (the machine never needs the primary).
    p_ns.ip("route", "add", str(net_b), "via", str(sat_up_ip))
    addresses = {"node1": net_b.network_address + 20, "node2": net_b.network_address + 21}
    for ip in addresses.values():
        m_ns.add_address(m_if, f"{ip}/24")

    primary = Imageserver(p_ns, p_if, primary_ip, net_a, extra=f"\n[rsyncd]\nport = {RSYNC_PORT}\n")
    tree = primary.state_dir / "images/web/v1"
    make_image(tree)
    now = time.time()
    conn = connect(db_path(primary.state_dir))
    try:
        insert_version(conn, ImageVersion("web", 1, str(tree), now, source="test", note="captured"))
        for name, ip in addresses.items():
            new_host_op(name, MACS[name], "web", ip, now)(conn)
    finally:
        conn.close()
    primary.start()
    token = primary.cli("satellites", "add", "edge").strip()
    assert token.startswith("sat-")
    with primary.db() as db:
        stored = db.execute("SELECT token_hash FROM satellites WHERE name = 'edge'").fetchone()[0]
    assert token not in stored and len(stored) == 64  # only its hash is kept

    satellite = Imageserver(s_ns, s_down, sat_ip, net_b, extra=(
        f"\n[rsyncd]\nport = {RSYNC_PORT}\n\n[satellite]\nprimary = \"http://{primary_ip}:{API_PORT}\"\n"
        "interval = 1\n"))
    satellite.state_dir.mkdir(parents=True, mode=0o700)
    (satellite.state_dir / "satellite.token").write_text(token + "\n")
    (satellite.state_dir / "satellite.token").chmod(0o600)

    # --- strangers, before the satellite ever connects ------------------------------------------
    base = f"http://{primary_ip}:{API_PORT}"
    assert curl(s_ns, base + "/satellite/v1/config")[0] == 401
    assert curl(s_ns, base + "/satellite/v1/config", "-H", "Authorization: Bearer sat-not-the-token")[0] == 401
    assert curl(s_ns, base + "/satellite/v1/reports", "-X", "POST", "-H", "Authorization: Bearer sat-wrong",
                "-H", "Content-Type: application/json", "--data", '{"events": []}')[0] == 401
    # The satellite token is not the admin token.
    code, _ = curl(s_ns, base + "/api/v1/hosts", "-X", "POST", "-H", f"Authorization: Bearer {token}",
                   "-H", "Content-Type: application/json", "--data", '{"name": "evil", "mac": "52:54:00:66:66:66"}')
    assert code == 401
    wait_for("the satellite module in rsyncd.conf", lambda: "[satellite_v0]" in
             (primary.state_dir / "rsyncd.conf").read_text(), 10)
    module = f"rsync://sat-edge@{primary_ip}:{RSYNC_PORT}/satellite_v0/web/v1/"
    with primary.db() as db:
        node_token = db.execute("SELECT install_token FROM hosts WHERE name = 'node1'").fetchone()[0]
    for password in ("", rsync_password(node_token), "x" * 40):
        dest = lab.tmp_path("stolen")
        r = s_ns.run(["rsync", "-a", "--contimeout=5", "--timeout=10", module, f"{dest}/"], check=False,
                     env={"PATH": "/usr/bin:/bin", "RSYNC_PASSWORD": password}, timeout=30)
        assert r.returncode != 0 and not (dest / "etc/shadow").exists(), r.stdout + r.stderr
    r = s_ns.run(["rsync", "--contimeout=5", f"rsync://node1@{primary_ip}:{RSYNC_PORT}/satellite_v0/"], check=False,
                 env={"PATH": "/usr/bin:/bin", "RSYNC_PASSWORD": rsync_password(node_token)}, timeout=30)
    assert r.returncode != 0 and "shadow" not in r.stdout

    # --- the satellite mirrors the version and the hosts ----------------------------------------
    satellite.start()
    wait_for("the satellite to mirror web v1 and the hosts", lambda: host_state(satellite, "node2") == "assigned"
             and satellite.api("/api/v1/status")["services"]["satellite"]["versions"] == ["web_v1"])
    with satellite.db() as db:
        row = db.execute("SELECT path, source, note FROM images WHERE name = 'web' AND version = 1").fetchone()
    assert row[1] == f"satellite:http://{primary_ip}:{API_PORT}" and row[2] == "captured"
    problems = compare_trees(tree, Path(row[0]))
    assert problems == [], "\n".join(problems[:10])

    def install(name: str) -> str:
        with satellite.db() as db:
            tok = db.execute("SELECT install_token FROM hosts WHERE name = ?", (name,)).fetchone()[0]
        target = lab.tmp_path(f"target-{name}")
        target.mkdir()
        script = lab.tmp_path("install.sh")
        script.write_text(INSTALL)
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "IMAGESERVER": str(sat_ip), "RSYNC_PORT": str(RSYNC_PORT),
               "IMAGE": "web", "VERSION": "1", "TARGET": str(target), "RSYNC_USER": name,
               "RSYNC_PASSWORD": rsync_password(tok), "MAC": MACS[name], "INSTALL_TOKEN": tok,
               "IMAGESERVER_URL": f"http://{sat_ip}:{API_PORT}"}
        # Each machine from its own address: the satellite's rsyncd opens a host's image to that address only.
        r = m_ns.run(["sh", "-c", f'ip route replace {net_b} dev {m_if} src {addresses[name]} && sh {script}'],
                     check=False, env=env, timeout=120)
        assert r.returncode == 0, r.stdout + r.stderr
        problems = compare_trees(tree, target)
        assert problems == [], "\n".join(problems[:10])
        return r.stdout

    # --- node1 installs from the satellite; its reports reach the primary -----------------------
    install("node1")
    assert host_state(satellite, "node1") == "installed"
    wait_for("node1 installed on the primary", lambda: host_state(primary, "node1") == "installed")
    with primary.db() as db:
        stages = [r[0] for r in db.execute("SELECT stage FROM install_events WHERE host = 'node1' ORDER BY id")]
    assert stages == ["rsync", "done"], stages

    # --- the primary stops; node2 still installs, its reports wait in the outbox ----------------
    assert primary.proc is not None
    primary.proc.stop()
    install("node2")
    assert host_state(satellite, "node2") == "installed"

    def buffered() -> dict[str, object] | None:
        sat = satellite.api("/api/v1/status")["services"]["satellite"]
        return sat if sat["state"] == "primary-unreachable" and sat["backlog"] == 2 else None

    away = wait_for("the reports buffered", buffered, 15)
    print(f"\nprimary away: {json.dumps(away)}")
    with satellite.db() as db:
        assert [r[0] for r in db.execute("SELECT stage FROM satellite_outbox ORDER BY id")] == ["rsync", "done"]
    assert host_state(primary, "node2") == "assigned"
    # Durable: the satellite killed (-9) and started again still holds them (and still serves).
    satellite.kill9()
    satellite.start()
    away = wait_for("the reports still buffered after the satellite's restart", buffered, 15)
    assert host_state(satellite, "node2") == "installed"

    # --- the primary is back: the buffered reports arrive, in order, once -----------------------
    primary.start()
    wait_for("node2 installed on the primary", lambda: host_state(primary, "node2") == "installed", 60)
    with primary.db() as db:
        stages = [r[0] for r in db.execute("SELECT stage FROM install_events WHERE host = 'node2' ORDER BY id")]
    assert stages == ["rsync", "done"], stages

    def caught_up() -> dict[str, object] | None:
        sats = primary.api("/api/v1/status")["satellites"]
        return sats[0] if sats and sats[0]["backlog"] == 0 else None

    edge = wait_for("the satellite's backlog 0 on the primary", caught_up, 15)
    assert isinstance(edge, dict)
    assert edge["name"] == "edge" and edge["versions"] == ["web_v1"] and edge["address"] == str(sat_up_ip)
    assert edge["seconds_since_contact"] is not None and edge["seconds_since_contact"] < 10
    sat = satellite.api("/api/v1/status")["services"]["satellite"]
    assert sat["state"] == "running" and sat["backlog"] == 0

    # --- the primary's operator removes node2: the satellite drops it too; its own host stays ----------
    satellite.cli("hosts", "add", "rackspare", "--mac", "52:54:00:77:77:01")
    primary.cli("hosts", "rm", "node2")
    wait_for("node2 gone from the satellite", lambda: host_state(satellite, "node2") is None, 15)
    assert host_state(satellite, "node1") == "installed"
    assert host_state(satellite, "rackspare") == "new", "a host the satellite's operator added is its own"
    assert "removed=1" in satellite.log(), satellite.log()[-2000:]
