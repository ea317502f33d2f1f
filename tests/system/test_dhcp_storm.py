"""A perfdhcp storm through a relay address: no address is given to two machines, and every ACK that left
the server was durable (a kill -9 in the middle of the storm loses none of them).

perfdhcp (Kea's load generator) runs in its own namespace as a relay: it sends from a relay address
(giaddr) on another subnet, and the server answers to giaddr:67 over a route via the perfdhcp
namespace. tcpdump there records every reply the server sent. This is a correctness test under load;
throughput is measured by bench/dhcp.py, not asserted here.
"""

from __future__ import annotations

import re
import struct
import time
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import pytest

from lab.netns import Lab, Proc
from protocols.dhcp.codec import DhcpError, decode
from tests.system._daemon import Imageserver

pytestmark = pytest.mark.system

RELAY_NET = IPv4Network("172.31.0.0/16")
RELAY = IPv4Address("172.31.0.1")


def replies_in(pcap: Path) -> list[tuple[int, str, IPv4Address]]:
    """(message type, chaddr MAC, yiaddr) of every DHCP message in a classic pcap of Ethernet frames."""
    data = pcap.read_bytes()
    out = []
    pos = 24  # global header
    while pos + 16 <= len(data):
        incl = struct.unpack_from("<I", data, pos + 8)[0]
        frame = data[pos + 16:pos + 16 + incl]
        pos += 16 + incl
        if len(frame) < 42 or frame[12:14] != b"\x08\x00":
            continue
        ihl = (frame[14] & 0x0F) * 4
        try:
            packet = decode(frame[14 + ihl + 8:])
        except DhcpError:
            continue
        if packet.message_type is not None:
            out.append((packet.message_type, packet.mac, packet.yiaddr))
    return out


def test_a_relayed_perfdhcp_storm_gets_unique_durable_addresses(lab: Lab) -> None:
    srv, prf = lab.namespace("srv"), lab.namespace("prf")
    srv_if, prf_if = lab.ifname("vs"), lab.ifname("vp")
    lab.veth(srv, srv_if, prf, prf_if)
    link = lab.random_subnet()
    server_ip, prf_ip = link.network_address + 1, link.network_address + 2
    srv.add_address(srv_if, f"{server_ip}/{link.prefixlen}")
    prf.add_address(prf_if, f"{prf_ip}/{link.prefixlen}")
    prf.add_address(prf_if, f"{RELAY}/{RELAY_NET.prefixlen}")
    srv.ip("route", "add", str(RELAY_NET), "via", str(prf_ip))
    relayed = (f'trusted_relays = ["{RELAY}"]\n[[dhcp.subnets]]\nsubnet = "{RELAY_NET}"\n'
               'pool = "172.31.0.10-172.31.255.250"\nlease_time = 3600\n')
    server = Imageserver(srv, srv_if, server_ip, link, extra=relayed).start()

    pcap = lab.tmp_path("replies.pcap")
    capture = prf.popen(["tcpdump", "-i", prf_if, "-U", "-B", "16384", "-w", str(pcap), "src", "host", str(server_ip)])
    wait_for_capture(capture)
    perf = prf.popen(["perfdhcp", "-4", "-l", str(RELAY), "-R", "100000", "-r", "2000", "-p", "5", str(server_ip)])
    time.sleep(3)
    # Mid-storm, with commits in flight: ACKs still waiting for theirs were never sent, so never promised.
    server.kill9()
    perf.wait(30)
    capture.stop()

    report = perf.output()
    assert "DISCOVER-OFFER" in report and "REQUEST-ACK" in report, report
    assert re.findall(r"non unique addresses: (\d+)", report) == ["0", "0"]
    assert re.findall(r"rejected leases: (\d+)", report) == ["0", "0"]

    acks: dict[str, IPv4Address] = {}
    for kind, mac, ip in replies_in(pcap):
        if kind == 5:
            assert acks.setdefault(mac, ip) == ip, f"{mac} was ACKed two addresses"
            assert ip in RELAY_NET
    assert len(acks) > 500, f"too few ACKs to mean anything: {len(acks)}\n{report}"
    assert len(set(acks.values())) == len(acks), "an address was ACKed to two machines"

    db = server.db()
    stored = {mac: IPv4Address(ip) for mac, ip in db.execute("SELECT mac, ip FROM leases")}
    missing = {mac: ip for mac, ip in acks.items() if stored.get(mac) != ip}
    assert missing == {}, f"{len(missing)} ACKed leases are not in the store after kill -9"
    assert len(set(stored.values())) == len(stored)


def wait_for_capture(capture: Proc, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while "listening on" not in capture.output():
        if time.monotonic() > deadline or not capture.alive():
            raise AssertionError(f"tcpdump did not start: {capture.output()}")
        time.sleep(0.05)
