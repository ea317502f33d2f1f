"""The lab harness works: namespaces talk over veth, real DHCP clients get real leases from busybox
udhcpd without touching the host, and cleanup leaves nothing behind."""

from __future__ import annotations

import ipaddress
import os
import subprocess
import time
from pathlib import Path

import pytest

from lab import diagnostics
from lab.clients import Dhclient, Dhcpcd, Lease, Udhcpc
from lab.netns import NETNS_ETC, Lab, Pair, lab_unavailable_reason, open_labs
from lab.qemu import start_ra_sender
from lab.servers import Udhcpd, start_udhcpd

pytestmark = pytest.mark.system

RESOLV_CONF = Path("/etc/resolv.conf")


def host_netns_names() -> set[str]:
    listing = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    return {line.split()[0] for line in listing.splitlines() if line.strip()}


def running(pid: int) -> bool:
    """Alive and not a zombie (an orphaned daemon may wait a moment for init to reap it)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


def host_interface_names() -> set[str]:
    return set(os.listdir("/sys/class/net"))


def assert_lease_matches_server(lease: Lease, server: Udhcpd, pair: Pair) -> None:
    assert server.in_pool(lease.ip), f"{lease.ip} is outside {server.pool_start}-{server.pool_end}"
    assert lease.address.network == pair.subnet
    assert lease.router == server.router
    assert lease.dns == server.dns
    assert lease.lease_time == server.lease_time
    assert lease.server_id == server.server_id
    assert lease.domain == server.domain
    assert pair.client.ipv4_addresses(pair.client_if) == [lease.address]


def test_two_namespaces_ping_each_other_over_veth_and_the_host_sees_neither_end(lab: Lab) -> None:
    host_links_before = host_interface_names()
    pair = lab.server_client_pair()
    client_ip = pair.host(2)
    pair.client.add_address(pair.client_if, f"{client_ip}/24")

    to_server = pair.client.run(["busybox", "ping", "-c", "2", "-W", "2", str(pair.server_ip)])
    to_client = pair.server.run(["busybox", "ping", "-c", "2", "-W", "2", str(client_ip)])

    assert "2 packets received" in to_server.stdout
    assert "2 packets received" in to_client.stdout
    assert {pair.server.name, pair.client.name} <= host_netns_names()
    assert host_interface_names() == host_links_before
    assert pair.server_if not in host_interface_names()
    assert (NETNS_ETC / pair.client.name / "resolv.conf").read_text().startswith(f"# {pair.client.name}")
    # `ip netns exec` shows the namespace's own resolv.conf to commands run there.
    assert pair.client.run(["cat", "/etc/resolv.conf"]).stdout.startswith(f"# {pair.client.name}")


def test_udhcpc_and_dhclient_get_leases_from_udhcpd_and_leave_host_resolv_conf_alone(lab: Lab) -> None:
    resolv_before = RESOLV_CONF.read_bytes()
    pair = lab.server_client_pair()
    netns_resolv = (NETNS_ETC / pair.client.name / "resolv.conf").read_bytes()
    server = start_udhcpd(pair.server, pair.server_if, pair.server_ip, pair.subnet, lease_time=900)

    udhcpc_lease = Udhcpc(pair.client, pair.client_if).obtain()
    assert_lease_matches_server(udhcpc_lease, server, pair)
    assert udhcpc_lease.event == "bound"

    pair.client.ip("addr", "flush", "dev", pair.client_if)
    dhclient_lease = Dhclient(pair.client, pair.client_if).obtain()
    assert_lease_matches_server(dhclient_lease, server, pair)
    assert dhclient_lease.event == "BOUND"
    # Same MAC, same server: the same address both times.
    assert dhclient_lease.ip == udhcpc_lease.ip

    assert RESOLV_CONF.read_bytes() == resolv_before
    # The hooks are address-only: not even the namespace's private resolv.conf was written.
    assert (NETNS_ETC / pair.client.name / "resolv.conf").read_bytes() == netns_resolv


def test_dhclient_renews_the_same_address_and_release_removes_it(lab: Lab) -> None:
    pair = lab.server_client_pair()
    server = start_udhcpd(pair.server, pair.server_if, pair.server_ip, pair.subnet)
    client = Dhclient(pair.client, pair.client_if)

    first = client.obtain()
    assert_lease_matches_server(first, server, pair)
    assert client.running(), "dhclient -1 keeps running once bound"
    renewed = client.renew()
    assert_lease_matches_server(renewed, server, pair)
    client.release()

    assert renewed.event == "REBOOT" and renewed.ip == first.ip
    assert pair.client.ipv4_addresses(pair.client_if) == []
    assert not client.running()


def test_udhcpc_renews_on_sigusr1_and_releases_on_sigusr2(lab: Lab) -> None:
    pair = lab.server_client_pair()
    server = start_udhcpd(pair.server, pair.server_if, pair.server_ip, pair.subnet)
    client = Udhcpc(pair.client, pair.client_if)

    bound = client.start()
    renewed = client.renew()
    assert_lease_matches_server(renewed, server, pair)
    client.release()

    assert bound.event == "bound" and renewed.event == "renew"
    assert renewed.ip == bound.ip
    assert pair.client.ipv4_addresses(pair.client_if) == []
    assert client.proc is not None and not client.proc.alive()


def test_dhcpcd_without_hooks_gets_a_lease(lab: Lab) -> None:
    resolv_before = RESOLV_CONF.read_bytes()
    pair = lab.server_client_pair()
    server = start_udhcpd(pair.server, pair.server_if, pair.server_ip, pair.subnet)
    client = Dhcpcd(pair.client, pair.client_if)
    try:
        lease = client.obtain()
    finally:
        client.forget()

    assert_lease_matches_server(lease, server, pair)
    assert RESOLV_CONF.read_bytes() == resolv_before
    assert not client.lease_path().exists()


def test_router_advertisement_sender_announces_no_router_and_no_prefix(lab: Lab) -> None:
    pair = lab.server_client_pair()
    start_ra_sender(pair.server, pair.server_if, interval=0.3)

    # The client's kernel marks the sender as a router in its neighbour table once it accepts an RA.
    deadline = time.monotonic() + 5
    neighbours = ""
    while "router" not in neighbours and time.monotonic() < deadline:
        time.sleep(0.1)
        neighbours = pair.client.ip("-6", "neigh", "show", "dev", pair.client_if).stdout

    assert "router" in neighbours
    # Lifetime 0 and no prefix: no default route and no SLAAC address, only the link-local one.
    assert "default" not in pair.client.ip("-6", "route", "show").stdout
    addresses = pair.client.ip("-6", "-o", "addr", "show", "dev", pair.client_if).stdout
    assert "scope global" not in addresses and "scope link" in addresses


def test_cleanup_removes_namespaces_etc_dirs_processes_and_tmp_even_after_a_failure() -> None:
    reason = lab_unavailable_reason()
    if reason:
        pytest.skip(reason)
    lab = Lab()
    with pytest.raises(RuntimeError, match="test body failed"), lab:
        pair = lab.server_client_pair()
        start_udhcpd(pair.server, pair.server_if, pair.server_ip, pair.subnet)
        pair.client.run(["sh", "-c", "sleep 300 >/dev/null 2>&1 &"])  # orphaned: only the namespace knows it
        sleeper = pair.client.popen(["sleep", "300"])
        names = {pair.server.name, pair.client.name}
        pids = set(pair.server.pids()) | set(pair.client.pids())
        assert sleeper.pid in pids and len(pids) >= 3
        raise RuntimeError("test body failed")

    assert not names & host_netns_names()
    assert not any((NETNS_ETC / name).exists() for name in names)
    assert not lab.tmp.exists()
    survivors = {pid for pid in pids if running(pid)}
    assert not survivors, f"processes still alive after cleanup: {survivors}"


def test_random_subnets_are_private_and_distinct_within_a_lab(lab: Lab) -> None:
    subnets = [lab.random_subnet() for _ in range(50)]
    assert len(set(subnets)) == 50
    assert all(subnet.subnet_of(ipaddress.IPv4Network("10.0.0.0/8")) and subnet.prefixlen == 24 for subnet in subnets)


def test_a_failure_report_shows_the_labs_processes_consoles_and_daemon_logs(lab: Lab) -> None:
    ns = lab.namespace("diag")
    sleeper = lab.popen(ns, ["sh", "-c", "echo sleeper-started; exec sleep 300"])
    console = lab.tmp_path("vm-525400000001.serial")
    console.write_text("".join(f"console line {i}\n" for i in range(100)))
    deadline = time.monotonic() + 10
    while "sleeper-started" not in sleeper.output() and time.monotonic() < deadline:
        time.sleep(0.02)

    text = diagnostics.report(open_labs())

    assert f"processes in {ns.name}" in text and f"{sleeper.pid:>7} S sleep 300" in text
    # The console's last lines, not its first ones.
    assert "console line 99" in text and "console line 60" in text and "console line 59\n" not in text
    assert "sleeper-started" in text
    assert diagnostics.report(open_labs(pid=1)) == ""  # another process's labs are not ours


def test_a_failing_test_with_an_open_lab_explains_itself(pytester: pytest.Pytester,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    reason = lab_unavailable_reason()
    if reason:
        pytest.skip(reason)
    monkeypatch.setenv("PYTHONPATH", str(Path(__file__).resolve().parents[2]))
    pytester.makeconftest("from tests.conftest import pytest_runtest_makereport  # noqa: F401\n")
    pytester.makepyfile(test_inner="""
        import pytest
        from lab.netns import Lab

        def test_fails_inside_a_with_block():
            with Lab() as lab:
                ns = lab.namespace("inner")
                (lab.tmp_path("vm-1.serial")).write_text("last words of guest one\\n")
                lab.popen(ns, ["sleep", "61"])
                assert False, "the test's own reason"

        @pytest.fixture
        def held():
            with Lab() as lab:
                yield lab

        def test_fails_with_a_fixtures_lab_open(held):
            ns = held.namespace("inner")
            (held.tmp_path("vm-2.serial")).write_text("last words of guest two\\n")
            held.popen(ns, ["sleep", "62"])
            assert False, "the test's own reason"
    """)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(failed=2)
    out = result.stdout.str()
    one, two = out.split("_ test_fails_with_a_fixtures_lab_open _", 1)  # the two failures' sections
    assert "last words of guest one" in one and "sleep 61" in one and "the test's own reason" in one
    assert "lab diagnostics" in two and "last words of guest two" in two and "sleep 62" in two
