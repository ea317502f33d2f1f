"""ICMP echo (RFC 792) for the DHCP conflict probe: build a request, recognise its reply. No I/O."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from ipaddress import IPv4Address

ECHO_REPLY = 0
ECHO_REQUEST = 8
_HEADER = struct.Struct("!BBHHH")  # type, code, checksum, identifier, sequence


class IcmpError(ValueError):
    """Bytes that are not an IPv4 packet carrying an ICMP message."""


@dataclass(frozen=True, slots=True)
class EchoReply:
    source: IPv4Address
    identifier: int
    sequence: int


def checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071)."""
    if len(data) % 2:
        data += b"\x00"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def echo_request(identifier: int, sequence: int, payload: bytes = b"imageserver-probe") -> bytes:
    body = _HEADER.pack(ECHO_REQUEST, 0, 0, identifier & 0xFFFF, sequence & 0xFFFF) + payload
    return body[:2] + struct.pack("!H", checksum(body)) + body[4:]


def parse_echo_reply(packet: bytes) -> EchoReply | None:
    """An IPv4 datagram as a raw ICMP socket delivers it; None if it is ICMP but not an echo reply."""
    if len(packet) < 20 or packet[0] >> 4 != 4:
        raise IcmpError("not an IPv4 packet")
    header_len = (packet[0] & 0x0F) * 4
    if header_len < 20 or len(packet) < header_len + _HEADER.size:
        raise IcmpError("truncated IPv4/ICMP header")
    if packet[9] != 1:
        raise IcmpError(f"IP protocol {packet[9]} is not ICMP")
    kind, _code, _sum, identifier, sequence = _HEADER.unpack_from(packet, header_len)
    if kind != ECHO_REPLY:
        return None
    return EchoReply(IPv4Address(packet[12:16]), identifier, sequence)
