"""Issue 14, items 4, 7 and 8: every table a stranger on the provisioning LAN can grow has a cap.

Each test performs the attack against the real daemon in namespaces it creates: spoofed DHCP packets
crafted with our codec (tests/system/_floods.py) from a client namespace, curl for the boot path, a real
dhclient as the machine that must still be served, and the API and the store to count what was kept.
"""

from __future__ import annotations

import json
import random
import sqlite3
import sys
import time
from typing import Any

import pytest

from lab.clients import Dhclient
from lab.netns import Lab, Pair
from tests.system._daemon import API_PORT, Imageserver, env

pytestmark = pytest.mark.system

NODE1_MAC = "52:54:00:14:00:01"


def flood(pair: Pair, mode: str, count: int) -> dict[str, Any]:
    out = pair.client.run([sys.executable, "-m", "tests.system._floods", pair.client_if, mode, str(count)],
                          env=env(), timeout=120)
    return json.loads(out.stdout)


def raw(pair: Pair, specs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = pair.client.run([sys.executable, "-m", "tests.system._rawdhcp", pair.client_if, "discover",
                           json.dumps(specs)], env=env(), timeout=60)
    return json.loads(out.stdout)


def count(server: Imageserver, sql: str) -> int:
    conn = server.db()
    try:
        return int(conn.execute(sql).fetchone()[0])
    except sqlite3.OperationalError:
        return -1
    finally:
        conn.close()


def settle(server: Imageserver, sql: str, timeout: float = 5.0) -> int:
    """The store's count once writes have landed (the journal commits in groups)."""
    deadline = time.monotonic() + timeout
    last = count(server, sql)
    while time.monotonic() < deadline:
        time.sleep(0.3)
        now = count(server, sql)
        if now == last:
            return now
        last = now
    return last


def server_for(lab: Lab, extra: str) -> tuple[Pair, Imageserver]:
    pair = lab.server_client_pair()
    server = Imageserver(pair.server, pair.server_if, pair.server_ip, pair.subnet, extra=extra).start()
    return pair, server


def dhclient_fast(pair: Pair, budget: float = 8.0) -> None:
    started = time.monotonic()
    client = Dhclient(pair.client, pair.client_if)
    lease = client.obtain()
    took = time.monotonic() - started
    client.stop()
    assert lease.ip in pair.subnet and took < budget, (lease, took)


def test_spoofed_discovers_and_boot_requests_keep_the_machine_table_at_its_cap(lab: Lab) -> None:
    cap = 40
    pair, server = server_for(lab, f"\n[discovery]\nmax_machines = {cap}\n")
    server.cli("hosts", "add", "node1", "--mac", NODE1_MAC)
    assert raw(pair, [{"mac": NODE1_MAC}])[0]["offer"] is not None  # the host is seen first: the oldest record

    sent = flood(pair, "discover", 3000)
    assert sent["sent"] > 2500, sent
    machines = server.api("/api/v1/machines")
    assert machines["total"] <= cap and len(machines["machines"]) <= cap
    assert settle(server, "SELECT count(*) FROM machines") <= cap
    # The host was the least recently seen machine of all, and it is never evicted.
    assert server.api(f"/api/v1/machines/{NODE1_MAC}")["host"] == "node1"
    assert count(server, f"SELECT count(*) FROM machines WHERE mac = '{NODE1_MAC}'") == 1
    assert "event=machines-evicted" in server.log()

    # A real machine is still served, fast.
    dhclient_fast(pair)

    # The list is paged: a small page with a total and where the next one starts; no page is unbounded.
    page = server.api("/api/v1/machines?limit=5")
    assert len(page["machines"]) == 5 and page["total"] <= cap and page["next_offset"] == 5
    rest = server.api(f"/api/v1/machines?limit=1000&offset={page['next_offset']}")
    assert rest["next_offset"] is None and len(rest["machines"]) == rest["total"] - 5
    too_big = pair.server.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}",
                               "-H", f"Authorization: Bearer {server.daemon.admin_token()}",
                               f"http://127.0.0.1:{API_PORT}/api/v1/machines?limit=100000"]).stdout
    assert too_big == "400"
    unknown = server.api("/api/v1/machines?unknown=1&limit=1000")
    assert all(m["host"] is None for m in unknown["machines"])
    # The CLI still lists every machine (paging through).
    listed = server.cli_json("machines", "list")
    assert 0 < len(listed) <= cap and NODE1_MAC in {m["mac"] for m in listed}

    # Random boot-script requests for made-up MACs: answered, and the table stays at the cap.
    rng = random.Random(5)
    urls = [f"http://{pair.server_ip}:{API_PORT}/boot/02:{rng.randbytes(5).hex(':')}.ipxe" for _ in range(400)]
    for start in range(0, len(urls), 100):
        argv = ["curl", "-s", "-w", "%{http_code}\\n"]
        for url in urls[start:start + 100]:
            argv += ["-o", "/dev/null", url]
        got = pair.client.run(argv, timeout=60).stdout.split()
        assert got == ["200"] * 100, got[:5]
    assert server.api("/api/v1/machines?limit=1")["total"] <= cap
    assert settle(server, "SELECT count(*) FROM machines") <= cap
    assert count(server, f"SELECT count(*) FROM machines WHERE mac = '{NODE1_MAC}'") == 1


def test_decline_cycles_quarantine_at_most_the_cap_share_of_the_pool(lab: Lab) -> None:
    # The test pool is .100-.150: 51 addresses; 10 % of it is 5.
    pair, server = server_for(lab, "decline_max_share = 0.1\n")
    # A DECLINE is honoured only from the MAC holding the offer or lease: a made-up MAC declining the real
    # client's address takes nothing away from it.
    client = Dhclient(pair.client, pair.client_if)
    theirs = client.obtain().ip
    client.stop()
    raw(pair, [{"mac": "02:66:00:00:07:01", "type": 4, "timeout": 0.5,
                "options": {"50": theirs.packed.hex(), "54": pair.server_ip.packed.hex()}}])
    time.sleep(0.3)
    assert server.api("/api/v1/pools")["pools"][0]["quarantined"] == 0
    assert str(theirs) in {lease["ip"] for lease in server.api("/api/v1/leases")["leases"]}

    result = flood(pair, "decline", 40)
    assert result["declined"] >= 35, result
    pools = server.api("/api/v1/pools")["pools"]
    assert [p["quarantined"] for p in pools] == [5], pools
    assert settle(server, "SELECT count(*) FROM quarantine") == 5
    log = server.log()
    assert "event=decline-refused" in log and log.count("event=decline-refused") <= 2  # rate-limited
    dhclient_fast(pair)


def test_auto_policy_creates_at_most_the_cap_of_hosts_from_spoofed_macs(lab: Lab) -> None:
    extra = ('\n[discovery]\npolicy = "auto"\nauto_max_hosts = 20\nauto_max_per_window = 6\nauto_window = 3600\n'
             '[[discovery.rules]]\nhostname = "auto{n:03}"\nimage = "web"\n')
    pair, server = server_for(lab, extra)
    flood(pair, "discover", 300)
    time.sleep(1.0)
    hosts = server.cli_json("hosts", "list")
    assert len(hosts) == 6, [h["name"] for h in hosts]
    assert settle(server, "SELECT count(*) FROM hosts") == 6
    log = server.log()
    assert log.count("event=discovery-capped") == 1, log.count("event=discovery-capped")
    # A machine beyond the cap waits, as under hold.
    waiting = server.api("/api/v1/machines?unknown=1&limit=1")["machines"][0]
    assert waiting["host"] is None and waiting["boot"] == "wait"
