"""protocols.dns_fast: the raw-bytes answers are byte for byte what the dnslib path answers, or not given at all.

Every generated query goes to both `FastPath.answer` and `protocols.dns.answer`; when the fast path
answers, its bytes and rcode must equal the dnslib path's. Each family of common shapes must also be
answered by the fast path (so the comparison is not vacuous), and every other shape must be left to dnslib.
"""

from __future__ import annotations

import random
import struct
from collections import Counter
from ipaddress import IPv4Address, IPv4Network

import pytest
from dnslib import EDNS0, DNSRecord, EDNSOption

from protocols.dns import Reply, Transport, Zone, ZoneSettings, answer, make_zone
from protocols.dns_fast import FastPath

IP = IPv4Address
TRANSPORTS: tuple[Transport, ...] = ("udp", "tcp")
SETTINGS = ZoneSettings(domain="cluster.local", hostname="imageserver", address=IP("10.99.0.1"), ttl=60,
                        reverse_networks=(IPv4Network("10.99.0.0/24"), IPv4Network("10.100.0.0/16")))
HOSTS = [(f"node{i}", IP(f"10.99.0.{10 + i}")) for i in range(40)] + [
    ("n1.rack2", IP("10.100.3.4")),  # rack2.cluster.local is an empty non-terminal
    ("alias.cluster.local.", IP("10.99.0.10")),  # a second name for .10: PTR stays node0
    ("pub", IP("192.0.2.7")),  # known, outside the reverse networks we own: its reverse name is its own zone
]
# A long domain, so that 0x20-cased long names make answers close to (and over) the 512 bytes of classic UDP.
LONG = ZoneSettings(domain=".".join(["d" * 60] * 3), hostname="ns", address=IP("10.1.0.1"), ttl=5,
                    reverse_networks=(IPv4Network("10.1.0.0/24"),))


@pytest.fixture(scope="module")
def zones() -> list[Zone]:
    return [make_zone(SETTINGS, HOSTS, serial=7), make_zone(LONG, [("x" * 60, IP("10.1.0.2"))], serial=1)]


def mixed_case(rng: random.Random, name: str) -> str:
    return "".join(c.upper() if rng.random() < 0.5 else c for c in name)


def query(name: str, qtype: str, *, rng: random.Random, edns: int | None = None,
          options: list[EDNSOption] | None = None, do: bool = False) -> bytes:
    q = DNSRecord.question(name, qtype)
    q.header.id = rng.randrange(0x10000)
    q.header.rd = rng.random() < 0.7
    q.header.cd = rng.random() < 0.2
    if edns is not None:
        q.add_ar(EDNS0(udp_len=edns, flags="do" if do else "", opts=options or []))
    return bytes(q.pack())


def both(fast: FastPath, data: bytes, zone: Zone, transport: Transport, forwarding: bool) -> Reply | None:
    """The fast answer (None if it declined) after checking it against the dnslib path."""
    got = fast.answer(data, zone, transport=transport, forwarding=forwarding)
    want = answer(data, zone, transport=transport, forwarding=forwarding)
    if got is not None:
        assert isinstance(want, Reply), (data.hex(), want)
        assert not want.truncated
        assert got.data == want.data, (data.hex(), got.data.hex(), want.data.hex())
        assert got.rcode == want.rcode
        DNSRecord.parse(got.data)  # and it reads back
    return got


def common_queries(zone: Zone, rng: random.Random) -> list[tuple[str, bytes]]:
    """(family, query) for the shapes the fast path is for, in many variants."""
    domain = b".".join(zone.domain).decode()
    known = [b".".join(labels).decode() for labels, node in zone.nodes.items() if 1 in node]
    ptrs = [b".".join(labels).decode() for labels, node in zone.nodes.items() if 12 in node]
    # A /24 reverse zone we own (where an unknown address is NXDOMAIN, not forwarded).
    net24 = next(b".".join(a).decode() for a in sorted(zone.apexes) if len(a) == 5 and a[-2:] == (b"in-addr", b"arpa"))
    out: list[tuple[str, bytes]] = []
    for _ in range(300):
        edns = rng.choice([None, None, 512, 1232, 4096, 65535, 100])
        opts = rng.choice([[], [], [EDNSOption(10, bytes(rng.randrange(256) for _ in range(8)))]])
        do = rng.random() < 0.3
        cased = rng.random() < 0.5

        def ask(n: str, qtype: str, cased: bool = cased, edns: int | None = edns,
                opts: list[EDNSOption] = opts, do: bool = do) -> bytes:
            return query(mixed_case(rng, n) if cased else n, qtype, rng=rng, edns=edns, options=opts, do=do)

        out.append(("known-a", ask(rng.choice(known), "A")))
        out.append(("known-aaaa", ask(rng.choice(known), "AAAA")))
        out.append(("ptr", ask(rng.choice(ptrs), "PTR")))
        out.append(("unknown", ask(f"miss{rng.randrange(10**6)}.{domain}", rng.choice(["A", "AAAA", "PTR"]))))
        out.append(("unknown-ptr", ask(f"{rng.randrange(100, 255)}.{net24}", "PTR")))
        out.append(("apex", ask(domain, rng.choice(["A", "AAAA"]))))
    return out


def other_queries(zone: Zone, rng: random.Random) -> list[bytes]:
    """Shapes the fast path must leave to dnslib (its answer, whatever it is, is the dnslib one)."""
    domain = b".".join(zone.domain).decode()
    known = f"node1.{domain}"
    out = [query(known, t, rng=rng) for t in ("NS", "SOA", "ANY", "MX", "TXT")]
    out.append(query(domain, "NS", rng=rng))
    out.append(query("www.example.org", "A", rng=rng))  # not ours: forwarded or refused
    q = DNSRecord.question(known, "A", "CH")
    out.append(bytes(q.pack()))
    for version in (1, 255):  # BADVERS
        r = DNSRecord.question(known)
        r.add_ar(EDNS0(version=version))
        out.append(bytes(r.pack()))
    base = query(known, "A", rng=rng)
    out.append(base[:2] + bytes([base[2] | 0x08]) + base[3:])  # opcode IQUERY
    out.append(base[:4] + b"\x00\x02" + base[6:])  # QDCOUNT 2
    out.append(base[:6] + b"\x00\x01" + base[8:])  # ANCOUNT 1
    out.append(base[:8] + b"\x00\x01" + base[10:])  # NSCOUNT 1
    out.append(base + b"\x00")  # a trailing byte
    two = DNSRecord.question(known)
    two.add_ar(EDNS0())
    two.add_ar(EDNS0())
    out.append(bytes(two.pack()))  # two OPT records: FORMERR
    # A compression pointer in the question name (to itself: dnslib refuses; to the header: garbage).
    out.append(base[:12] + b"\xc0\x0c" + base[-4:])
    # A non-ASCII label, and one that is not UTF-8.
    out.append(base[:12] + b"\x02\xc3\xa9" + base[12:])
    out.append(base[:12] + b"\x01\xff" + base[12:])
    # A label length over 63 (the 0x40/0x80 pointer flavours).
    out.append(base[:12] + b"\x40" + b"a" * 64 + base[12:])
    # An OPT whose options overrun it, and an OPT with a non-root owner.
    ok = DNSRecord.question(known)
    ok.add_ar(EDNS0(opts=[EDNSOption(10, b"12345678")]))
    raw = bytes(ok.pack())
    out.append(raw[:-10] + struct.pack("!HH", 10, 20) + raw[-6:])
    out.append(raw[:-23] + b"\x01a" + raw[-22:])
    # A name over 255 bytes on the wire.
    out.append(base[:12] + (b"\x3f" + b"a" * 63) * 4 + b"\x00" + base[-4:])
    return out


def test_fast_answers_equal_dnslib_answers(zones: list[Zone]) -> None:
    rng = random.Random(27)
    fast = FastPath()
    answered: Counter[str] = Counter()
    asked: Counter[str] = Counter()
    for zone in zones:
        for family, data in common_queries(zone, rng):
            for transport in TRANSPORTS:
                forwarding = rng.random() < 0.5
                asked[family] += 1
                if both(fast, data, zone, transport, forwarding) is not None:
                    answered[family] += 1
    # The whole point: the common shapes go the fast way (a long 0x20 name under the long domain may be
    # over 512 bytes, so a few are declined for truncation and taken by dnslib).
    for family in asked:
        assert answered[family] >= 0.9 * asked[family], (family, answered[family], asked[family])
    assert answered.total() == fast.answered


def test_other_shapes_are_left_to_dnslib(zones: list[Zone]) -> None:
    rng = random.Random(5)
    fast = FastPath()
    for zone in zones:
        for data in other_queries(zone, rng):
            for transport in TRANSPORTS:
                for forwarding in (False, True):
                    assert both(fast, data, zone, transport, forwarding) is None, data.hex()


def test_truncated_and_mutated_queries(zones: list[Zone]) -> None:
    """Every prefix of a common query, and random byte flips of it: equal to dnslib whenever answered."""
    rng = random.Random(99)
    fast = FastPath()
    answered = 0
    for zone in zones:
        for _family, data in common_queries(zone, rng)[:120]:
            for cut in range(len(data)):
                assert both(fast, data[:cut], zone, "udp", False) is None
            for _ in range(20):
                mutated = bytearray(data)
                for _ in range(rng.randrange(1, 4)):
                    mutated[rng.randrange(len(mutated))] = rng.randrange(256)
                answered += both(fast, bytes(mutated), zone, "udp", rng.random() < 0.5) is not None
    assert answered > 0  # some mutations (id, flags, case) keep a common shape


def test_case_of_the_question_is_kept(zones: list[Zone]) -> None:
    zone = zones[0]
    data = DNSRecord.question("NoDe3.CLUSTER.local", "A").pack()
    got = FastPath().answer(data, zone)
    assert got is not None
    reply = DNSRecord.parse(got.data)
    assert str(reply.q.qname) == "NoDe3.CLUSTER.local."
    assert [str(rr.rdata) for rr in reply.rr] == ["10.99.0.13"]


def test_new_zone_object_is_indexed_anew() -> None:
    fast = FastPath()
    data = DNSRecord.question("later.cluster.local").pack()
    before = fast.answer(data, make_zone(SETTINGS, HOSTS, serial=1))
    after = fast.answer(data, make_zone(SETTINGS, [*HOSTS, ("later", IP("10.99.0.200"))], serial=2))
    assert before is not None and before.rcode == 3
    assert after is not None and after.rcode == 0


def test_memoized_tails_follow_the_whole_question_name() -> None:
    """The appliance's own name is compressed into the SOA of a NODATA for it; another known name of the same
    length and parent gets the same SOA written out: the memo must tell the two apart, in either order."""
    rng = random.Random(3)
    own, other = "imageserver.cluster.local", "abcdefghijk.cluster.local"
    zone = make_zone(SETTINGS, [*HOSTS, ("abcdefghijk", IP("10.99.0.250"))], serial=8)
    for order in ((own, other), (other, own)):
        fast = FastPath()
        for name in order * 2:
            assert both(fast, query(name, "AAAA", rng=rng), zone, "udp", False) is not None
