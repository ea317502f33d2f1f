"""Issue 14, item 5: DNS names are owned. A second MAC sending DHCP option 12 "node1" does not take over
node1's name (forward or reverse); reserved names (wpad, localhost, isatap, our own) are refused; a dynamic
name belongs to the first lease that claimed it.

The real daemon (DHCP + DNS) runs in a namespace; node1 is a real dhclient; the claims are DHCP exchanges
crafted with our codec from made-up MACs (tests/system/_rawdhcp.py); dig asks from the client's side.
"""

from __future__ import annotations

import json
import sys
from ipaddress import IPv4Address
from typing import Any

import pytest

from lab.clients import Dhclient
from lab.netns import Lab, Namespace, Pair
from tests.system._daemon import Imageserver, env

pytestmark = pytest.mark.system

DOMAIN = "cluster.local"
NODE1_MAC = "52:54:00:14:05:01"


def claim(pair: Pair, mac: str, name: str) -> IPv4Address:
    """A full DISCOVER/REQUEST from `mac` saying option 12 `name`; the address it was ACKed."""
    spec = {"mac": mac, "request": True, "options": {"12": name.encode().hex()}}
    out = pair.client.run([sys.executable, "-m", "tests.system._rawdhcp", pair.client_if, "discover",
                           json.dumps([spec])], env=env(), timeout=60)
    result: list[dict[str, Any]] = json.loads(out.stdout)
    assert result[0]["ack"] is not None and result[0]["ack"]["type"] == 5, result
    return IPv4Address(result[0]["ack"]["yiaddr"])


def dig(ns: Namespace, server: IPv4Address, *query: str) -> list[str]:
    return ns.run(["dig", f"@{server}", "+short", "+time=2", "+tries=2", *query]).stdout.split()


def set_mac(ns: Namespace, iface: str, mac: str) -> None:
    ns.ip("link", "set", iface, "down")
    ns.ip("link", "set", iface, "address", mac)
    ns.ip("link", "set", iface, "up")


def test_a_second_mac_cannot_take_a_hosts_name_and_reserved_names_are_refused(lab: Lab) -> None:
    pair = lab.server_client_pair()
    server = Imageserver(pair.server, pair.server_if, pair.server_ip, pair.subnet,
                         extra="\n[dns]\nenabled = true\nttl = 0\n").start()
    dns = pair.server_ip
    # node1: a configured host without a fixed address; its own machine (a real dhclient) has a lease.
    server.cli("hosts", "add", "node1", "--mac", NODE1_MAC)
    set_mac(pair.client, pair.client_if, NODE1_MAC)
    node1 = Dhclient(pair.client, pair.client_if)
    real = node1.obtain().ip
    node1.stop()
    assert dig(pair.client, dns, f"node1.{DOMAIN}") == [str(real)]
    assert dig(pair.client, dns, "-x", str(real)) == [f"node1.{DOMAIN}."]

    # The attack: another MAC says it is node1.
    fake = claim(pair, "02:66:00:00:00:01", "node1")
    assert fake != real
    assert dig(pair.client, dns, f"node1.{DOMAIN}") == [str(real)]
    assert dig(pair.client, dns, "-x", str(real)) == [f"node1.{DOMAIN}."]
    assert dig(pair.client, dns, "-x", str(fake)) == []

    # Reserved names: no record comes of claiming them.
    for i, name in enumerate(("wpad", "localhost", "isatap", "imageserver")):
        claim(pair, f"02:66:00:00:01:0{i}", name)
    assert dig(pair.client, dns, f"wpad.{DOMAIN}") == []
    assert dig(pair.client, dns, f"localhost.{DOMAIN}") == []
    assert dig(pair.client, dns, f"isatap.{DOMAIN}") == []
    assert dig(pair.client, dns, f"imageserver.{DOMAIN}") == [str(dns)]  # still ours

    # A dynamic name belongs to the first lease that claimed it.
    first = claim(pair, "02:66:00:00:02:01", "dyn1")
    claim(pair, "02:66:00:00:02:02", "dyn1")
    assert dig(pair.client, dns, f"dyn1.{DOMAIN}") == [str(first)]

    log = server.log()
    for name, reason in (("node1", "host-name"), ("wpad", "reserved"), ("localhost", "reserved"),
                         ("dyn1", "taken")):
        assert f"event=dns-name-refused name={name} " in log and f"reason={reason}" in log, name
    assert log.count("event=dns-name-refused name=node1 ") == 1  # logged once, not per rebuild
