"""DNS for the imageserver's own names: query bytes in, a decision out (sans-IO; dnslib is the codec).

`answer(query, zone, ...)` is the whole server logic. It is authoritative for the appliance domain
(A, SOA and NS at the apex, NXDOMAIN or NODATA with the SOA in authority) and for the reverse names
(PTR) of the addresses it knows or of the networks it is told about; any other name is either handed
back as `Forward` (the service relays it to an upstream resolver) or REFUSED. Malformed input becomes
FORMERR when the header can be read, else `Drop`. Nothing here raises on input bytes: the only
exception type is `DnsError`, raised by `upstream_reply` for a reply that does not answer what was
forwarded.

Names are compared as tuples of lowercased label bytes, never as dotted strings: a label may itself
contain a dot byte, and DNS case-insensitivity is ASCII-only (which is what bytes.lower() does).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network
from types import MappingProxyType
from typing import Literal

from dnslib import EDNS0, NS, PTR, RCODE, RD, RR, SOA, A, DNSHeader, DNSLabel, DNSQuestion, DNSRecord

Labels = tuple[bytes, ...]
Transport = Literal["udp", "tcp"]

# What we advertise in our OPT record: the DNS flag day 2020 size, safe from IP fragmentation.
OUR_UDP_SIZE = 1232
# The most we send over UDP whatever the client says it can take.
MAX_UDP_SIZE = 4096
CLASSIC_UDP_SIZE = 512
TCP_MAX = 65535

# Numeric codes (dnslib's Bimap attribute lookups are slow and some names are not attributes there).
T_A, T_NS, T_SOA, T_PTR, T_AAAA, T_OPT, T_ANY = 1, 2, 6, 12, 28, 41, 255
C_IN, C_ANY = 1, 255
BADVERS = 16  # extended rcode (RFC 6891): upper 8 bits travel in the OPT record
OPCODE_QUERY = 0
_IN_ADDR_ARPA: Labels = (b"in-addr", b"arpa")
_HOSTNAME_CHARS = frozenset(b"abcdefghijklmnopqrstuvwxyz0123456789-_")
# SOA timers for secondaries we do not have; the negative-caching minimum is the zone ttl.
_SOA_REFRESH, _SOA_RETRY, _SOA_EXPIRE = 3600, 600, 86400


class DnsError(ValueError):
    """A message that cannot be used for what it was meant for (an upstream reply that answers nothing we asked)."""


# --- the zone: an immutable snapshot of every name we are authoritative for ---------------------

@dataclass(frozen=True, slots=True)
class ZoneSettings:
    """What the configuration says about the zone (the names themselves come from state)."""

    domain: str = "cluster.local"
    hostname: str = "imageserver"
    address: IPv4Address | None = None
    ttl: int = 60
    # Networks whose reverse zones we own (the provisioning subnets): unknown addresses there are NXDOMAIN
    # instead of being forwarded to an upstream that cannot know them.
    reverse_networks: tuple[IPv4Network, ...] = ()


@dataclass(frozen=True, slots=True)
class Zone:
    """Every record we serve, indexed by owner name; built by `make_zone`, never changed afterwards."""

    domain: Labels
    ns_name: Labels
    apexes: frozenset[Labels]
    nodes: Mapping[Labels, Mapping[int, tuple[RD, ...]]]
    # Names that own no records but have descendants that do (RFC 8020: these are NODATA, not NXDOMAIN).
    nonterminals: frozenset[Labels]
    ttl: int
    serial: int
    names: int = 0  # how many forward names (A records) the zone holds
    skipped: tuple[str, ...] = field(default=())  # names left out (invalid, outside the domain, or taken)


def _labels(name: str) -> Labels | None:
    """'Www2.Cluster.Local.' -> (b'www2', b'cluster', b'local'); None if it is not a usable host name."""
    text = name.strip().rstrip(".").lower()
    if not text or len(text) > 253:
        return None
    try:
        raw = text.encode("ascii")
    except UnicodeEncodeError:
        return None
    parts = tuple(raw.split(b"."))
    if any(not p or len(p) > 63 or not set(p) <= _HOSTNAME_CHARS for p in parts):
        return None
    return parts


def _reverse_labels(address: IPv4Address) -> Labels:
    return (*(str(b).encode() for b in reversed(address.packed)), *_IN_ADDR_ARPA)


def _reverse_apex(network: IPv4Network) -> Labels | None:
    # Reverse zones are cut at octet boundaries; a /20 is served as its enclosing /16.
    octets = network.prefixlen // 8
    if octets == 0:
        return None
    return (*(str(b).encode() for b in reversed(network.network_address.packed[:octets])), *_IN_ADDR_ARPA)


def make_zone(settings: ZoneSettings, names: Iterable[tuple[str, IPv4Address]], serial: int) -> Zone:
    """Build the zone from (name, address) pairs given in priority order: the first claim of a name wins,
    and the first name claiming an address is the one its PTR record points to.

    A name without dots, or one that is relative, is placed in the domain; an absolute name outside the
    domain is skipped (we are not authoritative for it). The appliance's own name always comes first.
    """
    domain = _labels(settings.domain) or (b"local",)
    ns_name: Labels = (*(_labels(settings.hostname) or (b"imageserver",))[:1], *domain)
    ttl = max(0, settings.ttl)

    def soa_for(apex: Labels) -> RD:
        return SOA(DNSLabel(ns_name), DNSLabel((b"hostmaster", *domain)),
                   (serial & 0xFFFFFFFF, _SOA_REFRESH, _SOA_RETRY, _SOA_EXPIRE, ttl))

    nodes: dict[Labels, dict[int, tuple[RD, ...]]] = {}
    apexes: set[Labels] = {domain}
    nodes[domain] = {T_SOA: (soa_for(domain),), T_NS: (NS(DNSLabel(ns_name)),)}
    for net in settings.reverse_networks:
        apex = _reverse_apex(net)
        if apex is not None and apex not in apexes:
            apexes.add(apex)
            nodes[apex] = {T_SOA: (soa_for(apex),), T_NS: (NS(DNSLabel(ns_name)),)}

    claimed: dict[Labels, IPv4Address] = {}
    reverse: dict[IPv4Address, Labels] = {}
    skipped: list[str] = []
    pairs: list[tuple[str, IPv4Address]] = []
    if settings.address is not None:
        pairs.append((b".".join(ns_name).decode(), settings.address))
    pairs.extend(names)
    for name, address in pairs:
        labels = _labels(name)
        if labels is None:
            skipped.append(name)
            continue
        absolute = name.strip().endswith(".")
        if labels[-len(domain):] != domain:
            if absolute:
                skipped.append(name)
                continue
            labels = (*labels, *domain)
        if len(labels) == len(domain) or len(b".".join(labels)) > 253 or labels in claimed:
            skipped.append(name)  # the apex itself, too long once qualified, or taken by a higher priority
            continue
        claimed[labels] = address
        reverse.setdefault(address, labels)

    for labels, address in claimed.items():
        nodes.setdefault(labels, {})[T_A] = (A(str(address)),)
    for address, labels in reverse.items():
        owner = _reverse_labels(address)
        nodes.setdefault(owner, {})[T_PTR] = (PTR(DNSLabel(labels)),)
        if _apex_of(owner, apexes) is None:
            # A known address outside every reverse zone we own: its name is a zone of its own,
            # so other types there still get a proper NODATA with an SOA.
            apexes.add(owner)
            nodes[owner][T_SOA] = (soa_for(owner),)

    nonterminals: set[Labels] = set()
    for owner in nodes:
        apex = _apex_of(owner, apexes)
        if apex is None:
            continue
        for cut in range(1, len(owner) - len(apex)):
            if owner[cut:] not in nodes:
                nonterminals.add(owner[cut:])
    frozen_nodes = MappingProxyType({k: MappingProxyType(v) for k, v in nodes.items()})
    return Zone(domain=domain, ns_name=ns_name, apexes=frozenset(apexes), nodes=frozen_nodes,
                nonterminals=frozenset(nonterminals), ttl=ttl, serial=serial & 0xFFFFFFFF,
                names=len(claimed), skipped=tuple(skipped))


def _apex_of(labels: Labels, apexes: frozenset[Labels] | set[Labels]) -> Labels | None:
    """The closest enclosing zone apex we own, or None (not ours)."""
    for cut in range(len(labels) + 1):
        if labels[cut:] in apexes:
            return labels[cut:]
    return None


# --- decisions -----------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Reply:
    data: bytes
    rcode: int  # the full (extended) rcode, for counters
    truncated: bool = False


@dataclass(frozen=True, slots=True)
class Forward:
    """Relay `query` to an upstream resolver; `upstream_reply` checks what comes back."""

    query: bytes
    id: int
    qname: Labels  # lowercased
    qtype: int
    qclass: int
    limit: int  # the most the client can take in one message over its transport
    servfail: bytes  # what the client gets if no upstream answers in time


@dataclass(frozen=True, slots=True)
class Drop:
    reason: str


Decision = Reply | Forward | Drop


def _formerr_header(query: bytes) -> bytes:
    """A bare FORMERR: the query's id, opcode and RD; no sections (we could not read them)."""
    qid, flags = struct.unpack_from("!HH", query)
    opcode_rd = flags & 0x7900  # opcode bits and RD
    return struct.pack("!HHHHHH", qid, 0x8000 | opcode_rd | RCODE.FORMERR, 0, 0, 0, 0)


def answer(query: bytes, zone: Zone, *, transport: Transport = "udp", forwarding: bool = False) -> Decision:
    """Decide what to do with one DNS message that arrived on `transport`.

    `forwarding` says whether an upstream resolver is configured (names outside our zones go there,
    when the client asked for recursion) and sets the RA flag in our answers.
    """
    if len(query) < 12:
        return Drop("short")
    if query[2] & 0x80:
        return Drop("not-a-query")  # a response: answering it could start a loop between two servers
    try:
        msg = DNSRecord.parse(query)
    except Exception:  # dnslib signals bad input with several types (DNSError, UnicodeError, RecursionError
        return Reply(_formerr_header(query), RCODE.FORMERR)  # on a pointer chain, ...): all of them mean FORMERR
    if not all(_well_formed_name(q.qname) for q in msg.questions):
        # dnslib parses compression pointers that splice labels into one over 63 bytes, then refuses to
        # pack that name back into our reply: an illegal name is the client's format error.
        return Reply(_formerr_header(query), RCODE.FORMERR)
    return _answer_parsed(query, msg, zone, transport, forwarding)


def _well_formed_name(name: DNSLabel) -> bool:
    """RFC 1035 2.3.4: labels of at most 63 octets, a name of at most 255 on the wire."""
    labels = name.label
    return all(0 < len(label) <= 63 for label in labels) and sum(len(label) + 1 for label in labels) + 1 <= 255


def _answer_parsed(query: bytes, msg: DNSRecord, zone: Zone, transport: Transport, forwarding: bool) -> Decision:
    h = msg.header
    opts = [rr for rr in msg.ar if rr.rtype == T_OPT]
    edns = len(opts) == 1 and opts[0].rname.label == ()
    reply = DNSRecord(DNSHeader(id=h.id, qr=1, opcode=h.opcode, rd=h.rd, ra=int(forwarding),
                                cd=h.cd))
    reply.questions = list(msg.questions[:1]) if len(msg.questions) == 1 else []
    if edns:
        reply.add_ar(EDNS0(udp_len=OUR_UDP_SIZE))
    if len(opts) > 1 or (opts and not edns):
        return _finish(reply, RCODE.FORMERR, transport, CLASSIC_UDP_SIZE)  # RFC 6891 6.1.1
    if transport == "tcp":
        limit = TCP_MAX
    elif edns:
        limit = min(MAX_UDP_SIZE, max(CLASSIC_UDP_SIZE, opts[0].rclass))
    else:
        limit = CLASSIC_UDP_SIZE
    if edns and (opts[0].ttl >> 16) & 0xFF != 0:
        return _finish(reply, BADVERS, transport, limit)
    if h.opcode != OPCODE_QUERY:
        return _finish(reply, RCODE.NOTIMP, transport, limit)
    if len(msg.questions) != 1 or h.a or h.auth:
        return _finish(reply, RCODE.FORMERR, transport, limit)
    q: DNSQuestion = msg.q
    qname: Labels = tuple(label.lower() for label in q.qname.label)
    apex = _apex_of(qname, zone.apexes)
    if apex is None:
        if forwarding and h.rd and q.qclass in (C_IN, C_ANY):
            return Forward(query=query, id=h.id, qname=qname, qtype=q.qtype, qclass=q.qclass, limit=limit,
                           servfail=_finish(reply, RCODE.SERVFAIL, transport, limit).data)
        # Not ours, and no recursion on offer (or none asked for: we keep no cache to answer from).
        return _finish(reply, RCODE.REFUSED, transport, limit)
    if q.qclass not in (C_IN, C_ANY):
        return _finish(reply, RCODE.REFUSED, transport, limit)

    reply.header.aa = 1
    node = zone.nodes.get(qname)
    if node is None:
        if qname not in zone.nonterminals:
            _add_soa(reply, zone, apex)
            return _finish(reply, RCODE.NXDOMAIN, transport, limit)
        _add_soa(reply, zone, apex)
        return _finish(reply, RCODE.NOERROR, transport, limit)
    qtype = q.qtype
    types = list(node) if qtype == T_ANY else [qtype] if qtype in node else []
    for rtype in types:
        for rdata in node[rtype]:
            reply.add_answer(RR(q.qname, rtype, C_IN, zone.ttl, rdata))
    if not types:
        _add_soa(reply, zone, apex)  # NODATA: the name exists, the type does not
    elif T_NS in types:
        glue = zone.nodes.get(zone.ns_name, {}).get(T_A, ())
        for rdata in glue:
            reply.add_ar(RR(DNSLabel(zone.ns_name), T_A, C_IN, zone.ttl, rdata))
    return _finish(reply, RCODE.NOERROR, transport, limit)


def _add_soa(reply: DNSRecord, zone: Zone, apex: Labels) -> None:
    for rdata in zone.nodes[apex][T_SOA]:
        reply.add_auth(RR(DNSLabel(apex), T_SOA, C_IN, zone.ttl, rdata))


def _finish(reply: DNSRecord, rcode: int, transport: Transport, limit: int) -> Reply:
    reply.header.rcode = rcode & 0xF
    opt = next((rr for rr in reply.ar if rr.rtype == T_OPT), None)
    if opt is not None:
        opt.ttl = ((rcode >> 4) & 0xFF) << 24  # extended rcode; version 0; no DO (we do not sign)
    data = bytes(reply.pack())
    if len(data) <= limit:
        return Reply(data, rcode)
    # Too big for this transport: keep the question and the OPT, set TC so the client retries over TCP.
    reply.rr, reply.auth = [], []
    reply.ar = [opt] if opt is not None else []
    reply.header.tc = 1
    return Reply(bytes(reply.pack()), rcode, truncated=True)


# --- answer cache keys ---------------------------------------------------------------------------

def cache_key(query: bytes, transport: Transport) -> tuple[bytes, int] | None:
    """A key under which the reply to `query` may be cached, and where its question name ends.

    A reply depends on every byte of the query but the id, and on the question name only up to letter
    case (the name is echoed as sent, so `reply_from_cache` puts the asker's case back). None when the
    question name is not plain labels (a pointer, a bad length): such a query is answered the long way.
    """
    i, n = 12, len(query)
    while i < n:
        length = query[i]
        if length == 0:
            end = i + 1
            return (b"t" if transport == "tcp" else b"u") + query[2:12] + query[12:end].lower() + query[end:], end
        if length > 63:
            return None
        i += 1 + length
    return None


def cacheable(query: bytes, end: int, reply: bytes) -> bool:
    """Whether `reply` echoes the question name exactly where the query has it (so the case can be swapped)."""
    return len(reply) >= end and reply[12:end] == query[12:end]


def reply_from_cache(query: bytes, end: int, cached: bytes) -> bytes:
    """A cached reply (for the same key) turned into the reply to `query`: its id and its question's case."""
    return query[:2] + cached[2:12] + query[12:end] + cached[end:]


# --- forwarding helpers -------------------------------------------------------------------------

def with_id(message: bytes, new_id: int) -> bytes:
    """The same message under another id (the forwarder's own ids keep clients' ids from colliding upstream)."""
    return struct.pack("!H", new_id & 0xFFFF) + message[2:]


def upstream_reply(data: bytes, fwd: Forward, sent_id: int) -> bytes:
    """Check that `data` answers what `fwd` relayed under `sent_id`; return it under the client's id.

    Raises DnsError for anything else (a stray or spoofed packet, a reply to another question).
    A reply bigger than the client can take is cut to header + question with TC set.
    """
    try:
        msg = DNSRecord.parse(data)
    except Exception:  # any codec failure: the reply is unusable
        raise DnsError("unparseable upstream reply") from None
    h = msg.header
    if not h.qr or h.id != sent_id:
        raise DnsError("not a reply to our query")
    if len(msg.questions) != 1:
        raise DnsError("reply without exactly one question")
    q = msg.q
    if tuple(label.lower() for label in q.qname.label) != fwd.qname or q.qtype != fwd.qtype \
            or q.qclass != fwd.qclass:
        raise DnsError("reply to a different question")
    if len(data) <= fwd.limit:
        return with_id(data, fwd.id)
    msg.header.id = fwd.id
    msg.header.tc = 1
    msg.rr, msg.auth = [], []
    msg.ar = [rr for rr in msg.ar if rr.rtype == T_OPT]
    return bytes(msg.pack())
