"""protocols.dns_fast.FastPath.udp: the cached fast path answers what the dnslib path answers.

A cache hit is served with the asker's id and question (0x20 case kept) around records worked out for an
earlier asker, whose names may point into a question of other case: the same names, since DNS names
compare case-insensitively. So the comparison here is semantic: both replies parsed by dnslib, header and
question exact, every record equal up to letter case. Each query is asked in sequences (repeats, other
cases, other names nobody has under the same parent) so that the cache and the negative answers are used,
and bytes that lowercasing could merge (flags, EDNS size) vary between otherwise equal queries.
"""

from __future__ import annotations

import random
from ipaddress import IPv4Address, IPv4Network

from dnslib import EDNS0, DNSRecord
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocols.dns import Reply, ZoneSettings, answer, make_zone
from protocols.dns_fast import FastPath

IP = IPv4Address
SETTINGS = ZoneSettings(domain="cluster.local", hostname="imageserver", address=IP("10.99.0.1"), ttl=60,
                        reverse_networks=(IPv4Network("10.99.0.0/24"),))
HOSTS = [(f"node{i}", IP(f"10.99.0.{10 + i}")) for i in range(20)] + [
    ("n1.rack2", IP("10.99.0.77")),  # rack2.cluster.local: an empty non-terminal
    ("pub", IP("192.0.2.7")),  # its reverse name is a zone of its own
]
ZONE = make_zone(SETTINGS, HOSTS, serial=3)
NAMES = [
    "node3.cluster.local", "node17.cluster.local", "n1.rack2.cluster.local", "rack2.cluster.local",
    "imageserver.cluster.local", "hostmaster.cluster.local", "cluster.local", "pub.cluster.local",
    "13.0.99.10.in-addr.arpa", "77.0.99.10.in-addr.arpa", "7.2.0.192.in-addr.arpa", "0.99.10.in-addr.arpa",
    "www.example.org", "local", "x.pub.cluster.local",
]
PARENTS = ["cluster.local", "rack2.cluster.local", "0.99.10.in-addr.arpa", "n1.rack2.cluster.local", "example.org"]

label = st.text("abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=63)
name = st.one_of(st.sampled_from(NAMES), st.builds(lambda a, p: f"{a}.{p}", label, st.sampled_from(PARENTS)))
asked = st.tuples(
    name,
    st.integers(0, 2**64 - 1),  # letter case pattern
    st.sampled_from(["A", "AAAA", "PTR", "A", "MX"]),
    st.one_of(st.none(), st.sampled_from([512, 1232, 0x1041, 0x1061, 100, 4096])),  # EDNS size, None: no OPT
    st.sampled_from([0x00, 0x10, 0x41, 0x61, 0x5A, 0x7A]),  # the flags' second byte (AD, CD, Z, rcode bits)
    st.booleans(),  # RD
)


def cased(text: str, pattern: int) -> str:
    return "".join(c.upper() if pattern >> (i % 64) & 1 else c for i, c in enumerate(text))


def make_query(qid: int, spec: tuple[str, int, str, int | None, int, bool]) -> bytes:
    text, pattern, qtype, edns, flags2, rd = spec
    q = DNSRecord.question(cased(text, pattern), qtype)
    q.header.id = qid
    q.header.rd = rd
    if edns is not None:
        q.add_ar(EDNS0(udp_len=edns))
    raw = bytearray(q.pack())
    raw[3] = flags2
    return bytes(raw)


def same_meaning(got: bytes, want: bytes) -> None:
    g, w = DNSRecord.parse(got), DNSRecord.parse(want)
    assert got[:4] == want[:4], (got.hex(), want.hex())  # id and every flag
    assert (g.header.q, g.header.a, g.header.auth, g.header.ar) == (w.header.q, w.header.a, w.header.auth, w.header.ar)
    assert [(str(q.qname), q.qtype, q.qclass) for q in g.questions] == \
        [(str(q.qname), q.qtype, q.qclass) for q in w.questions]  # the question exactly as sent
    for section in ("rr", "auth", "ar"):
        assert [str(r).lower() for r in getattr(g, section)] == [str(r).lower() for r in getattr(w, section)]


def check(fast: FastPath, query: bytes, forwarding: bool) -> tuple[bytes, int, bool] | None:
    got = fast.udp(query, ZONE, forwarding)
    want = answer(query, ZONE, transport="udp", forwarding=forwarding)
    if got is not None:
        assert isinstance(want, Reply), (query.hex(), want)
        assert got[1] == want.rcode
        same_meaning(got[0], want.data)
    return got


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(asked, min_size=1, max_size=12), st.lists(st.integers(0, 2**64 - 1), max_size=3),
       st.booleans(), st.sampled_from([0, 1, 3, 10000]))
def test_cached_answers_mean_what_dnslib_answers(specs: list[tuple[str, int, str, int | None, int, bool]],
                                                 recases: list[int], forwarding: bool, cache_size: int) -> None:
    fast = FastPath(cache_size)
    rng = random.Random(len(specs))
    for spec in specs:
        for pattern in (spec[1], *recases):  # the same question again, in other letter case
            check(fast, make_query(rng.randrange(0x10000), (spec[0], pattern, *spec[2:])), forwarding)


def test_repeats_other_case_and_other_unknown_names_are_served_from_the_cache() -> None:
    fast = FastPath()
    rng = random.Random(1)
    for first, later in [("node3.cluster.local", "NoDe3.CLUSTER.local"),
                         ("13.0.99.10.in-addr.arpa", "13.0.99.10.IN-ADDR.arpa"),
                         ("nosuch.cluster.local", "NOSUCH.cluster.local"),
                         ("nosuch.cluster.local", "other1.cluster.local"),  # same parent, same first-label length
                         ("250.0.99.10.in-addr.arpa", "251.0.99.10.in-addr.arpa")]:
        for edns in (None, 1232):
            a = check(fast, make_query(rng.randrange(0x10000), (first, 0, "A", edns, 0, True)), False)
            b = check(fast, make_query(rng.randrange(0x10000), (later, 0, "A", edns, 0, True)), False)
            assert a is not None and b is not None and b[2], (first, later, edns)
    # A name the answer compresses against is not "any other name": it is worked out, and right.
    assert check(fast, make_query(7, ("nosuch.cluster.local", 0, "A", None, 0, True)), False) is not None
    got = check(fast, make_query(8, ("hostmaster.cluster.local", 0, "A", None, 0, True)), False)
    assert got is not None and not got[2]


def test_a_new_zone_or_forwarding_empties_the_cache() -> None:
    fast = FastPath()
    query = make_query(1, ("later.cluster.local", 0, "A", None, 0, True))
    got = fast.udp(query, ZONE, False)
    assert got is not None and got[1] == 3
    assert fast.udp(query, ZONE, False) == (got[0], 3, True)
    zone = make_zone(SETTINGS, [*HOSTS, ("later", IP("10.99.0.200"))], serial=4)
    after = fast.udp(query, zone, False)
    assert after is not None and after[1] == 0 and not after[2]
    forwarded = fast.udp(query, zone, True)
    assert forwarded is not None and not forwarded[2] and forwarded[0][3] & 0x80  # RA now set


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=80), st.integers(0, 2**32))
def test_any_bytes_never_raise_and_answers_match(junk: bytes, seed: int) -> None:
    fast = FastPath()
    rng = random.Random(seed)
    base = make_query(rng.randrange(0x10000), (rng.choice(NAMES), rng.getrandbits(64), "A", None, 0, True))
    check(fast, base, False)  # primes the cache and the negative answers
    check(fast, junk, False)
    for _ in range(5):
        mutated = bytearray(base)
        for _ in range(rng.randrange(1, 4)):
            mutated[rng.randrange(len(mutated))] = rng.randrange(256)
        check(fast, bytes(mutated), False)
        check(fast, bytes(mutated[:rng.randrange(len(mutated))]), False)
