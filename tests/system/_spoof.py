"""Spoofed DHCP packets for the security system tests, run inside an attacker namespace:

  python -m tests.system._spoof release SRC_IP SERVER_IP MAC CIADDR
      a DHCPRELEASE for MAC/CIADDR sent from SRC_IP:68 (another machine ending someone's lease)
  python -m tests.system._spoof relay IFACE GIADDR SERVER_IP MAC HOW
      a DISCOVER with giaddr = GIADDR; HOW: "client" (broadcast from 0.0.0.0:68 on IFACE, hops 0, as a
      client on the link forging giaddr), "hops0" (unicast from GIADDR:67, hops 0), "relay" (unicast from
      GIADDR:67, hops 1: what a relay agent sends), "rsp" (unicast from GIADDR:8067, hops 1, with option 82
      sub-option 19, RFC 8357's relay source port). Prints the replies that reached GIADDR:67 as JSON.
"""

from __future__ import annotations

import json
import random
import select
import socket
import sys
import time
from ipaddress import IPv4Address

from protocols.dhcp.codec import DhcpError, DhcpPacket, decode, encode

RSP_PORT = 8067


def _chaddr(mac: str) -> bytes:
    return bytes.fromhex(mac.replace(":", "")).ljust(16, b"\x00")


def release(src: str, server: str, mac: str, ciaddr: str) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((src, 68))
    packet = DhcpPacket(xid=random.getrandbits(32), chaddr=_chaddr(mac), ciaddr=IPv4Address(ciaddr),
                        options={53: b"\x07", 54: IPv4Address(server).packed})
    for _ in range(3):  # UDP: say it three times, the server must ignore every one
        sock.sendto(encode(packet), (server, 67))
        time.sleep(0.05)


def relay(iface: str, giaddr: str, server: str, mac: str, how: str) -> list[dict[str, str]]:
    listen = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    listen.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listen.bind((giaddr, 67))
    xid = random.getrandbits(32)
    options = {53: b"\x01"}
    if how == "rsp":
        options[82] = bytes([19, 2]) + RSP_PORT.to_bytes(2, "big")
    packet = DhcpPacket(xid=xid, chaddr=_chaddr(mac), giaddr=IPv4Address(giaddr),
                        hops=1 if how in ("relay", "rsp") else 0, options=options)
    if how == "client":
        sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sender.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sender.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        sender.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, iface.encode())
        sender.bind(("0.0.0.0", 68))
        sender.sendto(encode(packet), ("255.255.255.255", 67))
    elif how == "rsp":
        sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sender.bind((giaddr, RSP_PORT))
        sender.sendto(encode(packet), (server, 67))
    else:
        listen.sendto(encode(packet), (server, 67))
    replies = []
    deadline = time.monotonic() + 2.0
    while (left := deadline - time.monotonic()) > 0:
        if not select.select([listen], [], [], left)[0]:
            break
        try:
            reply = decode(listen.recv(4096))
        except DhcpError:
            continue
        if reply.xid == xid:
            replies.append({"type": str(reply.message_type), "yiaddr": str(reply.yiaddr)})
    return replies


def main(argv: list[str]) -> int:
    if argv[1] == "release":
        release(*argv[2:6])
        return 0
    if argv[1] == "relay":
        print(json.dumps(relay(*argv[2:7])))
        return 0
    print(f"unknown mode {argv[1]}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
