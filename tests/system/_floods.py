"""Spoofed DHCP floods for the security system tests, run inside a client namespace:

  python -m tests.system._floods IFACE discover COUNT   COUNT DISCOVERs from made-up MACs, as fast as they go
  python -m tests.system._floods IFACE decline COUNT    COUNT cycles: DISCOVER from a made-up MAC, DECLINE its offer

Every packet is crafted with our codec and sent from port 68 on IFACE; MACs are random, locally
administered (02:...), so they can never be a real machine's. Prints a JSON summary.
"""

from __future__ import annotations

import json
import random
import sys
from typing import Any

from protocols.dhcp.codec import DhcpPacket, encode
from tests.system._rawdhcp import BROADCAST_FLAG, exchange, open_socket


def made_up_mac(rng: random.Random) -> bytes:
    return bytes([0x02, *rng.randbytes(5)])


def discover_flood(iface: str, count: int, seed: int = 14) -> dict[str, Any]:
    rng = random.Random(seed)
    sock = open_socket(iface)
    sock.setblocking(False)
    sent = dropped = 0
    for _ in range(count):
        pkt = DhcpPacket(xid=rng.getrandbits(32), flags=BROADCAST_FLAG, chaddr=made_up_mac(rng).ljust(16, b"\x00"),
                         options={53: b"\x01", 60: b"PXEClient:Arch:00000", 93: b"\x00\x00"})
        try:
            sock.sendto(encode(pkt), ("255.255.255.255", 67))
            sent += 1
        except (BlockingIOError, OSError):
            dropped += 1  # a full send buffer: the flood goes on
        # Replies pile up in our receive buffer; read them away so the kernel does not drop our sends' peers.
        try:
            while sock.recv(4096):
                pass
        except (BlockingIOError, OSError):
            pass
    return {"sent": sent, "dropped": dropped}


def decline_cycles(iface: str, count: int, seed: int = 7) -> dict[str, Any]:
    rng = random.Random(seed)
    sock = open_socket(iface)
    offers = declined = 0
    for _ in range(count):
        mac = made_up_mac(rng).ljust(16, b"\x00")
        xid = rng.getrandbits(32)
        offer = exchange(sock, DhcpPacket(xid=xid, flags=BROADCAST_FLAG, chaddr=mac, options={53: b"\x01"}),
                         timeout=2.0)
        if offer is None or 54 not in offer.options:
            continue
        offers += 1
        decline = DhcpPacket(xid=xid, chaddr=mac, options={53: b"\x04", 50: offer.yiaddr.packed,
                                                            54: offer.options[54]})
        sock.sendto(encode(decline), ("255.255.255.255", 67))
        declined += 1
    return {"offers": offers, "declined": declined}


def main(argv: list[str]) -> int:
    iface, mode, count = argv[1], argv[2], int(argv[3])
    if mode == "discover":
        print(json.dumps(discover_flood(iface, count)))
    elif mode == "decline":
        print(json.dumps(decline_cycles(iface, count)))
    else:
        print(f"unknown mode {mode}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
