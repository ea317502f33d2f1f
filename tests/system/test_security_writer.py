"""Issue 14, items 9 and 10: one writer per state dir, and the small attacks, each performed against the
real daemon in namespaces the test creates.

- a second `serve` on the same state dir (another namespace) exits at once naming the holder; the first
  keeps serving and a real dhclient's lease is durable;
- a CLI write while the daemon runs but its API is unreachable (wrong port) or slow (SIGSTOPped: timeout)
  is refused and writes nothing;
- kill -9 of the daemon takes its rsync with it; an rsync left by an earlier run is reaped at start and
  the new daemon's rsync serves;
- SIGHUP with the config path replaced by a FIFO keeps the running config and logs the error at once;
- `../../x` image names get 400 from the API (curl) and an error from the CLI;
- a spoofed RELEASE (another machine, its own address) leaves the victim's lease; the owner's works;
- a DISCOVER with a forged giaddr from the local link is not offered a relay subnet address (a relay's is);
- the state dir and the database files are 0700/0600 under umask 022, and a 0755 state dir is tightened.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import stat
import subprocess
import sys
import time
from collections.abc import Callable
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import pytest

from lab.clients import Dhclient
from lab.netns import Lab, Namespace, Pair
from tests.system._daemon import API_PORT, Imageserver, env

pytestmark = pytest.mark.system

RSYNC_PORT = 8873
RELAY_NET = IPv4Network("172.30.0.0/16")
RELAY = IPv4Address("172.30.0.1")


def rows(server: Imageserver, table: str) -> list[tuple[object, ...]]:
    conn = sqlite3.connect(f"file:{server.state_dir / 'imageserver.db'}?mode=ro", uri=True, timeout=10)
    try:
        return sorted(conn.execute(f"SELECT * FROM {table}").fetchall(), key=repr)
    finally:
        conn.close()


def wait_until(what: str, check, timeout: float = 5.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def alive(pid: int) -> bool:
    """Running (a zombie nobody reaps counts as dead: this container's init does not reap orphans)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return text[text.rfind(")") + 2:].split()[0] not in ("Z", "X")


def single_link(lab: Lab, **kw: object) -> tuple[Imageserver, Namespace, str]:
    pair = lab.server_client_pair()
    server = Imageserver(pair.server, pair.server_if, pair.server_ip, pair.subnet, **kw)  # type: ignore[arg-type]
    return server, pair.client, pair.client_if


# ------------------------------------------------------------------ item 9: one writer per state dir


def test_a_second_serve_on_the_same_state_dir_exits_and_the_first_keeps_its_leases(lab: Lab) -> None:
    first, client, client_if = single_link(lab)
    first.start()
    # The second daemon: another namespace with its own link and address, the same state dir.
    other = lab.server_client_pair()
    second = Imageserver(other.server, other.server_if, other.server_ip, other.subnet)
    second.config.write_text(second.config.read_text().replace(str(second.state_dir), str(first.state_dir)))
    second.state_dir = first.state_dir
    proc = second.spawn()
    code = proc.wait(10)
    assert code != 0
    assert f"pid={first.proc.pid} role=serve" in proc.output(), proc.output()[-2000:]
    assert "event=ready" not in proc.output()

    lease = Dhclient(client, client_if).obtain()  # the first one still serves, and its ACK is on disk
    assert any(IPv4Address(r[1]) == lease.ip for r in rows(first, "leases")), rows(first, "leases")
    first.kill9()
    first.start()  # the lock died with the killed daemon: no stale lock blocks a restart
    assert any(le["ip"] == str(lease.ip) for le in first.api("/api/v1/leases")["leases"])


def test_a_cli_write_to_a_running_daemon_that_does_not_answer_writes_nothing(lab: Lab) -> None:
    server, _client, _ = single_link(lab)
    server.start()
    before = {t: rows(server, t) for t in ("reservations", "hosts", "leases")}
    mac, ip = "02:00:00:00:14:09", str(server.subnet.network_address + 20)

    # Unreachable: the same state dir, an API port nothing listens on (connection refused).
    wrong = server.ns.lab.tmp_path("wrong-port.toml")
    wrong.write_text(server.config.read_text().replace(f"port = {API_PORT}", "port = 8099"))
    for argv in (["reservations", "add", mac, ip], ["hosts", "add", "node9", "--mac", mac],
                 ["makedhcpstatic"]):
        r = server.ns.run([sys.executable, "-m", "appliance.cli", *argv, "--config", str(wrong)], env=env(),
                          check=False, timeout=30)
        assert r.returncode != 0, (argv, r.stdout, r.stderr)
        assert "Nothing was written" in r.stderr and f"pid={server.proc.pid}" in r.stderr, r.stderr

    # Slow: the daemon stopped (SIGSTOP) so the API times out, the case that used to fall back offline.
    assert server.proc is not None
    os.kill(server.proc.pid, signal.SIGSTOP)
    try:
        started = time.monotonic()
        r = server.run_cli("reservations", "add", mac, ip)
        assert r.returncode != 0 and "Nothing was written" in r.stderr, r.stderr
        assert "timed out" in r.stderr, r.stderr
        assert time.monotonic() - started < 25
    finally:
        os.kill(server.proc.pid, signal.SIGCONT)
    assert {t: rows(server, t) for t in before} == before
    # Answering again, the same command works online.
    assert server.run_cli("reservations", "add", mac, ip).returncode == 0


# ------------------------------------------------------------------ item 10a: the rsync child


def rsync_server(lab: Lab) -> Imageserver:
    server, _client, _ = single_link(lab, extra=f"\n[rsyncd]\nport = {RSYNC_PORT}\n")
    if shutil.which("rsync") is None:
        pytest.skip("rsync is not installed")
    return server


def rsync_listing(server: Imageserver) -> subprocess.CompletedProcess[str]:
    return server.ns.run(["rsync", "--contimeout=3", f"rsync://{server.address}:{RSYNC_PORT}/"], check=False,
                         timeout=15)


def wait_rsync_running(server: Imageserver) -> int:
    def running() -> bool:
        return server.api("/api/v1/status")["services"]["rsyncd"]["state"] == "running"

    wait_until("rsyncd running", running, 10)
    return int(server.api("/api/v1/status")["services"]["rsyncd"]["pid"])


def test_kill9_of_the_daemon_takes_its_rsync_and_a_stale_rsync_is_reaped_at_start(lab: Lab) -> None:
    server = rsync_server(lab).start()
    child = wait_rsync_running(server)
    assert alive(child)
    server.kill9()
    wait_until(f"rsync {child} to die with its parent", lambda: not alive(child), 5)

    # An rsync left serving by an earlier run that could not take it along (an older version, say):
    # the same command line on our config, recorded in the pid file.
    conf = server.state_dir / "rsyncd.conf"
    orphan = server.ns.popen(["rsync", "--daemon", "--no-detach", f"--config={conf}", f"--address={server.address}",
                              f"--port={RSYNC_PORT}"])
    wait_until("the orphan rsync to listen", lambda: rsync_listing(server).returncode == 0, 5)
    started = Path(f"/proc/{orphan.pid}/stat").read_text()
    started = started[started.rfind(")") + 2:].split()[19]
    (server.state_dir / "rsyncd.pid").write_text(f"{orphan.pid} {started}\n")

    server.start()
    new_child = wait_rsync_running(server)
    assert new_child != orphan.pid and not alive(orphan.pid)
    assert "event=stale-child-reaped" in server.log()
    assert rsync_listing(server).returncode == 0
    assert server.api("/api/v1/status")["services"]["rsyncd"]["restarts"] == 0


# ------------------------------------------------------------------ item 10b: config that is no file


def test_sighup_with_the_config_replaced_by_a_fifo_keeps_the_running_config(lab: Lab) -> None:
    server, _client, _ = single_link(lab)
    server.start()
    text = server.config.read_text()
    server.config.unlink()
    os.mkfifo(server.config)
    try:
        assert server.proc is not None
        server.proc.signal(signal.SIGHUP)
        wait_until("the reload error", lambda: "event=reload-failed" in server.log(), 3)
        assert "not a regular file (a FIFO)" in server.log()
        assert server.api("/api/v1/status")["services"]["dhcp"]["state"] == "running"  # loop not blocked
        # /dev/zero behind the same path: refused too, no memory eaten.
        server.config.unlink()
        server.config.symlink_to("/dev/zero")
        server.proc.signal(signal.SIGHUP)
        wait_until("the second reload error", lambda: "a character device" in server.log(), 3)
        assert server.api("/api/v1/status")["config"] == str(server.config)
    finally:
        server.config.unlink()
        server.config.write_text(text)


# ------------------------------------------------------------------ item 10c: image names


def test_path_like_image_names_get_400_from_the_api_and_an_error_from_the_cli(lab: Lab) -> None:
    server, _client, _ = single_link(lab)
    server.start()
    token = (server.state_dir / "admin.token").read_text().strip()

    def curl(method: str, path: str, body: dict[str, object]) -> tuple[int, str]:
        r = server.ns.run(["curl", "-s", "-o", "-", "-w", "\n%{http_code}", "-X", method,
                           "-H", f"Authorization: Bearer {token}", "-H", "Content-Type: application/json",
                           "--data", json.dumps(body), f"http://127.0.0.1:{API_PORT}{path}"])
        text, _, code = r.stdout.rpartition("\n")
        return int(code), text

    assert curl("POST", "/api/v1/hosts", {"name": "node1", "mac": "02:00:00:00:14:01"})[0] == 201
    for bad in ("../../x", "../etc", "x/y", ".hidden", "a_v3"):
        code, text = curl("POST", "/api/v1/hosts", {"name": "node2", "mac": "02:00:00:00:14:02", "image": bad})
        assert code == 400, (bad, code, text)
        code, text = curl("PATCH", "/api/v1/hosts/node1", {"image": bad})
        assert code == 400, (bad, code, text)
        code, text = curl("POST", "/api/v1/addclients", {"base": "www", "range": "1-2", "image": bad})
        assert code == 400, (bad, code, text)
    r = server.run_cli("hosts", "set", "node1", "--image", "../../x")
    assert r.returncode != 0 and "image name" in r.stderr, r.stderr
    hosts = {h["name"]: h for h in server.api("/api/v1/hosts")["hosts"]}
    assert set(hosts) == {"node1"} and hosts["node1"]["image"] is None

    # A row written before the rule (an older version): its script is not read from outside scripts/.
    assert server.proc is not None
    server.proc.stop()
    conn = sqlite3.connect(server.state_dir / "imageserver.db")
    conn.execute("UPDATE hosts SET image = '../../x' WHERE name = 'node1'")
    conn.commit()
    conn.close()
    secret = server.state_dir.parent / "x.master"  # state_dir/scripts/../../x.master
    secret.write_text("SECRET\n")
    server.start()
    auth = f"Authorization: Bearer {server.daemon.admin_token()}"
    r = server.ns.run(["curl", "-s", "-w", "\n%{http_code}", "-H", auth,
                       f"http://127.0.0.1:{API_PORT}/api/v1/hosts/node1/script"])
    assert "SECRET" not in r.stdout and r.stdout.endswith("\n409"), r.stdout


# ------------------------------------------------------------------ item 10d: RELEASE from elsewhere


def test_a_spoofed_release_leaves_the_victims_lease_and_the_owners_release_works(lab: Lab) -> None:
    seg = lab.segment("cli", "att")
    (victim_ns, c1), (attacker, a1) = seg.members
    server_ip, attacker_ip = seg.server_ip, seg.host(50)
    attacker.add_address(a1, f"{attacker_ip}/24")
    server = Imageserver(seg.server, seg.bridge, seg.server_ip, seg.subnet).start()

    victim = Dhclient(victim_ns, c1)
    lease = victim.obtain()
    mac = next(r[0] for r in rows(server, "leases") if IPv4Address(r[1]) == lease.ip)

    def active() -> bool:
        return any(le["mac"] == mac for le in server.api("/api/v1/leases")["leases"])

    assert active()
    attacker.run([sys.executable, "-m", "tests.system._spoof", "release", str(attacker_ip), str(server_ip), mac,
                  str(lease.ip)], env=env(), check=True, timeout=15)
    wait_until("the daemon to read the spoofed RELEASEs",
               lambda: server.dhcp_counters().get("in_release", 0) >= 3, 5)
    assert active(), "a RELEASE from another address ended the victim's lease"

    victim.release()  # the owner, from its own address
    wait_until("the owner's RELEASE", lambda: not active(), 5)


# ------------------------------------------------------------------ item 10e: forged giaddr


def test_a_forged_giaddr_from_the_local_link_gets_no_relay_subnet_offer(lab: Lab) -> None:
    pair = lab.server_client_pair()
    pair.client.add_address(pair.client_if, f"{pair.subnet.network_address + 2}/24")
    pair.client.add_address(pair.client_if, f"{RELAY}/{RELAY_NET.prefixlen}")
    pair.server.ip("route", "add", str(RELAY_NET), "via", str(pair.subnet.network_address + 2))
    relayed = (f'trusted_relays = ["{RELAY}"]\n'
               f'[[dhcp.subnets]]\nsubnet = "{RELAY_NET}"\npool = "172.30.0.10-172.30.0.250"\n')
    server = Imageserver(pair.server, pair.server_if, pair.server_ip, pair.subnet, extra=relayed).start()
    send = relay_sender(pair)

    assert send("client", "02:00:00:00:14:e1") == []  # broadcast from a client port, hops 0
    assert send("hops0", "02:00:00:00:14:e2") == []  # from port 67 but never through a relay
    assert server.dhcp_counters()["forged_relay"] == 2
    # What a relay agent sends is still served from its subnet.
    offers = send("relay", "02:00:00:00:14:e3")
    assert [o["type"] for o in offers] == ["2"] and IPv4Address(offers[0]["yiaddr"]) in RELAY_NET, offers


def relay_sender(pair: Pair) -> Callable[[str, str], list[dict[str, str]]]:
    """Sends a DISCOVER with giaddr = RELAY from the client namespace (see tests/system/_spoof.py)."""
    def send(how: str, mac: str) -> list[dict[str, str]]:
        r = pair.client.run([sys.executable, "-m", "tests.system._spoof", "relay", pair.client_if, str(RELAY),
                             str(pair.server_ip), mac, how], env=env(), check=True, timeout=15)
        return json.loads(r.stdout)

    return send


def test_with_no_trusted_relay_a_local_host_posing_as_one_gets_no_relay_subnet_address(lab: Lab) -> None:
    """Issue 24 hole 3: from UDP 67 with hops 1, or from another port with option 82 sub-option 19, a local
    machine was served from the relay subnet's pool (11 of 11 leases). With the default trusted_relays = []
    nothing is taken as relayed."""
    pair = lab.server_client_pair()
    pair.client.add_address(pair.client_if, f"{pair.subnet.network_address + 2}/24")
    pair.client.add_address(pair.client_if, f"{RELAY}/{RELAY_NET.prefixlen}")
    pair.server.ip("route", "add", str(RELAY_NET), "via", str(pair.subnet.network_address + 2))
    relayed = f'\n[[dhcp.subnets]]\nsubnet = "{RELAY_NET}"\npool = "172.30.0.10-172.30.0.20"\n'
    server = Imageserver(pair.server, pair.server_if, pair.server_ip, pair.subnet, extra=relayed).start()
    send = relay_sender(pair)
    offers = [send(how, f"02:00:00:00:15:{i:02x}") for i, how in enumerate(["relay", "rsp"] * 3)]
    assert offers == [[]] * 6, offers
    assert server.dhcp_counters()["forged_relay"] == 6


# ------------------------------------------------------------------ item 10f: modes


def test_state_dir_and_database_are_private_under_umask_022(lab: Lab) -> None:
    server, client, client_if = single_link(lab)
    server.state_dir.mkdir(mode=0o755)
    os.chmod(server.state_dir, 0o755)  # as a hand-made or older state dir would be
    old = os.umask(0o022)
    try:
        server.start()
    finally:
        os.umask(old)
    Dhclient(client, client_if).obtain()  # a commit: WAL and SHM exist
    assert "event=state-dir-tightened" in server.log()
    assert stat.S_IMODE(server.state_dir.stat().st_mode) == 0o700
    for name in ("imageserver.db", "imageserver.db-wal", "imageserver.db-shm", "imageserver.lock"):
        path = server.state_dir / name
        assert path.exists(), name
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, (name, oct(path.stat().st_mode))
