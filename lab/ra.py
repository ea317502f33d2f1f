"""Send IPv6 router advertisements that say "no IPv6 router here", so iPXE stops waiting for one.

Why: iPXE waits about 13 s for IPv6 autoconfiguration unless the link sees a router advertisement
(LAB.md). An RA with router lifetime 0, M=0, O=0 and no prefix option tells it at once that there
is neither a router nor SLAAC nor DHCPv6, and it goes on with IPv4.

Run inside the server namespace (it is a standalone script: `ip netns exec NS python3 ra.py IFACE`;
use `start_ra_sender`). It sends an RA every `--interval` seconds to ff02::1 and answers every
router solicitation at once.
"""

from __future__ import annotations

import argparse
import select
import socket
import struct
import sys
import time
from pathlib import Path

ICMP6_ROUTER_SOLICIT = 133
ICMP6_ROUTER_ADVERT = 134
ICMP6_FILTER = 1  # setsockopt level IPPROTO_ICMPV6 (linux/icmpv6.h)
ALL_NODES = "ff02::1"
ALL_ROUTERS = "ff02::2"


def build_router_advertisement(mac: bytes) -> bytes:
    """RA: hop limit unspecified, M=0, O=0, router lifetime 0, no prefix; source link-layer option.

    The checksum stays 0: the kernel computes it for raw ICMPv6 sockets.
    """
    header = struct.pack("!BBHBBHII", ICMP6_ROUTER_ADVERT, 0, 0, 0, 0x00, 0, 0, 0)
    source_link_layer = struct.pack("!BB6s", 1, 1, mac)
    return header + source_link_layer


def parse_router_advertisement(packet: bytes) -> dict[str, int]:
    """Fields of an RA (for tests): flags, lifetime, and which option types it carries."""
    kind, _code, _checksum, hop_limit, flags, lifetime, reachable, retrans = struct.unpack("!BBHBBHII", packet[:16])
    if kind != ICMP6_ROUTER_ADVERT:
        raise ValueError(f"ICMPv6 type {kind} is not a router advertisement")
    options: list[int] = []
    offset = 16
    while offset + 2 <= len(packet) and packet[offset + 1]:
        options.append(packet[offset])
        offset += packet[offset + 1] * 8
    return {
        "hop_limit": hop_limit,
        "managed": flags >> 7 & 1,
        "other": flags >> 6 & 1,
        "lifetime": lifetime,
        "reachable": reachable,
        "retrans": retrans,
        "has_prefix": int(3 in options),
        "has_source_lladdr": int(1 in options),
    }


def _only_router_solicitations() -> bytes:
    blocked = [0xFFFFFFFF] * 8  # a set bit blocks that ICMPv6 type
    blocked[ICMP6_ROUTER_SOLICIT >> 5] &= ~(1 << (ICMP6_ROUTER_SOLICIT & 31))
    return struct.pack("=8I", *blocked)


def serve(iface: str, interval: float, count: int) -> None:
    index = socket.if_nametoindex(iface)
    mac = bytes.fromhex(Path(f"/sys/class/net/{iface}/address").read_text().strip().replace(":", ""))
    advertisement = build_router_advertisement(mac)
    sock = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, iface.encode())
    # Receivers drop neighbour discovery packets whose hop limit is not 255 (RFC 4861).
    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 255)
    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, 255)
    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, index)
    sock.setsockopt(
        socket.IPPROTO_IPV6,
        socket.IPV6_JOIN_GROUP,
        socket.inet_pton(socket.AF_INET6, ALL_ROUTERS) + struct.pack("=I", index),
    )
    sock.setsockopt(socket.IPPROTO_ICMPV6, ICMP6_FILTER, _only_router_solicitations())
    print(f"ra: advertising on {iface} every {interval} s", flush=True)
    sent = 0
    next_send = time.monotonic()
    while count == 0 or sent < count:
        readable, _, _ = select.select([sock], [], [], max(0.0, next_send - time.monotonic()))
        if readable:
            _, (source, *_rest) = sock.recvfrom(1500)
            print(f"ra: solicitation from {source}", flush=True)
        elif time.monotonic() < next_send:
            continue
        sock.sendto(advertisement, (ALL_NODES, 0, 0, index))
        sent += 1
        next_send = time.monotonic() + interval


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("iface")
    parser.add_argument("--interval", type=float, default=1.0)
    parser.add_argument("--count", type=int, default=0, help="stop after this many RAs (0: run until killed)")
    args = parser.parse_args(argv)
    serve(args.iface, args.interval, args.count)
    return 0


if __name__ == "__main__":
    sys.exit(main())
