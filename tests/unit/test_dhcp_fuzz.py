"""Malformed and mutated input: decode() and respond() raise DhcpError or succeed, never anything else,
and every reply respond() builds encodes and decodes again.

Small by default; IMAGESERVER_FUZZ_LONG=1 runs a long campaign.
"""

from __future__ import annotations

import os
from ipaddress import IPv4Address

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocols.dhcp import options as o
from protocols.dhcp.codec import DhcpError, DhcpPacket, decode, encode
from protocols.dhcp.options import MessageType
from protocols.dhcp.reply import respond
from tests.unit.test_dhcp_book import MemoryLeaseBook
from tests.unit.test_dhcp_codec import (
    DHCLIENT_DISCOVER,
    IPXE_DISCOVER,
    PXE_ROM_DISCOVER,
    UDHCPC_DISCOVER,
    client_packet,
)
from tests.unit.test_dhcp_reply import LAN, PROXY, RELAY, SERVER, SETTINGS

LONG = os.environ.get("IMAGESERVER_FUZZ_LONG") == "1"
FUZZ = settings(
    max_examples=20000 if LONG else 300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def overloaded_reply() -> bytes:
    # Two 120-byte options fill the options field, the third goes to file, the 50-byte one to sname.
    spread = {200: bytes(120), 201: bytes(120), 202: bytes(120), 203: bytes(50)}
    data = encode(DhcpPacket(op=2, options={53: b"\x02", 82: b"\x01\x02ab"} | spread), max_size=576)
    assert data[243:246] == b"\x34\x01\x03"
    return data


SEEDS = [DHCLIENT_DISCOVER, UDHCPC_DISCOVER, IPXE_DISCOVER, PXE_ROM_DISCOVER, overloaded_reply()]


def exercise(data: bytes) -> None:
    """Everything a server does with one datagram; only DhcpError may escape."""
    try:
        packet = decode(data)
    except DhcpError:
        return
    for settings_, port in ((SETTINGS, 67), (PROXY, 67), (PROXY, 4011)):
        book = MemoryLeaseBook()
        book.reserve("52:54:00:12:34:56", IPv4Address("10.99.0.20"), "reserved")
        try:
            reply = respond(packet, book, settings_, 1000.0, local_address=SERVER, arrived_port=port)
        except DhcpError:
            continue
        if reply is None:
            continue
        try:
            wire = reply.to_bytes()
        except DhcpError:
            continue  # a reply too large for the client: the server logs and drops it
        assert decode(wire).xid == packet.xid  # what we send always decodes


@pytest.mark.parametrize("seed", range(len(SEEDS)))
def test_truncation_at_every_length(seed: int) -> None:
    data = SEEDS[seed]
    outcomes = set()
    for n in range(len(data) + 1):
        try:
            decode(data[:n])
            outcomes.add("packet")
        except DhcpError:
            outcomes.add("error")
        exercise(data[:n])
    assert outcomes == {"packet", "error"}  # short prefixes fail, prefixes at option boundaries decode


mutations = st.lists(st.tuples(st.integers(0, 700), st.integers(0, 255)), min_size=1, max_size=8)


@FUZZ
@given(seed=st.sampled_from(range(len(SEEDS))), edits=mutations, cut=st.integers(0, 800), tail=st.binary(max_size=40))
def test_mutated_packets_only_raise_dhcp_error(seed: int, edits: list[tuple[int, int]], cut: int, tail: bytes) -> None:
    data = bytearray(SEEDS[seed])
    for pos, value in edits:
        if pos < len(data):
            data[pos] = value
    exercise(bytes(data[:cut]) + tail)


@FUZZ
@given(
    head=st.binary(min_size=236, max_size=236),
    body=st.binary(max_size=400),
    overload=st.sampled_from(
        [b"", b"\x34\x01\x01", b"\x34\x01\x02", b"\x34\x01\x03", b"\x34\x00", b"\x34\x02\x03\x03"]
    ),
)
def test_random_headers_and_overload_into_garbage_only_raise_dhcp_error(
    head: bytes, body: bytes, overload: bytes
) -> None:
    exercise(b"\x01" + head[1:] + b"\x63\x82\x53\x63\x35\x01\x01" + overload + body)


interesting_addresses = st.sampled_from(
    [IPv4Address(0), SERVER, IPv4Address("10.99.0.100"), IPv4Address("10.98.5.10"), RELAY, IPv4Address("1.2.3.4")]
)
junk_values = st.one_of(
    st.binary(max_size=8),
    st.sampled_from(
        [
            b"PXEClient",
            b"PXEClient:Arch:00007:UNDI:003016",
            b"HTTPClient",
            b"iPXE",
            b"\x04iPXE",
            b"\xff\xfe",
            b"\x00\x07",
            b"\x00\x10",
            SERVER.packed,
            IPv4Address("10.99.0.150").packed,
        ]
    ),
    st.binary(max_size=300),
)
codes = st.sampled_from([3, 6, 12, 43, 50, 51, 54, 55, 57, 60, 61, 77, 81, 82, 93, 94, 97, 175])


@FUZZ
@given(
    mtype=st.integers(0, 12),
    mac=st.binary(min_size=6, max_size=6),
    hlen=st.sampled_from([0, 6, 16]),
    ciaddr=interesting_addresses,
    giaddr=interesting_addresses,
    flags=st.sampled_from([0, 0x8000]),
    opts=st.dictionaries(codes, junk_values, max_size=8),
)
def test_requests_with_junk_options_only_raise_dhcp_error(mtype, mac, hlen, ciaddr, giaddr, flags, opts) -> None:
    packet = DhcpPacket(
        op=1,
        hlen=hlen,
        flags=flags,
        ciaddr=ciaddr,
        giaddr=giaddr,
        chaddr=mac.ljust(16, b"\x00"),
        options={53: bytes([mtype])} | opts,
    )
    try:
        data = encode(packet, max_size=1500)
    except DhcpError:
        return
    exercise(data)


# --- specific malformations named in the brief --------------------------------------------------------------


def header(mac: str = "525400000001") -> str:
    return "01 01 06 00 00000001 0000 0000" + "00000000" * 4 + mac


@pytest.mark.parametrize("code", [12, 60, 77, 81])
def test_non_utf8_text_options_still_get_an_offer(code: int) -> None:
    data = client_packet(header(), f"350101 {code:02x}04 fffe80c3 ff", 300)
    packet = decode(data)
    reply = respond(packet, MemoryLeaseBook(), SETTINGS, 0.0)
    assert reply is not None and decode(reply.to_bytes()).message_type == MessageType.OFFER
    if code in (12, 60):
        with pytest.raises(DhcpError):
            o.text(packet, code)


def test_pxe_vendor_class_with_junk_after_the_prefix_still_boots() -> None:
    packet = decode(client_packet(header(), "350101 3c0b505845436c69656e74ff80 5d020000 ff", 300))
    reply = respond(packet, MemoryLeaseBook(), SETTINGS, 0.0)
    assert reply is not None and o.text(decode(reply.to_bytes()), 67) == "undionly.kpxe"


def test_requested_address_split_over_two_instances_is_reassembled() -> None:
    packet = decode(client_packet(header(), "350101 32020a63 32020096 ff", 300))  # 10.99 + 0.150
    reply = respond(packet, MemoryLeaseBook(), SETTINGS, 0.0)
    assert reply is not None and reply.packet.yiaddr == IPv4Address("10.99.0.150")


@pytest.mark.parametrize(
    ("options", "why"),
    [
        ("350101 3203 0a6300 ff", "requested address of 3 bytes"),
        ("350103 3602 0a63 ff", "server id of 2 bytes"),
        ("350101 3c09505845436c69656e74 5d03000000 ff", "odd-length client architecture of a PXE client"),
    ],
)
def test_malformed_deciding_options_make_respond_raise_dhcp_error(options: str, why: str) -> None:
    data = client_packet(header(), options, 300)
    packet = decode(data)
    with pytest.raises(DhcpError):
        respond(packet, MemoryLeaseBook(), SETTINGS, 0.0)


def test_malformed_max_message_size_falls_back_to_576() -> None:
    reply = respond(decode(client_packet(header(), "350101 3901 05 ff", 300)), MemoryLeaseBook(), SETTINGS, 0.0)
    assert reply is not None and reply.max_size == 576


def test_relay_agent_information_of_any_length_is_echoed_unchanged() -> None:
    relay_info = bytes(range(256)) + b"!"  # longer than one option instance
    packet = DhcpPacket(
        op=1,
        giaddr=RELAY,
        chaddr=bytes.fromhex("525400000001").ljust(16, b"\x00"),
        options={53: b"\x01", 82: relay_info},
    )
    reply = respond(decode(encode(packet, max_size=1500)), MemoryLeaseBook(), SETTINGS, 0.0, local_address=LAN.router)
    assert reply is not None and decode(reply.to_bytes()).options[82] == relay_info
