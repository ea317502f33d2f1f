"""The DNS fast path: the question shapes a boot network mostly asks, answered from the raw bytes (sans-IO).

`FastPath.answer(query, zone, ...)` handles one standard query (QR=0, opcode QUERY, one question, no
answer or authority records, at most one additional record and that one an OPT of EDNS version 0) for
A, AAAA or PTR in class IN under one of our zone apexes: a name we know gets its records, a name without
the type gets NODATA and one we do not know NXDOMAIN, both with the apex's SOA. It returns None for
anything else (another shape, a name outside our zones, a compression pointer, a label that is not plain
ASCII, trailing bytes, an answer too big for the transport): `protocols.dns.answer` takes those, and the
reply is the same either way. The bytes are the ones dnslib would pack for the same decision, name
compression included (dnslib compresses on exact, case-sensitive label matches, so a 0x20-cased question
leaves our lowercase names uncompressed, and so do we); tests/unit/test_dns_fast.py compares the two on
many generated queries. `FastPath.udp` puts an answer cache and NXDOMAIN answers per parent name in front of
it (what the UDP listener calls per datagram); tests/unit/test_dns_fast_cache.py checks those mean what dnslib
answers.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from protocols.dns import (
    C_IN,
    CLASSIC_UDP_SIZE,
    MAX_UDP_SIZE,
    OUR_UDP_SIZE,
    T_A,
    T_AAAA,
    T_OPT,
    T_PTR,
    T_SOA,
    TCP_MAX,
    Labels,
    Reply,
    Transport,
    Zone,
)

_HEADER = struct.Struct("!HHHHHH")
_TYPE_CLASS = struct.Struct("!HH")
_RR_FIXED = struct.Struct("!HHIH")  # type, class, ttl, rdlength
_NXDOMAIN = 3
_FAST_TYPES = frozenset((T_A, T_AAAA, T_PTR))
# Our OPT record: root owner, type OPT, our UDP size as the class, extended rcode 0 / version 0, no options.
_OUR_OPT = b"\x00" + _RR_FIXED.pack(T_OPT, OUR_UDP_SIZE, 0, 0)
_ANSWER_OWNER = b"\xc0\x0c"  # the answer's owner is the question name, which always starts at offset 12
_MEMO_SIZE = 4096

# A name ready to write with compression: per label, the wire form of the name from that label on (what the
# compression table is keyed by) and the label itself with its length byte.
_Name = tuple[tuple[bytes, bytes], ...]


def _wire(labels: Labels) -> bytes:
    return b"".join(bytes((len(label),)) + label for label in labels) + b"\x00"


def _name(labels: Labels) -> _Name:
    wire, out, i = _wire(labels), [], 0
    for label in labels:
        out.append((wire[i:], wire[i:i + 1 + len(label)]))
        i += 1 + len(label)
    return tuple(out)


@dataclass(frozen=True, slots=True)
class _Tail:
    """What follows the question in a reply: answer or authority records, in a form to write."""

    rcode: int
    answers: int
    authority: int
    fixed: bytes | None  # the bytes themselves when they need no compression against the question (A records)
    records: tuple[tuple[_Name, int, tuple[bytes | _Name, ...]], ...]  # (owner, type, rdata parts) otherwise


_UNSET = _Tail(0, 0, 0, None, ())  # "not worked out yet" in the tail caches (None there means: the long way)


class _Index:
    """What the fast path needs from one zone, keyed by lowercase wire-form names.

    Made per zone object (a zone changes with every lease that names a host), so it does little up front:
    the tail of each owner and type, and the SOA of each apex, are worked out when first asked for.
    A reply's tail (what follows the question) depends on the question only through the question's length
    and those of its name's suffixes, in their exact case, that the tail's names could be compressed
    against; the rendered tails are memoized under that key, so a miss costs a few dict lookups.
    """

    __slots__ = ("_apexes", "_nodes", "_soas", "_tails", "apexes", "cache", "memo", "negative", "nonterminals",
                 "owners", "suffixes", "taken", "ttl")

    def __init__(self, zone: Zone) -> None:
        self.ttl = zone.ttl
        self._nodes = zone.nodes
        self._apexes = zone.apexes
        self.apexes: frozenset[bytes] = frozenset(_wire(a) for a in zone.apexes)
        self.nonterminals: frozenset[bytes] = frozenset(_wire(n) for n in zone.nonterminals)
        self.owners: dict[bytes, Labels] = {_wire(owner): owner for owner in zone.nodes}
        # The wire forms of every suffix of every name a worked-out tail writes (what questions can match).
        self.suffixes: set[bytes] = set()
        self.memo: dict[tuple[object, ...], bytes] = {}
        # FastPath.udp's answers: key -> (end of the question name, flags, bytes after the name, reply header
        # after the id, reply after the question, rcode).
        self.cache: dict[bytes, tuple[int, bytes, bytes, bytes, bytes, int]] = {}
        # NXDOMAIN answers by everything but the question's first label: a name nobody has gets the same reply
        # as any other nobody has under the same parent, with the same first-label length and the same bytes
        # around it (key: the query after the id without the first label's letters; value: end of the question
        # name, reply header after the id, reply after the question). Only for names in none of `taken`.
        self.negative: dict[bytes, tuple[int, bytes, bytes]] = {}
        # Every name the fast path's answer depends on beyond its parent: owners, empty non-terminals,
        # apexes, and the names a tail may compress against (grows with `suffixes`).
        self.taken: set[bytes] = {*self.owners, *self.nonterminals, *self.apexes}
        self._tails: dict[tuple[bytes, int], _Tail | None] = {}
        self._soas: dict[tuple[bytes, int], _Tail | None] = {}

    def _named(self, labels: Labels) -> _Name:
        name = _name(labels)
        self.suffixes.update(suffix for suffix, _ in name)
        self.taken.update(suffix for suffix, _ in name)
        return name

    def soa_tail(self, apex: bytes, rcode: int) -> _Tail | None:
        """NXDOMAIN or NODATA under `apex`: its SOA in the authority section."""
        tail = self._soas.get((apex, rcode), _UNSET)
        if tail is _UNSET:
            labels = _labels_of(apex)
            rdatas = self._nodes[labels].get(T_SOA, ())
            tail = None
            if len(rdatas) == 1:
                soa = rdatas[0]
                parts = (self._named(tuple(soa.mname.label)), self._named(tuple(soa.rname.label)),
                         struct.pack("!IIIII", *soa.times))
                tail = _Tail(rcode, 0, 1, None, ((self._named(labels), T_SOA, parts),))
            self._soas[(apex, rcode)] = tail
        return tail

    def owner_tail(self, owner: bytes, qtype: int) -> _Tail | None:
        """The answer for a name that owns records: its records of `qtype`, or NODATA."""
        tail = self._tails.get((owner, qtype), _UNSET)
        if tail is _UNSET:
            labels = self.owners[owner]
            apex = _apex_of(labels, self._apexes)
            rdatas = self._nodes[labels].get(qtype, ())
            if apex is None:
                tail = None  # not in a zone of ours (make_zone makes none such): the long way decides
            elif qtype == T_A and rdatas:
                fixed = b"".join(_ANSWER_OWNER + _RR_FIXED.pack(T_A, C_IN, self.ttl, 4) + bytes(rd.data)
                                 for rd in rdatas)
                tail = _Tail(0, len(rdatas), 0, fixed, ())
            elif qtype == T_PTR and rdatas:
                records = tuple((_QUESTION, T_PTR, (self._named(tuple(rd.label.label)),)) for rd in rdatas)
                tail = _Tail(0, len(rdatas), 0, None, records)
            elif rdatas:
                tail = None  # a type we hold but do not encode here: the long way
            else:
                tail = self.soa_tail(_wire(apex), 0)
            self._tails[(owner, qtype)] = tail
        return tail

    def render(self, tail: _Tail, qwire: bytes, starts: list[int]) -> bytes:
        """The tail's bytes after the question `qwire` (exact case) whose labels start at `starts` in it."""
        if tail.fixed is not None:
            return tail.fixed
        # Only the question's suffixes that our names could point into matter: the whole name (when it is
        # one of those), and what follows its first label (a miss's first label is new each time, the rest
        # is the same), each at its offset (which the length fixes).
        rest = qwire[starts[1]:] if len(starts) > 1 else b""
        key = (id(tail), len(qwire), qwire if qwire in self.suffixes else None, rest)
        got = self.memo.get(key)
        if got is None:
            suffixes = self.suffixes
            matches = {qwire[i:]: 12 + i for i in starts if qwire[i:] in suffixes}
            if len(self.memo) >= _MEMO_SIZE:
                self.memo.clear()
            got = self.memo[key] = self._render(tail, matches, 12 + len(qwire) + 4)
        return got

    def _render(self, tail: _Tail, names: dict[bytes, int], at: int) -> bytes:
        # dnslib's encode_name, offsets counted from the start of the reply (`at` is where the tail begins).
        out = bytearray()

        def put(name: _Name) -> None:
            for suffix, label in name:
                known = names.get(suffix)
                if known is not None:
                    out.extend((0xC000 | known).to_bytes(2, "big"))
                    return
                names[suffix] = at + len(out)
                out.extend(label)
            out.append(0)

        for owner, rtype, parts in tail.records:
            if owner is _QUESTION:
                out.extend(_ANSWER_OWNER)
            else:
                put(owner)
            length_at = len(out) + 8
            out.extend(_RR_FIXED.pack(rtype, C_IN, self.ttl, 0))
            for part in parts:
                if isinstance(part, bytes):
                    out.extend(part)
                else:
                    put(part)
            out[length_at:length_at + 2] = (len(out) - length_at - 2).to_bytes(2, "big")
        return bytes(out)


_QUESTION: _Name = ()  # the owner of an answer record: the question name itself (always a pointer to 12)


def _labels_of(wire: bytes) -> Labels:
    out, i = [], 0
    while wire[i]:
        out.append(wire[i + 1:i + 1 + wire[i]])
        i += 1 + wire[i]
    return tuple(out)


def _apex_of(labels: Labels, apexes: frozenset[Labels]) -> Labels | None:
    for cut in range(len(labels) + 1):
        if labels[cut:] in apexes:
            return labels[cut:]
    return None


class FastPath:
    """Answers the common shapes; keeps the index of the last zone it was given (a new zone object rebuilds it).

    `udp(query, zone, forwarding)` is the UDP listener's hot path: an answer cache in front of `answer`,
    keyed by the query's bytes after the id with the question name lowercased, holding the reply's header
    and everything after the question. It lives in the zone's index, so it goes with the zone (a new host
    or lease is a new zone object) and with a change of forwarding (the RA bit). A hit is served with the
    asker's id and the question exactly as sent (0x20 case kept); names in the cached records may point into
    the question of another case, which names the same (DNS names compare case-insensitively).
    """

    __slots__ = ("_forwarding", "_index", "_zone", "answered", "cache_size")

    def __init__(self, cache_size: int = 10000) -> None:
        self._zone: Zone | None = None
        self._forwarding = False
        self._index: _Index | None = None
        self.answered = 0  # answers worked out by this path (not counting cache hits)
        self.cache_size = cache_size

    def _index_for(self, zone: Zone) -> _Index:
        if zone is not self._zone or self._index is None:
            self._index, self._zone = _Index(zone), zone
        return self._index

    def answer(self, query: bytes, zone: Zone, *, transport: Transport = "udp",
               forwarding: bool = False) -> Reply | None:
        """The reply to `query`, or None when it is not a shape this path takes (then ask `protocols.dns.answer`)."""
        if type(query) is not bytes:
            query = bytes(query)  # names are sliced out as dict keys: they must be hashable
        got = self._compute(query, self._index_for(zone), transport, forwarding)
        return None if got is None else Reply(got[0], got[1])

    def udp(self, query: bytes, zone: Zone, forwarding: bool) -> tuple[bytes, int, bool] | None:
        """(reply, rcode, from the cache) for a query over UDP, worked out (then cached) on a miss; None: not
        a shape of ours (ask `protocols.dns.answer`)."""
        index = self._index
        if zone is not self._zone or forwarding is not self._forwarding or index is None:
            index = self._index = _Index(zone)
            self._zone, self._forwarding = zone, forwarding
        key = query[2:].lower()
        hit = index.cache.get(key)
        if hit is not None:
            # Lowering keeps the label lengths (all below 'A'), so `end` is this query's too; the bytes
            # lowering could have merged (flags, type, class, the OPT) must be the cached query's own.
            end, flags, trail, head, rest, rcode = hit
            if query[2:4] == flags and query[end:] == trail:
                return b"".join((query[:2], head, query[12:end + 4], rest)), rcode, True
        # A name nobody has: the answer of another such name under the same parent, when one was worked out.
        first = query[12] + 13 if len(query) > 12 else 0
        if 13 < first <= 76:
            negative = index.negative.get(query[2:13] + query[first:])
            if negative is not None:
                end, head, rest = negative
                if query[13:first].isascii() and key[10:end - 2] not in index.taken:
                    return b"".join((query[:2], head, query[12:end + 4], rest)), _NXDOMAIN, True
        if type(query) is not bytes:
            query = bytes(query)
        got = self._compute(query, index, "udp", forwarding)
        if got is None:
            return None
        reply, rcode, end = got
        if self.cache_size:
            if rcode == _NXDOMAIN:
                if key[10:end - 2] not in index.taken:
                    negatives = index.negative
                    if len(negatives) >= self.cache_size:
                        negatives.clear()
                    negatives[query[2:13] + query[query[12] + 13:]] = (end, reply[2:12], reply[end + 4:])
            else:
                cache = index.cache
                if len(cache) >= self.cache_size:
                    cache.clear()  # crude but O(1) amortised: a flood of unique names cannot grow memory
                cache[key] = (end, query[2:4], query[end:], reply[2:12], reply[end + 4:], rcode)
        return reply, rcode, False

    def _compute(self, query: bytes, index: _Index, transport: Transport,
                 forwarding: bool) -> tuple[bytes, int, int] | None:
        """(reply, rcode, end of the question name) worked out from the zone's index, or None."""
        n = len(query)
        if n < 17:
            return None
        qid, flags, qd, an, ns, ar = _HEADER.unpack_from(query)
        # QR=0 and opcode QUERY; one question; nothing in answer/authority; at most one additional (the OPT).
        if flags & 0xF800 or qd != 1 or an or ns or ar > 1:
            return None
        # The question name: plain ASCII labels only (dnslib refuses labels that are not UTF-8; we leave every
        # non-ASCII label, and every compression pointer, to it). Wire length at most 255 (RFC 1035 2.3.4),
        # which is also dnslib's 253 characters when packing.
        i = 12
        starts: list[int] = []  # where each label starts, counted from the name's first byte
        while True:
            if i >= n:
                return None
            length = query[i]
            if length == 0:
                break
            if length > 63:
                return None
            starts.append(i - 12)
            i += 1 + length
        end = i + 1  # just past the root byte
        if end + 4 > n or end - 12 > 255:
            return None
        qwire = query[12:end]
        if not qwire.isascii():
            return None
        qtype, qclass = _TYPE_CLASS.unpack_from(query, end)
        if qclass != C_IN or qtype not in _FAST_TYPES:
            return None
        pos = end + 4
        edns = False
        limit = TCP_MAX if transport == "tcp" else CLASSIC_UDP_SIZE
        if ar:
            # The OPT record: root owner, version 0, options that dnslib's parser reads to the end.
            if pos + 11 > n or query[pos] != 0:
                return None
            rtype, rclass, ttl, rdlength = _RR_FIXED.unpack_from(query, pos + 1)
            pos += 11
            if rtype != T_OPT or (ttl >> 16) & 0xFF or pos + rdlength != n:
                return None
            o, stop = pos, pos + rdlength
            while stop - o > 4:
                o += 4 + int.from_bytes(query[o + 2:o + 4], "big")
                if o > stop:
                    return None
            edns = True
            if transport != "tcp":
                limit = min(MAX_UDP_SIZE, max(CLASSIC_UDP_SIZE, rclass))
        elif pos != n:
            return None  # trailing bytes: let the full parser decide what they are

        lowered = qwire.lower()  # length bytes are at most 63, below 'A': only letters change
        tail: _Tail | None
        if lowered in index.owners:
            tail = index.owner_tail(lowered, qtype)
        else:
            apexes = index.apexes
            for b in starts:
                if lowered[b:] in apexes:
                    apex = lowered[b:]
                    break
            else:
                return None  # not ours (or the root): forwarded or refused, the long way
            tail = index.soa_tail(apex, 0 if lowered in index.nonterminals else _NXDOMAIN)
        if tail is None:
            return None
        rendered = index.render(tail, qwire, starts)
        size = end + 4 + len(rendered) + (11 if edns else 0)
        if size > limit:
            return None  # the long way truncates
        self.answered += 1
        return b"".join((
            _HEADER.pack(qid, 0x8400 | (flags & 0x0110) | (0x80 if forwarding else 0) | tail.rcode,  # QR AA RD CD
                         1, tail.answers, tail.authority, 1 if edns else 0),
            query[12:end + 4],  # the question exactly as sent
            rendered,
            _OUR_OPT if edns else b"")), tail.rcode, end
