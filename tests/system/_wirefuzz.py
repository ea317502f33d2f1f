"""A wire-level fuzzer for the running imageserver, run inside a lab namespace (not a test module):

  python3 -m tests.system._wirefuzz IFACE SERVER COUNT SECONDS SEED     prints a JSON summary

It sends at most COUNT datagrams (and stops after SECONDS): mutated DHCP to port 67 (broadcast and
unicast), mutated TFTP to port 69 plus short transfers whose TID port then gets mutated ACKs, ERRORs
and junk, and mutated DNS over UDP and over TCP (lying length prefixes, half frames, early close).
The seeds are the codecs' own real-client fixtures (dhclient, udhcpc, iPXE and PXE ROM DISCOVERs;
RRQs as atftp, curl and pxelinux send them; dig-style queries with and without EDNS).
"""

from __future__ import annotations

import contextlib
import json
import random
import select
import socket
import struct
import sys
import time
from collections import Counter

from dnslib import EDNS0, DNSRecord

from tests.unit.test_dhcp_codec import DHCLIENT_DISCOVER, IPXE_DISCOVER, PXE_ROM_DISCOVER, UDHCPC_DISCOVER

DHCP_TYPE_AT = 242  # offset of option 53's value in the seeds (cookie at 236, then 35 01 <type>)


def dhcp_seeds() -> list[bytes]:
    seeds = [DHCLIENT_DISCOVER, UDHCPC_DISCOVER, IPXE_DISCOVER, PXE_ROM_DISCOVER]
    out = list(seeds)
    for seed in seeds:  # the same clients' other messages: REQUEST, DECLINE, RELEASE, INFORM
        for kind in (3, 4, 7, 8):
            packet = bytearray(seed)
            packet[DHCP_TYPE_AT] = kind
            out.append(bytes(packet))
    return out


def tftp_seeds() -> list[bytes]:
    def rrq(name: str, mode: str = "octet", **opts: str) -> bytes:
        fields = [name, mode, *(x for kv in opts.items() for x in kv)]
        return b"\x00\x01" + b"".join(f.encode() + b"\x00" for f in fields)

    return [
        rrq("undionly.kpxe", blksize="1468", tsize="0", windowsize="16"),  # atftp as LAB.md runs it
        rrq("undionly.kpxe", blksize="1024", tsize="0"),  # curl tftp://
        rrq("undionly.kpxe"),  # tftp-hpa
        rrq("pxelinux.cfg/01-52-54-00-12-34-56", "netascii"),  # pxelinux's per-MAC config
        rrq("../../etc/passwd"),
        b"\x00\x02upload\x00octet\x00",  # WRQ: refused
        b"\x00\x04\x00\x01",  # a stray ACK
        b"\x00\x05\x00\x00oops\x00",
    ]


def dns_seeds() -> list[bytes]:
    seeds = [DNSRecord.question("imageserver.cluster.local").pack(),
             DNSRecord.question("1.0.99.10.in-addr.arpa", "PTR").pack(),
             DNSRecord.question("cluster.local", "SOA").pack(),
             DNSRecord.question("example.com", "AAAA").pack()]
    edns = DNSRecord.question("node1.rack2.cluster.local", "ANY")
    edns.add_ar(EDNS0(udp_len=1400, flags="do"))
    seeds.append(edns.pack())
    # A name whose compression pointer points at itself.
    seeds.append(struct.pack("!6H", 0x1234, 0x0100, 1, 0, 0, 0) + b"\xc0\x0c" + b"\x00\x01\x00\x01")
    return seeds


def mutate(rng: random.Random, data: bytes, seeds: list[bytes]) -> bytes:
    """One to four of: bit flips, byte sets, truncation, insertion, deletion, splicing, extremes."""
    buf = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(8)
        if op == 0 and buf:
            i = rng.randrange(len(buf))
            buf[i] ^= 1 << rng.randrange(8)
        elif op == 1 and buf:
            buf[rng.randrange(len(buf))] = rng.choice([0, 1, 0x7F, 0x80, 0xFF, rng.randrange(256)])
        elif op == 2:
            del buf[rng.randrange(len(buf) + 1):]
        elif op == 3:
            i = rng.randrange(len(buf) + 1)
            buf[i:i] = rng.randbytes(rng.randint(1, 64))
        elif op == 4 and buf:
            i = rng.randrange(len(buf))
            del buf[i:i + rng.randint(1, 32)]
        elif op == 5:
            other = rng.choice(seeds)
            cut = rng.randrange(len(other) + 1)
            buf = buf[:rng.randrange(len(buf) + 1)] + bytearray(other[cut:])
        elif op == 6 and len(buf) >= 2:
            i = rng.randrange(len(buf) - 1)
            buf[i:i + 2] = rng.choice([b"\xff\xff", b"\x00\x00", b"\x7f\xff", b"\x80\x00"])
        elif op == 7:
            buf = bytearray(rng.randbytes(rng.randrange(0, 1500)))
    return bytes(buf[:1500])


class Fuzzer:
    def __init__(self, iface: str, server: str, seed: int) -> None:
        self.iface, self.server = iface, server
        self.rng = random.Random(seed)
        self.stats: Counter[str] = Counter()
        self.dhcp = dhcp_seeds()
        self.tftp = tftp_seeds()
        self.dns = dns_seeds()
        self.dhcp_sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.dhcp_sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.dhcp_sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        self.dhcp_sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, iface.encode())
        self.dhcp_sock.bind(("0.0.0.0", 68))
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.setblocking(False)

    def send(self, sock: socket.socket, data: bytes, dest: tuple[str, int], what: str) -> None:
        try:
            sock.sendto(data, dest)
            self.stats[what] += 1
        except OSError:
            self.stats[f"{what}_send_failed"] += 1

    def one(self) -> None:
        rng = self.rng
        roll = rng.random()
        if roll < 0.40:
            dest = ("255.255.255.255", 67) if rng.random() < 0.7 else (self.server, 67)
            self.send(self.dhcp_sock, mutate(rng, rng.choice(self.dhcp), self.dhcp), dest, "dhcp")
        elif roll < 0.65:
            self.send(self.udp, mutate(rng, rng.choice(self.tftp), self.tftp), (self.server, 69), "tftp")
        elif roll < 0.72:
            self.tftp_session()
        elif roll < 0.96:
            self.send(self.udp, mutate(rng, rng.choice(self.dns), self.dns), (self.server, 53), "dns")
        else:
            self.dns_tcp()
        with contextlib.suppress(OSError):  # drain replies so nothing piles up here
            while True:
                self.udp.recv(4096)

    def tftp_session(self) -> None:
        """A real RRQ, then junk into the transfer's TID port; half the time a proper ERROR ends it."""
        rng = self.rng
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.sendto(rng.choice(self.tftp[:3]), (self.server, 69))
            if not select.select([sock], [], [], 0.3)[0]:
                self.stats["tftp_session_silent"] += 1
                return
            _first, tid = sock.recvfrom(65536)
            self.stats["tftp_sessions"] += 1
            junk = [b"\x00\x04" + struct.pack("!H", rng.randrange(65536)), b"\x00\x04", b"\x00\x06blksize\x00",
                    b"\x00\x03\x00\x01" + rng.randbytes(rng.randrange(600)), b"\x00\x05\x00\x08\x00", b"\x00\x09"]
            for _ in range(rng.randint(1, 5)):
                self.send(sock, mutate(rng, rng.choice(junk), junk) if rng.random() < 0.5 else rng.choice(junk),
                          tid, "tftp_tid")
            if rng.random() < 0.5:
                self.send(sock, b"\x00\x05\x00\x00fuzz done\x00", tid, "tftp_tid")

    def dns_tcp(self) -> None:
        rng = self.rng
        body = mutate(rng, rng.choice(self.dns), self.dns)
        length = rng.choice([len(body), len(body) + rng.randint(1, 100), max(0, len(body) - 3), 0, 0xFFFF])
        frame = struct.pack("!H", length) + body
        if rng.random() < 0.3:
            frame = frame[: rng.randrange(len(frame) + 1)]  # half a frame, then close
        try:
            with socket.create_connection((self.server, 53), timeout=1) as conn:
                conn.sendall(frame)
                self.stats["dns_tcp"] += 1
                if rng.random() < 0.5:
                    with contextlib.suppress(OSError):
                        conn.recv(4096)
        except OSError:
            self.stats["dns_tcp_failed"] += 1


def main(argv: list[str]) -> int:
    iface, server, count, seconds, seed = argv[1], argv[2], int(argv[3]), float(argv[4]), int(argv[5])
    fuzzer = Fuzzer(iface, server, seed)
    deadline = time.monotonic() + seconds
    for n in range(count):
        if time.monotonic() > deadline:
            break
        fuzzer.one()
        if n % 50 == 49:
            time.sleep(0.005)  # a hostile client, not a flood: the real clients share this link
    print(json.dumps(dict(fuzzer.stats)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
