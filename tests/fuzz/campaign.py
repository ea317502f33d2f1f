"""Mutation fuzzing campaigns over the three wire protocols, fast enough for a million inputs each.

Each campaign mutates seeds taken from real client traffic (the codecs' captured fixtures) and feeds
every input through everything the server does with a datagram: decode, the pure reply logic, and
encoding what it would send. The one allowed exception per protocol is its own error type; anything
else is a crash, recorded with the input's hex so it can be replayed.

Run long:  python3 -m tests.fuzz.campaign --inputs 1000000 [--protocol dhcp|tftp|dns] [--seed N]
(`make test` runs a short campaign per protocol through tests/fuzz/test_campaigns.py.)
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

from dnslib import EDNS0, QTYPE, DNSRecord

from protocols.dns import answer, make_zone
from protocols.tftp import TftpError
from protocols.tftp.requests import Admitted, admit
from protocols.tftp.transfer import ReadTransfer
from tests.unit.test_dhcp_fuzz import SEEDS as DHCP_SEEDS
from tests.unit.test_dhcp_fuzz import exercise as dhcp_exercise
from tests.unit.test_dns_protocol import NAMES as DNS_NAMES
from tests.unit.test_dns_protocol import SETTINGS as DNS_SETTINGS

Target = Callable[[bytes], None]

# Values that tend to sit on boundaries of length fields and counters.
INTERESTING = (0, 1, 0x7F, 0x80, 0xFF, 0x3F, 0x40, 0xC0, 0x10, 0x20)


def mutate(data: bytes, rng: random.Random, seeds: Sequence[bytes]) -> bytes:
    """One to four stacked mutations: flips, byte sets, truncation, insertion, chunk duplication, splicing."""
    buf = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(8)
        n = len(buf)
        if op == 0 and n:
            i = rng.randrange(n)
            buf[i] ^= 1 << rng.randrange(8)
        elif op == 1 and n:
            buf[rng.randrange(n)] = rng.choice(INTERESTING) if rng.random() < 0.5 else rng.randrange(256)
        elif op == 2 and n:
            del buf[rng.randrange(n):]
        elif op == 3:
            i = rng.randrange(n + 1)
            buf[i:i] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))
        elif op == 4 and n > 2:
            a = rng.randrange(n - 1)
            b = rng.randrange(a + 1, min(n, a + 64) + 1)
            buf[a:a] = buf[a:b]
        elif op == 5 and n:
            a = rng.randrange(n)
            del buf[a:a + rng.randint(1, 8)]
        elif op == 6:
            other = rng.choice(seeds)
            cut = rng.randrange(min(len(buf), len(other)) + 1)
            buf = buf[:cut] + bytearray(other[cut:])
        elif op == 7 and n >= 2:
            i = rng.randrange(n - 1)
            buf[i:i + 2] = rng.randrange(65536).to_bytes(2, "big")
    return bytes(buf)


# --- targets -------------------------------------------------------------------------------------

def tftp_seeds() -> list[bytes]:
    opts = b"blksize\x001468\x00tsize\x000\x00windowsize\x0016\x00timeout\x003\x00"
    return [
        b"\x00\x01undionly.kpxe\x00octet\x00" + opts,  # atftp-style RRQ with options
        b"\x00\x01pxelinux.cfg/01-52-54-00-12-34-56\x00netascii\x00",
        b"\x00\x01/ipxe.efi\x00octet\x00blksize\x00abc\x00",
        b"\x00\x04\x00\x01",  # ACK
        b"\x00\x05\x00\x01no\x00",  # ERROR
        b"\x00\x02x\x00octet\x00",  # WRQ
    ]


def tftp_exercise(data: bytes) -> None:
    """Port 69's admission, then (for an admitted RRQ) a transfer fed the mutated datagram as its ACK."""
    verdict = admit(data)
    if not isinstance(verdict, Admitted):
        return
    transfer = ReadTransfer(verdict.request, bytes(range(256)) * 40, size=10240)
    try:
        transfer.start(0.0)
        transfer.receive(data[-4:] if len(data) >= 4 else data, 0.1)
        transfer.receive(b"\x00\x04\x00\x01", 0.2)
        transfer.on_timeout(10.0)
    except TftpError:
        pass


def dns_seeds() -> list[bytes]:
    out = [
        DNSRecord.question("www2.cluster.local").pack(),
        DNSRecord.question("1.0.99.10.in-addr.arpa", "PTR").pack(),
        DNSRecord.question("cluster.local", "SOA").pack(),
        DNSRecord.question("example.org", "AAAA").pack(),
    ]
    q = DNSRecord.question("imageserver.cluster.local", "ANY")
    q.add_ar(EDNS0(udp_len=4096))
    out.append(q.pack())
    q2 = DNSRecord.question("nope.cluster.local", QTYPE.get("TXT"))
    q2.header.rd = 0
    out.append(q2.pack())
    return out


def dns_target() -> Target:
    zone = make_zone(DNS_SETTINGS, DNS_NAMES, serial=1)

    def run(data: bytes) -> None:
        # answer() promises to decide (reply, forward or drop) for any bytes: no exception at all.
        answer(data, zone, transport="udp", forwarding=True)
        answer(data, zone, transport="tcp", forwarding=False)

    return run


@dataclass(frozen=True, slots=True)
class Protocol:
    name: str
    seeds: Callable[[], list[bytes]]
    target: Callable[[], Target]


PROTOCOLS = {
    "dhcp": Protocol("dhcp", lambda: list(DHCP_SEEDS), lambda: dhcp_exercise),
    "tftp": Protocol("tftp", tftp_seeds, lambda: tftp_exercise),
    "dns": Protocol("dns", dns_seeds, dns_target),
}


@dataclass(slots=True)
class Result:
    protocol: str
    inputs: int = 0
    seconds: float = 0.0
    crashes: list[tuple[str, str]] = field(default_factory=list)  # (exception, input hex)


def inputs(seeds: Sequence[bytes], count: int, rng: random.Random) -> Iterator[bytes]:
    yield from seeds
    for _ in range(count - len(seeds)):
        yield mutate(rng.choice(seeds), rng, seeds)


def run_campaign(protocol: str, count: int, seed: int = 1, max_crashes: int = 10) -> Result:
    proto = PROTOCOLS[protocol]
    target = proto.target()
    rng = random.Random(seed)
    result = Result(protocol)
    start = time.monotonic()
    for data in inputs(proto.seeds(), count, rng):
        result.inputs += 1
        try:
            target(data)
        except Exception as e:  # the protocol's own error is handled inside the target
            result.crashes.append((f"{type(e).__name__}: {e}", data.hex()))
            if len(result.crashes) >= max_crashes:
                break
    result.seconds = time.monotonic() - start
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--protocol", choices=sorted(PROTOCOLS), action="append",
                   help="protocol to fuzz (repeatable; default: all)")
    p.add_argument("--inputs", type=int, default=1_000_000, help="inputs per protocol (default 1,000,000)")
    p.add_argument("--seed", type=int, default=1, help="random seed (a campaign is reproducible)")
    args = p.parse_args(argv)
    failed = False
    for name in args.protocol or sorted(PROTOCOLS):
        r = run_campaign(name, args.inputs, args.seed)
        rate = r.inputs / r.seconds if r.seconds else 0.0
        print(f"{name}: {r.inputs} inputs in {r.seconds:.1f} s ({rate:,.0f}/s), {len(r.crashes)} crashes")
        for exc, hexdata in r.crashes:
            print(f"  crash {exc}\n    input {hexdata}")
        failed |= bool(r.crashes)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
