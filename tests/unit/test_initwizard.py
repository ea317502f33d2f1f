"""The init wizard's pure parts: interface listing, pool proposals, offer parsing, the rendered config."""

from __future__ import annotations

import json
from ipaddress import IPv4Address, IPv4Interface
from pathlib import Path

import pytest

from appliance.cli import initwizard as w
from appliance.config import load_config
from protocols.dhcp.codec import BOOTREPLY, DhcpPacket, decode, encode
from protocols.dhcp.probe import Offer, discover_packet, parse_offer
from services.dhcp_server_probe import ProbeResult

EXAMPLE = Path(__file__).resolve().parents[2] / "appliance" / "data" / "imageserver.toml"

IP_J_ADDR = json.dumps([
    {"ifname": "lo", "flags": ["LOOPBACK", "UP"], "link_type": "loopback", "address": "00:00:00:00:00:00",
     "addr_info": [{"family": "inet", "local": "127.0.0.1", "prefixlen": 8}]},
    {"ifname": "eth0", "flags": ["BROADCAST", "UP", "LOWER_UP"], "link_type": "ether", "address": "02:00:00:00:00:01",
     "addr_info": [{"family": "inet", "local": "192.0.2.2", "prefixlen": 24},
                   {"family": "inet6", "local": "fe80::1", "prefixlen": 64}]},
    {"ifname": "eth1@if7", "flags": ["BROADCAST", "UP"], "link_type": "ether", "address": "02:00:00:00:00:02",
     "addr_info": [{"family": "inet", "local": "10.0.0.1", "prefixlen": 24}]},
    {"ifname": "eth2", "flags": ["BROADCAST"], "link_type": "ether", "address": "02:00:00:00:00:03", "addr_info": []},
])


def a(text: str) -> IPv4Address:
    return IPv4Address(text)


def test_interfaces_keep_ipv4_only_and_strip_the_peer_suffix() -> None:
    ifaces = w.parse_ip_addr(IP_J_ADDR)
    assert [i.name for i in ifaces] == ["lo", "eth0", "eth1", "eth2"]
    assert ifaces[1].addresses == (IPv4Interface("192.0.2.2/24"),)
    assert ifaces[0].loopback and ifaces[0].mac is None
    assert not ifaces[3].up


def test_default_interface_prefers_the_one_without_the_default_route() -> None:
    ifaces = w.parse_ip_addr(IP_J_ADDR)
    gateways = w.parse_default_routes('[{"dst":"default","gateway":"192.0.2.1","dev":"eth0"}]')
    assert gateways == {"eth0": a("192.0.2.1")}
    assert w.default_interface(ifaces, gateways).name == "eth1"
    assert w.default_interface(ifaces, {}).name == "eth0"
    assert w.default_interface(ifaces[:1], {}) is None


@pytest.mark.parametrize(("address", "avoid", "pool"), [
    ("10.0.0.1/24", [], ("10.0.0.128", "10.0.0.254")),
    ("10.0.0.200/24", [], ("10.0.0.128", "10.0.0.199")),  # the longer run below the box's own address
    ("10.0.0.140/24", ["10.0.0.254"], ("10.0.0.141", "10.0.0.253")),
    ("172.16.5.9/16", ["172.16.0.1"], ("172.16.128.0", "172.16.255.254")),
    ("10.0.0.1/29", [], ("10.0.0.4", "10.0.0.6")),
])
def test_pool_is_the_longest_free_run_of_the_upper_half(address: str, avoid: list[str],
                                                        pool: tuple[str, str]) -> None:
    assert w.propose_pool(IPv4Interface(address), [a(x) for x in avoid]) == (a(pool[0]), a(pool[1]))


def test_pool_refusals() -> None:
    with pytest.raises(w.WizardError, match="too small"):
        w.propose_pool(IPv4Interface("10.0.0.1/30"))
    box = IPv4Interface("10.0.0.10/24")
    with pytest.raises(w.WizardError, match="own address"):
        w.parse_pool("10.0.0.5-10.0.0.20", box)
    with pytest.raises(w.WizardError, match="not a host address"):
        w.parse_pool("10.0.0.100-10.0.1.5", box)
    with pytest.raises(w.WizardError, match="first-last"):
        w.parse_pool("10.0.0.100", box)
    assert w.parse_pool(" 10.0.0.100 - 10.0.0.120 ", box) == (a("10.0.0.100"), a("10.0.0.120"))


def test_probe_packet_is_a_broadcast_discover_and_only_our_offers_count() -> None:
    sent = decode(discover_packet("02:00:00:00:00:02", 0x1234))
    assert sent.message_type == 1 and sent.broadcast and sent.mac == "02:00:00:00:00:02" and sent.xid == 0x1234
    offer = DhcpPacket(op=BOOTREPLY, xid=0x1234, yiaddr=a("10.0.0.100"), chaddr=sent.chaddr,
                       options={53: b"\x02", 54: a("10.0.0.1").packed})
    got = parse_offer(encode(offer), "10.0.0.1", 0x1234)
    assert got == Offer(server=a("10.0.0.1"), address=a("10.0.0.100"), sender=a("10.0.0.1"))
    assert got.hands_out_addresses
    assert parse_offer(encode(offer), "10.0.0.1", 0x9999) is None  # someone else's exchange
    offer.options[53] = b"\x05"
    assert parse_offer(encode(offer), "10.0.0.1", 0x1234) is None  # an ACK is not an offer
    assert parse_offer(b"junk", "10.0.0.1", 0x1234) is None
    proxy = DhcpPacket(op=BOOTREPLY, xid=1, options={53: b"\x02", 54: a("10.0.0.7").packed})
    result = ProbeResult(offers=[parse_offer(encode(proxy), "10.0.0.7", 1)])
    assert result.dhcp_servers == []  # a ProxyDHCP answer hands out no address


@pytest.mark.parametrize("mode", ["authoritative", "proxy"])
def test_rendered_config_loads_and_keeps_the_examples_comments(tmp_path: Path, mode: str) -> None:
    answers = w.Answers(interface="eth1", address=IPv4Interface("10.9.0.10/24"), mode=mode,
                        pool=(a("10.9.0.128"), a("10.9.0.254")) if mode == "authoritative" else None,
                        router=a("10.9.0.1"), state_dir=tmp_path / "state", note="probe: nothing")
    text = w.render_config(EXAMPLE.read_text(), answers, written_at="now")
    path = tmp_path / "imageserver.toml"
    path.write_text(text)
    cfg = load_config(path)
    assert cfg.appliance.interface == "eth1" and str(cfg.appliance.address) == "10.9.0.10"
    assert cfg.dhcp.enabled and cfg.dhcp.mode == mode
    assert cfg.state_dir == tmp_path / "state"
    assert "# probe: nothing" in text and "# database, images/, scripts/, boot files, admin.token" in text
    assert "an annotated example" not in text
    if mode == "authoritative":
        (subnet,) = cfg.dhcp.subnets
        assert (str(subnet.pool_first), str(subnet.pool_last), str(subnet.router)) == \
            ("10.9.0.128", "10.9.0.254", "10.9.0.1")
        (line,) = [x for x in text.splitlines() if x.startswith('router = "10.9.0.1"')]
        (original,) = [x for x in EXAMPLE.read_text().splitlines() if x.startswith("router = ")]
        assert line.index("# option 3") == original.index("# example: option 3")  # the comment keeps its column
    else:
        assert cfg.dhcp.subnets == ()
        assert '# subnet = "10.9.0.0/24"' in text
