"""protocols.dns: every answer the imageserver's DNS gives, decided from bytes alone."""

from __future__ import annotations

import os
import struct
from ipaddress import IPv4Address, IPv4Network
from types import MappingProxyType

import pytest
from dnslib import CLASS, EDNS0, QTYPE, RCODE, RR, A, DNSLabel, DNSQuestion, DNSRecord
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocols.dns import (
    BADVERS,
    OUR_UDP_SIZE,
    DnsError,
    Drop,
    Forward,
    Reply,
    Zone,
    ZoneSettings,
    answer,
    cache_key,
    cacheable,
    make_zone,
    reply_from_cache,
    upstream_reply,
    with_id,
)

IP = IPv4Address
SETTINGS = ZoneSettings(domain="cluster.local", hostname="imageserver", address=IP("10.99.0.1"), ttl=60,
                        reverse_networks=(IPv4Network("10.99.0.0/24"),))
NAMES = [
    ("www2", IP("10.99.0.12")),
    ("node1.rack2", IP("10.99.0.13")),
    ("WWW2", IP("10.99.0.99")),  # taken already (case-insensitively): skipped
    ("alias.cluster.local.", IP("10.99.0.12")),  # a second name for .12: A yes, PTR stays www2
    ("bad name", IP("10.99.0.50")),
    ("outside.example.org.", IP("10.99.0.51")),
    ("imageserver", IP("10.99.0.77")),  # cannot take the appliance's own name
    ("pub", IP("192.0.2.7")),  # known, outside every reverse network we own
]


@pytest.fixture(scope="module")
def zone() -> Zone:
    return make_zone(SETTINGS, NAMES, serial=42)


def ask(zone: Zone, name: str, qtype: str = "A", *, transport: str = "udp", forwarding: bool = False,
        edns: int | None = None, rd: bool = True) -> DNSRecord:
    q = DNSRecord.question(name, qtype)
    q.header.rd = int(rd)
    if edns is not None:
        q.add_ar(EDNS0(udp_len=edns))
    d = answer(q.pack(), zone, transport=transport, forwarding=forwarding)  # type: ignore[arg-type]
    assert isinstance(d, Reply), d
    r = DNSRecord.parse(d.data)
    assert r.header.id == q.header.id and r.header.qr == 1
    return r


def answers(r: DNSRecord) -> list[str]:
    return [str(rr.rdata) for rr in r.rr]


# --- the zone -------------------------------------------------------------------------------------

def test_make_zone_first_claim_wins_and_bad_names_are_skipped(zone: Zone) -> None:
    assert set(zone.skipped) == {"WWW2", "bad name", "outside.example.org.", "imageserver"}
    assert zone.names == 5  # imageserver, www2, node1.rack2, alias, pub
    assert zone.serial == 42


def test_a_record_is_authoritative_with_the_zone_ttl(zone: Zone) -> None:
    r = ask(zone, "www2.cluster.local")
    assert r.header.rcode == RCODE.NOERROR and r.header.aa == 1
    assert answers(r) == ["10.99.0.12"] and r.rr[0].ttl == 60


def test_names_are_case_insensitive_and_the_question_is_echoed_as_sent(zone: Zone) -> None:
    r = ask(zone, "WwW2.CLUSTER.local")
    assert answers(r) == ["10.99.0.12"]
    assert str(r.q.qname) == "WwW2.CLUSTER.local."


def test_the_appliance_resolves_to_its_own_address(zone: Zone) -> None:
    assert answers(ask(zone, "imageserver.cluster.local")) == ["10.99.0.1"]


def test_multi_label_names_and_their_empty_parents(zone: Zone) -> None:
    assert answers(ask(zone, "node1.rack2.cluster.local")) == ["10.99.0.13"]
    r = ask(zone, "rack2.cluster.local")  # an empty non-terminal: NODATA, not NXDOMAIN (RFC 8020)
    assert r.header.rcode == RCODE.NOERROR and not r.rr
    assert [QTYPE[rr.rtype] for rr in r.auth] == ["SOA"]


def test_ptr_for_a_known_address_names_its_first_claimant(zone: Zone) -> None:
    r = ask(zone, "12.0.99.10.in-addr.arpa", "PTR")
    assert r.header.aa == 1 and answers(r) == ["www2.cluster.local."]


def test_ptr_for_a_known_address_outside_the_reverse_networks(zone: Zone) -> None:
    assert answers(ask(zone, "7.2.0.192.in-addr.arpa", "PTR")) == ["pub.cluster.local."]
    r = ask(zone, "7.2.0.192.in-addr.arpa", "A")
    assert r.header.rcode == RCODE.NOERROR and not r.rr and r.auth[0].rtype == QTYPE.SOA


def test_unknown_address_in_an_owned_network_is_nxdomain_with_the_reverse_soa(zone: Zone) -> None:
    r = ask(zone, "200.0.99.10.in-addr.arpa", "PTR", forwarding=True)
    assert r.header.rcode == RCODE.NXDOMAIN and r.header.aa == 1
    assert str(r.auth[0].rname) == "0.99.10.in-addr.arpa." and r.auth[0].rtype == QTYPE.SOA


def test_reverse_names_outside_what_we_own_are_not_ours(zone: Zone) -> None:
    assert ask(zone, "8.8.8.8.in-addr.arpa", "PTR").header.rcode == RCODE.REFUSED
    q = DNSRecord.question("8.8.8.8.in-addr.arpa", "PTR")
    assert isinstance(answer(q.pack(), zone, forwarding=True), Forward)


def test_soa_and_ns_at_the_apex_with_glue(zone: Zone) -> None:
    soa = ask(zone, "cluster.local", "SOA")
    assert soa.header.aa == 1 and soa.rr[0].rtype == QTYPE.SOA
    assert str(soa.rr[0].rdata.mname) == "imageserver.cluster.local." and soa.rr[0].rdata.times[0] == 42
    ns = ask(zone, "Cluster.Local", "NS")
    assert answers(ns) == ["imageserver.cluster.local."]
    assert [(str(rr.rname), str(rr.rdata)) for rr in ns.ar] == [("imageserver.cluster.local.", "10.99.0.1")]


def test_unknown_name_in_the_domain_is_nxdomain_with_soa(zone: Zone) -> None:
    r = ask(zone, "nosuch.cluster.local", forwarding=True)  # never forwarded: the domain is ours
    assert r.header.rcode == RCODE.NXDOMAIN and r.header.aa == 1 and not r.rr
    assert r.auth[0].rtype == QTYPE.SOA and str(r.auth[0].rname) == "cluster.local."
    assert r.auth[0].rdata.times[-1] == 60  # negative caching for the zone ttl


def test_other_types_of_a_known_name_are_nodata(zone: Zone) -> None:
    for qtype in ("AAAA", "MX", "TXT"):
        r = ask(zone, "www2.cluster.local", qtype)
        assert r.header.rcode == RCODE.NOERROR and not r.rr and r.auth[0].rtype == QTYPE.SOA


def test_any_returns_what_the_name_has(zone: Zone) -> None:
    assert answers(ask(zone, "www2.cluster.local", "ANY")) == ["10.99.0.12"]


def test_outside_names_are_refused_without_an_upstream(zone: Zone) -> None:
    r = ask(zone, "example.com")
    assert r.header.rcode == RCODE.REFUSED and r.header.ra == 0 and r.header.aa == 0


def test_outside_names_are_forwarded_when_an_upstream_exists(zone: Zone) -> None:
    q = DNSRecord.question("Example.COM", "AAAA")
    d = answer(q.pack(), zone, forwarding=True)
    assert isinstance(d, Forward)
    assert d.query == q.pack() and d.id == q.header.id
    assert d.qname == (b"example", b"com") and d.qtype == QTYPE.AAAA and d.limit == 512
    sf = DNSRecord.parse(d.servfail)
    assert sf.header.rcode == RCODE.SERVFAIL and sf.header.id == q.header.id and str(sf.q.qname) == "Example.COM."


def test_no_recursion_asked_means_no_forwarding(zone: Zone) -> None:
    r = ask(zone, "example.com", forwarding=True, rd=False)
    assert r.header.rcode == RCODE.REFUSED and r.header.rd == 0
    assert r.header.ra == 1  # we do offer recursion; this client did not want it


def test_ra_is_set_on_our_answers_when_forwarding(zone: Zone) -> None:
    assert ask(zone, "www2.cluster.local", forwarding=True).header.ra == 1
    assert ask(zone, "www2.cluster.local", forwarding=False).header.ra == 0


def test_non_internet_classes_in_our_zone_are_refused(zone: Zone) -> None:
    q = DNSRecord(q=DNSQuestion("www2.cluster.local", QTYPE.A, CLASS.CH))
    d = answer(q.pack(), zone)
    assert isinstance(d, Reply) and DNSRecord.parse(d.data).header.rcode == RCODE.REFUSED


# --- EDNS and truncation ------------------------------------------------------------------------

def big_zone(count: int = 100) -> Zone:
    """A hand-built zone with a round-robin name (`count` addresses): the only way to exceed 512 bytes here."""
    base = make_zone(SETTINGS, [], serial=1)
    nodes = dict(base.nodes)
    rr = (b"rr", b"cluster", b"local")
    nodes[rr] = MappingProxyType({QTYPE.A: tuple(A(f"10.99.1.{i}") for i in range(count))})
    return Zone(domain=base.domain, ns_name=base.ns_name, apexes=base.apexes, nodes=MappingProxyType(nodes),
                nonterminals=base.nonterminals, ttl=60, serial=1, names=1)


def test_edns_query_gets_an_opt_record_back(zone: Zone) -> None:
    r = ask(zone, "www2.cluster.local", edns=4096)
    opts = [rr for rr in r.ar if rr.rtype == QTYPE.OPT]
    assert len(opts) == 1 and opts[0].rclass == OUR_UDP_SIZE and opts[0].ttl == 0


def test_no_opt_in_the_reply_without_edns_in_the_query(zone: Zone) -> None:
    assert not ask(zone, "www2.cluster.local").ar


def test_big_answer_is_truncated_at_512_without_edns() -> None:
    q = DNSRecord.question("rr.cluster.local")
    d = answer(q.pack(), big_zone())
    assert isinstance(d, Reply) and d.truncated and len(d.data) <= 512
    r = DNSRecord.parse(d.data)
    assert r.header.tc == 1 and not r.rr and str(r.q.qname) == "rr.cluster.local."


def test_truncation_honours_the_clients_edns_size_and_keeps_opt() -> None:
    z = big_zone()
    small = DNSRecord.question("rr.cluster.local")
    small.add_ar(EDNS0(udp_len=1200))
    d = answer(small.pack(), z)
    assert isinstance(d, Reply) and d.truncated and len(d.data) <= 1200
    r = DNSRecord.parse(d.data)
    assert r.header.tc and [rr.rtype for rr in r.ar] == [QTYPE.OPT]
    big = DNSRecord.question("rr.cluster.local")
    big.add_ar(EDNS0(udp_len=4096))
    d = answer(big.pack(), z)
    assert isinstance(d, Reply) and not d.truncated and len(DNSRecord.parse(d.data).rr) == 100


def test_edns_sizes_below_512_count_as_512() -> None:
    q = DNSRecord.question("rr.cluster.local")
    q.add_ar(EDNS0(udp_len=100))
    d = answer(q.pack(), big_zone(count=20))
    assert isinstance(d, Reply) and not d.truncated and 100 < len(d.data) <= 512


def test_tcp_is_never_truncated() -> None:
    d = answer(DNSRecord.question("rr.cluster.local").pack(), big_zone(), transport="tcp")
    assert isinstance(d, Reply) and not d.truncated and len(DNSRecord.parse(d.data).rr) == 100


def test_edns_version_1_is_badvers(zone: Zone) -> None:
    q = DNSRecord.question("www2.cluster.local")
    q.add_ar(EDNS0(udp_len=4096, version=1))
    d = answer(q.pack(), zone)
    assert isinstance(d, Reply) and d.rcode == BADVERS
    r = DNSRecord.parse(d.data)
    opt = next(rr for rr in r.ar if rr.rtype == QTYPE.OPT)
    assert r.header.rcode == 0 and (opt.ttl >> 24) == 1 and not r.rr  # 16 = 1 << 4 in the OPT's upper bits


def test_two_opt_records_are_formerr(zone: Zone) -> None:
    q = DNSRecord.question("www2.cluster.local")
    q.add_ar(EDNS0(udp_len=4096))
    q.add_ar(EDNS0(udp_len=4096))
    d = answer(q.pack(), zone)
    assert isinstance(d, Reply) and DNSRecord.parse(d.data).header.rcode == RCODE.FORMERR


# --- malformed input --------------------------------------------------------------------------------

def test_short_packets_and_responses_are_dropped(zone: Zone) -> None:
    assert isinstance(answer(b"", zone), Drop)
    assert isinstance(answer(b"\x12\x34\x01\x00\x00\x01", zone), Drop)
    resp = DNSRecord.question("www2.cluster.local").reply().pack()
    assert isinstance(answer(resp, zone), Drop)


def test_unparseable_body_with_a_readable_header_is_formerr(zone: Zone) -> None:
    q = DNSRecord.question("www2.cluster.local").pack()
    bad = q[:12] + b"\x3f" + b"a" * 5  # a 63-byte label with 5 bytes present
    d = answer(bad, zone)
    assert isinstance(d, Reply) and d.rcode == RCODE.FORMERR
    r = DNSRecord.parse(d.data)
    assert r.header.id == struct.unpack("!H", q[:2])[0] and r.header.qr and r.header.rd and not r.questions


def test_compression_loop_is_formerr(zone: Zone) -> None:
    header = struct.pack("!HHHHHH", 0xBEEF, 0x0100, 1, 0, 0, 0)
    for body in (b"\xc0\x0c", b"\x01a\xc0\x0c", b"\xc0\x0e\xc0\x0c"):
        d = answer(header + body + b"\x00\x01\x00\x01", zone)
        assert isinstance(d, Reply) and d.rcode == RCODE.FORMERR, body


def test_question_counts_other_than_one_are_formerr(zone: Zone) -> None:
    none = DNSRecord()
    two = DNSRecord(questions=[DNSQuestion("a.cluster.local"), DNSQuestion("b.cluster.local")])
    for msg in (none, two):
        d = answer(msg.pack(), zone)
        assert isinstance(d, Reply) and DNSRecord.parse(d.data).header.rcode == RCODE.FORMERR


def test_other_opcodes_are_notimp(zone: Zone) -> None:
    q = DNSRecord.question("www2.cluster.local")
    q.header.opcode = 4  # NOTIFY
    d = answer(q.pack(), zone)
    assert isinstance(d, Reply) and d.rcode == RCODE.NOTIMP
    assert DNSRecord.parse(d.data).header.opcode == 4


# --- the answer cache's keys ---------------------------------------------------------------------

def _normalised(data: bytes) -> tuple[str, str, list[str]]:
    r = DNSRecord.parse(data)
    rrs = [str(rr).lower() for rr in (*r.rr, *r.auth, *r.ar)]
    return str(r.header), str(r.q.qname), rrs


@pytest.mark.parametrize("name,qtype,edns", [
    ("www2.cluster.local", "A", None), ("nosuch.cluster.local", "A", 1232), ("www2.cluster.local", "AAAA", None),
    ("12.0.99.10.in-addr.arpa", "PTR", 4096), ("cluster.local", "NS", None), ("example.com", "A", None),
])
def test_a_cached_reply_serves_another_letter_case_and_id(zone: Zone, name: str, qtype: str,
                                                          edns: int | None) -> None:
    first = DNSRecord.question(name, qtype)
    second = DNSRecord.question("".join(c.upper() if i % 2 else c for i, c in enumerate(name)), qtype)
    for q in (first, second):
        if edns:
            q.add_ar(EDNS0(udp_len=edns))
    q1, q2 = first.pack(), second.pack()
    k1, k2 = cache_key(q1, "udp"), cache_key(q2, "udp")
    assert k1 is not None and k2 is not None and k1 == k2 and q1 != q2
    r1 = answer(q1, zone)
    assert isinstance(r1, Reply) and cacheable(q1, k1[1], r1.data)
    fresh = answer(q2, zone)
    assert isinstance(fresh, Reply)
    served = reply_from_cache(q2, k2[1], r1.data)
    assert served[:2] == q2[:2]
    assert _normalised(served) == _normalised(fresh.data)
    assert str(DNSRecord.parse(served).q.qname) == str(second.q.qname)  # the asker's case, exactly


def test_cache_keys_keep_transport_type_and_flags_apart() -> None:
    a = DNSRecord.question("www2.cluster.local", "A")
    key = cache_key(a.pack(), "udp")
    assert key is not None and key != cache_key(a.pack(), "tcp")
    https = DNSRecord(q=DNSQuestion("www2.cluster.local", 65))  # type 0x0041: 'A' as a byte
    other = DNSRecord(q=DNSQuestion("www2.cluster.local", 97))  # type 0x0061: 'a' as a byte
    https.header.id = other.header.id = 1
    assert cache_key(https.pack(), "udp") != cache_key(other.pack(), "udp")
    norec = DNSRecord.question("www2.cluster.local")
    norec.header.rd = 0
    assert cache_key(norec.pack(), "udp")[0][1:] != key[0][1:]  # type: ignore[index]
    header = struct.pack("!HHHHHH", 1, 0x0100, 1, 0, 0, 0)
    assert cache_key(header + b"\xc0\x0c\x00\x01\x00\x01", "udp") is None  # a pointer: the long way
    assert cache_key(header + b"\x05ab", "udp") is None  # runs off the end


# --- forwarding helpers -------------------------------------------------------------------------

def forwarded(zone: Zone, name: str = "example.com", edns: int | None = None) -> Forward:
    q = DNSRecord.question(name)
    if edns:
        q.add_ar(EDNS0(udp_len=edns))
    d = answer(q.pack(), zone, forwarding=True)
    assert isinstance(d, Forward)
    return d


def upstream_answer(fwd: Forward, sent_id: int, qname: str = "example.com", count: int = 1) -> bytes:
    r = DNSRecord.parse(with_id(fwd.query, sent_id)).reply()
    r.q.qname = DNSLabel(qname)
    for i in range(count):
        r.add_answer(RR(qname, QTYPE.A, rdata=A(f"192.0.2.{i % 250}"), ttl=30))
    return r.pack()


def test_upstream_reply_is_returned_under_the_clients_id(zone: Zone) -> None:
    fwd = forwarded(zone)
    out = upstream_reply(upstream_answer(fwd, 777, qname="EXAMPLE.com"), fwd, 777)
    r = DNSRecord.parse(out)
    assert r.header.id == fwd.id and [str(rr.rdata) for rr in r.rr] == ["192.0.2.0"]


def test_upstream_replies_that_do_not_match_raise_dnserror(zone: Zone) -> None:
    fwd = forwarded(zone)
    good = upstream_answer(fwd, 777)
    bad = [
        upstream_answer(fwd, 778),  # another id
        upstream_answer(fwd, 777, qname="example.net"),  # another question
        with_id(fwd.query, 777),  # not a response
        b"\x03\x09garbage",
    ]
    upstream_reply(good, fwd, 777)
    for data in bad:
        with pytest.raises(DnsError):
            upstream_reply(data, fwd, 777)


def test_upstream_reply_bigger_than_the_client_can_take_is_truncated(zone: Zone) -> None:
    fwd = forwarded(zone)  # no EDNS: 512 bytes
    out = upstream_reply(upstream_answer(fwd, 9, count=60), fwd, 9)
    r = DNSRecord.parse(out)
    assert len(out) <= 512 and r.header.tc and not r.rr and r.header.id == fwd.id


# --- fuzz: the answer function never raises and every reply is a well-formed answer --------------

SEEDS = [
    DNSRecord.question("www2.cluster.local").pack(),
    DNSRecord.question("12.0.99.10.in-addr.arpa", "PTR").pack(),
    DNSRecord.question("cluster.local", "SOA").pack(),
    DNSRecord.question("example.com", "AAAA").pack(),
]
_edns = DNSRecord.question("node1.rack2.cluster.local", "ANY")
_edns.add_ar(EDNS0(udp_len=1400, flags="do"))
SEEDS.append(_edns.pack())

LONG = os.environ.get("IMAGESERVER_FUZZ_LONG") == "1"


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(0, 4))):
        kind = draw(st.sampled_from(["flip", "byte", "cut", "insert", "pointer"]))
        if not data:
            break
        i = draw(st.integers(0, len(data) - 1))
        if kind == "flip":
            data[i] ^= 1 << draw(st.integers(0, 7))
        elif kind == "byte":
            data[i] = draw(st.integers(0, 255))
        elif kind == "cut":
            del data[i:]
        elif kind == "insert":
            data[i:i] = draw(st.binary(min_size=1, max_size=8))
        else:  # a compression pointer somewhere, often pointing at itself or forward
            data[i:i + 2] = struct.pack("!H", 0xC000 | draw(st.integers(0, len(data) + 4)))
    return bytes(data)


def check_decision(query: bytes, transport: str) -> None:
    z = make_zone(SETTINGS, NAMES, serial=1)
    d = answer(query, z, transport=transport, forwarding=True)  # type: ignore[arg-type]
    if isinstance(d, Drop):
        assert len(query) < 12 or query[2] & 0x80
        return
    if isinstance(d, Forward):
        assert d.query == query
        return
    assert isinstance(d, Reply)
    r = DNSRecord.parse(d.data)
    assert r.header.id == struct.unpack("!H", query[:2])[0] and r.header.qr == 1
    if transport == "udp":
        assert len(d.data) <= 4096


@settings(max_examples=20000 if LONG else 300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(query=mutated(), transport=st.sampled_from(["udp", "tcp"]))
def test_fuzz_mutated_queries(query: bytes, transport: str) -> None:
    check_decision(query, transport)


@settings(max_examples=20000 if LONG else 200, deadline=None)
@given(query=st.binary(min_size=0, max_size=300))
def test_fuzz_random_bytes(query: bytes) -> None:
    check_decision(query, "udp")


@settings(max_examples=20000 if LONG else 300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(query=mutated(), flips=st.lists(st.integers(0, 300), max_size=8), transport=st.sampled_from(["udp", "tcp"]))
def test_fuzz_cached_replies_equal_fresh_ones(query: bytes, flips: list[int], transport: str) -> None:
    z = make_zone(SETTINGS, NAMES, serial=1)
    keyed = cache_key(query, transport)  # type: ignore[arg-type]
    first = answer(query, z, transport=transport)  # type: ignore[arg-type]
    if keyed is None or not isinstance(first, Reply) or not cacheable(query, keyed[1], first.data):
        return
    end = keyed[1]
    other = bytearray(query)
    other[0] ^= 0x5A  # another id
    for f in flips:  # swap the case of some letters of the question name
        i = 12 + f % (end - 12)
        if 0x41 <= other[i] <= 0x5A or 0x61 <= other[i] <= 0x7A:  # ASCII letters only, as DNS does
            other[i] ^= 0x20
    again = cache_key(bytes(other), transport)  # type: ignore[arg-type]
    assert again is not None and again[0] == keyed[0]
    fresh = answer(bytes(other), z, transport=transport)  # type: ignore[arg-type]
    assert isinstance(fresh, Reply) and fresh.rcode == first.rcode
    assert cacheable(bytes(other), end, fresh.data)
    served = reply_from_cache(bytes(other), end, first.data)
    assert served[:2] == bytes(other[:2]) and _normalised(served) == _normalised(fresh.data)


def test_a_spliced_overlong_label_is_formerr_not_a_crash(zone: Zone) -> None:
    """Found by the mutation campaign (tests/fuzz): compression pointers make one 180-byte label."""
    query = bytes.fromhex(
        "1d500100000100000000000007636c757374656c7573746572056c00000000000007636c757374656c7573746572056c6f63"
        "616c00001074656c7573746572056c00000000000007636c757374656c757374636c757374656c7573746572056c6f63616c"
        "00001074656c7573746572056c00000000000007636c757374656c7573746572056c6f63616c0000100001")
    for transport in ("udp", "tcp"):
        decision = answer(query, zone, transport=transport, forwarding=True)
        assert isinstance(decision, Reply) and decision.rcode == RCODE.FORMERR
