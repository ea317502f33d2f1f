"""The imageserver's DHCP server with real clients (ISC dhclient, busybox udhcpc) in network namespaces.

Each test runs `imageserver serve` in a server namespace (bound to its veth end) and clients in a client
namespace; what a client got is checked on the client's interface (`ip addr`) and in the server's
state through the `imageserver` CLI, exactly as an operator would see it.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from ipaddress import IPv4Address

import pytest

from lab.clients import Dhclient, Udhcpc
from lab.netns import Lab, Pair
from tests.system._daemon import Imageserver

pytestmark = pytest.mark.system


def server_for(pair: Pair, **kwargs: object) -> Imageserver:
    return Imageserver(pair.server, pair.server_if, pair.server_ip, pair.subnet, **kwargs).start()  # type: ignore[arg-type]


def leases_by_mac(server: Imageserver) -> dict[str, dict]:
    return {row["mac"]: row for row in server.cli_json("leases", "--all")}


def mac_of(pair: Pair) -> str:
    return pair.client.run(["cat", f"/sys/class/net/{pair.client_if}/address"]).stdout.strip()


def set_mac(pair: Pair, mac: str) -> None:
    pair.client.ip("link", "set", pair.client_if, "down")
    pair.client.ip("link", "set", pair.client_if, "address", mac)
    pair.client.ip("link", "set", pair.client_if, "up")


def test_dhclient_and_udhcpc_get_renew_and_release_addresses_keyed_by_mac(lab: Lab) -> None:
    pair = lab.server_client_pair()
    server = server_for(pair)
    first, last = server.pool_range()
    mac1 = mac_of(pair)

    dhclient = Dhclient(pair.client, pair.client_if)
    lease = dhclient.obtain()
    assert first <= lease.ip <= last
    assert lease.address.network == pair.subnet
    assert lease.server_id == pair.server_ip and lease.router == pair.server_ip and lease.lease_time == 600
    assert pair.client.ipv4_addresses(pair.client_if) == [lease.address]
    assert leases_by_mac(server)[mac1]["ip"] == str(lease.ip)

    renewed = dhclient.renew()  # INIT-REBOOT with the address it holds
    assert renewed.ip == lease.ip and renewed.event == "REBOOT"

    dhclient.release()
    assert pair.client.ipv4_addresses(pair.client_if) == []
    row = leases_by_mac(server)[mac1]
    assert row["active"] is False and row["ip"] == str(lease.ip)
    assert server.cli_json("leases") == []

    # udhcpc on the same NIC sends a client-id dhclient did not: still the same machine, same address.
    udhcpc = Udhcpc(pair.client, pair.client_if)
    again = udhcpc.start()
    assert again.ip == lease.ip
    assert pair.client.ipv4_addresses(pair.client_if) == [again.address]
    assert udhcpc.renew().ip == lease.ip
    udhcpc.release()
    assert pair.client.ipv4_addresses(pair.client_if) == []
    assert leases_by_mac(server)[mac1]["active"] is False

    # Another NIC gets another address while the first one's released lease is remembered.
    set_mac(pair, "52:54:00:aa:bb:02")
    other = Udhcpc(pair.client, pair.client_if).obtain()
    assert first <= other.ip <= last and other.ip != lease.ip
    active = server.cli_json("leases")
    assert [(r["mac"], r["ip"]) for r in active] == [("52:54:00:aa:bb:02", str(other.ip))]


def test_a_reservation_added_while_running_is_given_on_the_next_request(lab: Lab) -> None:
    pair = lab.server_client_pair()
    server = server_for(pair)
    mac = mac_of(pair)
    udhcpc = Udhcpc(pair.client, pair.client_if)
    dynamic = udhcpc.start()
    fixed = pair.host(20)  # outside the pool (.100-.150)

    out = server.cli("reservations", "add", mac.upper().replace(":", "-"), str(fixed), "--hostname", "node20")
    assert f"reserved {fixed} for {mac} (node20)" in out
    assert [(r["mac"], r["ip"], r["hostname"]) for r in server.cli_json("reservations")] == [
        (mac, str(fixed), "node20")
    ]

    # The renewal of the dynamic address is refused; udhcpc starts over and is given its fixed address.
    moved = udhcpc.renew(timeout=15)
    assert moved.ip == fixed != dynamic.ip
    assert pair.client.ipv4_addresses(pair.client_if) == [moved.address]
    assert server.cli_json("leases", "--all") == []  # a reserved machine holds no lease

    # Refusals come back from the daemon with the reason and exit code 4 (refused: a conflict).
    clash = server.run_cli("reservations", "add", "52:54:00:00:00:99", str(fixed))
    assert clash.returncode == 4 and f"{fixed} is already reserved for {mac}" in clash.stderr

    server.cli("reservations", "rm", mac)
    assert server.cli_json("reservations") == []


def test_after_kill_9_and_restart_the_client_renews_to_the_same_address(lab: Lab) -> None:
    pair = lab.server_client_pair()
    server = server_for(pair)
    dhclient = Dhclient(pair.client, pair.client_if)
    lease = dhclient.obtain()

    server.kill9()  # no shutdown, no final flush: only what was committed before each ACK survives
    server.start()
    renewed = dhclient.renew()
    assert renewed.ip == lease.ip and renewed.event == "REBOOT"
    # A newcomer does not get that address either: the lease was on disk before the first ACK.
    udhcpc_ns_mac = "52:54:00:aa:bb:03"
    dhclient.stop()
    set_mac(pair, udhcpc_ns_mac)
    other = Udhcpc(pair.client, pair.client_if).obtain()
    assert other.ip != lease.ip


def test_an_address_that_answers_ping_is_not_offered(lab: Lab) -> None:
    pair = lab.server_client_pair()
    server = server_for(pair, conflict_probe=True)
    first, _ = server.pool_range()
    # Something already uses the first pool address (configured by hand on the client's NIC; dhclient's
    # hook, unlike udhcpc's, leaves it there).
    pair.client.add_address(pair.client_if, f"{first}/24")

    lease = Dhclient(pair.client, pair.client_if).obtain()
    assert lease.ip == first + 1
    assert server.dhcp_counters().get("probe_conflicts") == 1
    quarantined = server.db().execute("SELECT ip FROM quarantine").fetchall()
    assert [IPv4Address(r[0]) for r in quarantined] == [first]


def test_sighup_applies_new_options_and_pools_and_keeps_leases(lab: Lab) -> None:
    pair = lab.server_client_pair()
    server = server_for(pair)
    dhclient = Dhclient(pair.client, pair.client_if)
    lease = dhclient.obtain()
    assert lease.lease_time == 600 and lease.router == pair.server_ip

    router = pair.host(254)
    text = server.config.read_text()
    text = text.replace("lease_time = 600", "lease_time = 900").replace(f'router = "{pair.server_ip}"',
                                                                         f'router = "{router}"')
    text = text.replace(f"-{pair.host(150)}", f"-{pair.host(110)}")
    server.config.write_text(text)
    assert server.proc is not None
    server.proc.signal(signal.SIGHUP)
    wait_until(lambda: "event=reloaded" in server.log())

    renewed = dhclient.renew()
    assert renewed.ip == lease.ip and renewed.event == "REBOOT"  # the lease survived the reload
    assert renewed.lease_time == 900 and renewed.router == router
    dhclient.stop()
    set_mac(pair, "52:54:00:aa:bb:04")
    other = Udhcpc(pair.client, pair.client_if).obtain()
    assert pair.host(100) <= other.ip <= pair.host(110) and other.ip != lease.ip
    assert other.router == router


def wait_until(cond: Callable[[], bool], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)
