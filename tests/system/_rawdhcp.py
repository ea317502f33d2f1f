"""A scriptable DHCP client for system tests, run inside a client namespace:

  python3 -m tests.system._rawdhcp IFACE discover SPEC_JSON   DISCOVER (+ REQUEST) per spec, print replies as JSON
  python3 -m tests.system._rawdhcp IFACE garbage COUNT        send COUNT malformed/mutated datagrams to port 67

It crafts packets with our codec, which is what a firmware the lab cannot run (a PXE ROM of each
architecture, iPXE, UEFI HTTP boot) sends. Replies come back broadcast, so any chaddr works.
"""

from __future__ import annotations

import json
import random
import select
import socket
import sys
import time
from ipaddress import IPv4Address
from typing import Any

from protocols.dhcp.codec import DhcpError, DhcpPacket, decode, encode

BROADCAST_FLAG = 0x8000


def open_socket(iface: str) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, iface.encode())
    sock.bind(("0.0.0.0", 68))
    return sock


def exchange(sock: socket.socket, packet: DhcpPacket, timeout: float = 3.0,
             dest: tuple[str, int] = ("255.255.255.255", 67)) -> DhcpPacket | None:
    sock.sendto(encode(packet), dest)
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        if not select.select([sock], [], [], left)[0]:
            break
        data = sock.recv(4096)
        try:
            reply = decode(data)
        except DhcpError:
            continue
        if reply.op == 2 and reply.xid == packet.xid:
            return reply
    return None


def describe(reply: DhcpPacket | None) -> dict[str, Any] | None:
    if reply is None:
        return None
    return {
        "type": reply.message_type,
        "yiaddr": str(reply.yiaddr),
        "siaddr": str(reply.siaddr),
        "file": reply.file.rstrip(b"\x00").decode(errors="replace"),
        "options": {str(code): value.hex() for code, value in reply.options.items()},
    }


def discover(iface: str, specs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each spec: {"mac": "..", "options": {code: hex}, "request": bool} and optionally "type" (message
    type, default DISCOVER), "to" ([address, port], default broadcast to 67), "ciaddr", "timeout"."""
    sock = open_socket(iface)
    out = []
    for n, spec in enumerate(specs):
        chaddr = bytes.fromhex(spec["mac"].replace(":", "")).ljust(16, b"\x00")
        extra = {int(code): bytes.fromhex(value) for code, value in spec.get("options", {}).items()}
        xid = random.getrandbits(32)
        first = DhcpPacket(xid=xid, flags=BROADCAST_FLAG, chaddr=chaddr, secs=n,
                           ciaddr=IPv4Address(spec.get("ciaddr", "0.0.0.0")),
                           options={53: bytes([spec.get("type", 1)]), **extra})
        dest = tuple(spec.get("to", ("255.255.255.255", 67)))
        offer = exchange(sock, first, spec.get("timeout", 3.0), (str(dest[0]), int(dest[1])))
        result: dict[str, Any] = {"offer": describe(offer), "ack": None}
        if offer is not None and spec.get("request"):
            req = DhcpPacket(xid=xid, flags=BROADCAST_FLAG, chaddr=chaddr,
                             options={53: b"\x03", 50: offer.yiaddr.packed, 54: offer.options[54], **extra})
            result["ack"] = describe(exchange(sock, req))
        out.append(result)
    return out


def garbage(iface: str, count: int, seed: int = 4011) -> int:
    """Malformed datagrams: random bytes, truncated and bit-flipped real DISCOVERs, lying option lengths."""
    from tests.unit.test_dhcp_codec import DHCLIENT_DISCOVER, IPXE_DISCOVER, PXE_ROM_DISCOVER, UDHCPC_DISCOVER

    rng = random.Random(seed)
    seeds = [DHCLIENT_DISCOVER, UDHCPC_DISCOVER, IPXE_DISCOVER, PXE_ROM_DISCOVER]
    sock = open_socket(iface)
    sent = 0
    for i in range(count):
        base = bytearray(rng.choice(seeds))
        kind = i % 5
        if kind == 0:
            data = rng.randbytes(rng.randrange(0, 600))
        elif kind == 1:
            data = bytes(base[: rng.randrange(0, len(base))])
        elif kind == 2:
            for _ in range(rng.randrange(1, 12)):
                base[rng.randrange(len(base))] = rng.randrange(256)
            data = bytes(base)
        elif kind == 3:
            # An option that claims more bytes than follow, right after the message type.
            data = bytes(base[:243]) + bytes([rng.choice([50, 54, 61, 93, 97, 57]), 250]) + rng.randbytes(20)
        else:
            # Deciding options with wrong lengths: requested IP of 3 bytes, server id of 5, arch odd-sized.
            bad = {50: bytes(3), 54: bytes(5), 93: b"\x00", 97: b"\x01" * 5, 57: b"\x02"}
            code = rng.choice(list(bad))
            pkt = DhcpPacket(xid=i, chaddr=rng.randbytes(6).ljust(16, b"\x00"), flags=BROADCAST_FLAG,
                             options={53: bytes([rng.choice([1, 3, 4, 7, 8])]), code: bad[code],
                                      60: b"PXEClient"})
            data = encode(pkt)
        try:
            sock.sendto(data, ("255.255.255.255", 67))
            sent += 1
        except OSError:
            pass
    return sent


def main(argv: list[str]) -> int:
    iface, mode, arg = argv[1], argv[2], argv[3]
    if mode == "discover":
        print(json.dumps(discover(iface, json.loads(arg))))
    elif mode == "garbage":
        print(json.dumps({"sent": garbage(iface, int(arg))}))
    else:
        print(f"unknown mode {mode}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
