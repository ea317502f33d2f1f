"""RMCP/ASF presence ping and pong (DMTF ASF 2.0, section 3.2.4): the one-packet question "does an IPMI
BMC listen here?", used to tell a silent address from one that answers garbage from one that refuses a
session (ipmitool says "Unable to establish IPMI v2 / RMCP+ session" for all three)."""

from __future__ import annotations

ASF_IANA = b"\x00\x00\x11\xbe"  # the ASF enterprise number, 4542
RMCP_HEADER = b"\x06\x00\xff\x06"  # version 1.0, reserved, sequence 0xff (no ack), class ASF
PING, PONG = 0x80, 0x40


def presence_ping(tag: int = 0) -> bytes:
    return RMCP_HEADER + ASF_IANA + bytes([PING, tag & 0xFF, 0x00, 0x00])


def is_presence_pong(data: bytes) -> bool:
    return len(data) >= 12 and data[:4] == RMCP_HEADER and data[4:8] == ASF_IANA and data[8] == PONG
