"""The DNS server on loopback, asked by the real `dig`, answering from a real store in a temp state dir.

Forwarding goes to a fake upstream this test starts on 127.0.0.1 (a few lines of dnslib), never to a
real resolver.
"""

from __future__ import annotations

import asyncio
import random
import re
import socket
import sqlite3
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from types import MappingProxyType

import pytest
from dnslib import EDNS0, QTYPE, RR, A, DNSRecord

from protocols.dns import Zone, ZoneSettings, make_zone
from services.dns import DnsServer, StoreZone
from state.names import NameIndex
from state.store import Store

DOMAIN = "cluster.local"
SETTINGS = ZoneSettings(domain=DOMAIN, hostname="imageserver", address=IPv4Address("10.99.0.1"), ttl=30,
                        reverse_networks=(IPv4Network("10.99.0.0/24"),))


# --- helpers: dig, a store, a fake upstream ---------------------------------------------------------

@dataclass
class Dig:
    status: str
    flags: set[str]
    answers: list[str]  # "name type rdata"
    authority: list[str]
    transport: str  # "UDP" | "TCP"
    raw: str


def _section(out: str, title: str) -> list[str]:
    m = re.search(rf";; {title} SECTION:\n(.*?)(?:\n\n|\Z)", out, re.S)
    if not m:
        return []
    rows = []
    for line in m.group(1).splitlines():
        f = line.split()
        rows.append(f"{f[0].lower()} {f[3]} {' '.join(f[4:])}")
    return rows


async def dig(port: int, *args: str) -> Dig:
    proc = await asyncio.create_subprocess_exec(
        "dig", "@127.0.0.1", "-p", str(port), "+time=2", "+tries=1", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out_b, _ = await proc.communicate()
    out = out_b.decode()
    status = re.search(r"status: (\w+)", out)
    flags = re.search(r";; flags: ([a-z ]*);", out)
    server = re.search(r";; SERVER: .*\((UDP|TCP)\)", out)
    assert status and flags and server, f"dig got no answer:\n{out}"
    return Dig(status.group(1), set(flags.group(1).split()), _section(out, "ANSWER"), _section(out, "AUTHORITY"),
               server.group(1), out)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    s = Store(tmp_path / "state")
    await add_host(s, "www2", "10.99.0.12")
    await add_host(s, "node7", "10.99.0.17")
    yield s
    await s.close()


async def add_host(store: Store, name: str, ip: str) -> None:
    def op(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO hosts(name, ip, created, updated) VALUES(?, ?, 0, 0)", (name, int(IPv4Address(ip))))

    await store.journal.run(op)


Started = Callable[..., Awaitable[DnsServer]]


@pytest.fixture
async def started() -> AsyncIterator[Started]:
    servers: list[DnsServer] = []

    async def start(zone: Callable[[], Zone], **kw: object) -> DnsServer:
        srv = DnsServer(host="127.0.0.1", port=0, zone=zone, **kw)  # type: ignore[arg-type]
        await srv.start()
        servers.append(srv)
        return srv

    yield start
    for srv in servers:
        await srv.stop()


def store_zone(store: Store) -> StoreZone:
    return StoreZone(NameIndex(store.reader), SETTINGS)


@dataclass
class FakeUpstream(asyncio.DatagramProtocol):
    """A resolver stand-in on loopback: answers every A question with 192.0.2.53 (or stays silent)."""

    silent: bool = False
    queries: list[DNSRecord] = field(default_factory=list)
    transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        q = DNSRecord.parse(data)
        self.queries.append(q)
        if self.silent or self.transport is None:
            return
        r = q.reply()
        r.header.ra = 1
        if q.q.qtype == QTYPE.A:
            r.add_answer(RR(q.q.qname, QTYPE.A, rdata=A("192.0.2.53"), ttl=300))
        self.transport.sendto(r.pack(), addr)

    @property
    def address(self) -> tuple[str, int]:
        assert self.transport is not None
        return self.transport.get_extra_info("sockname")[:2]


@pytest.fixture
async def upstreams() -> AsyncIterator[Callable[..., Awaitable[FakeUpstream]]]:
    made: list[FakeUpstream] = []

    async def make(silent: bool = False) -> FakeUpstream:
        loop = asyncio.get_running_loop()
        _, up = await loop.create_datagram_endpoint(lambda: FakeUpstream(silent=silent),
                                                    local_addr=("127.0.0.1", 0))
        made.append(up)
        return up

    yield make
    for up in made:
        if up.transport is not None:
            up.transport.close()


# --- answers from the store ----------------------------------------------------------------------

async def test_dig_resolves_a_host_from_the_store(store: Store, started: Started) -> None:
    srv = await started(store_zone(store))
    r = await dig(srv.port, f"www2.{DOMAIN}")
    assert r.status == "NOERROR" and "aa" in r.flags
    assert r.answers == [f"www2.{DOMAIN}. A 10.99.0.12"]
    assert (await dig(srv.port, f"imageserver.{DOMAIN}")).answers == [f"imageserver.{DOMAIN}. A 10.99.0.1"]


async def test_dig_x_gives_the_ptr(store: Store, started: Started) -> None:
    srv = await started(store_zone(store))
    r = await dig(srv.port, "-x", "10.99.0.17")
    assert r.status == "NOERROR" and r.answers == [f"17.0.99.10.in-addr.arpa. PTR node7.{DOMAIN}."]
    r = await dig(srv.port, "-x", "10.99.0.250")  # ours, but nobody has it
    assert r.status == "NXDOMAIN" and r.authority[0].startswith("0.99.10.in-addr.arpa. SOA")


async def test_unknown_name_is_nxdomain_with_soa(store: Store, started: Started) -> None:
    srv = await started(store_zone(store))
    r = await dig(srv.port, f"nosuch.{DOMAIN}")
    assert r.status == "NXDOMAIN" and "aa" in r.flags and not r.answers
    assert r.authority[0].startswith(f"{DOMAIN}. SOA imageserver.{DOMAIN}. hostmaster.{DOMAIN}.")


async def test_aaaa_of_a_known_name_is_nodata(store: Store, started: Started) -> None:
    srv = await started(store_zone(store))
    r = await dig(srv.port, "WWW2.Cluster.Local", "AAAA")
    assert r.status == "NOERROR" and not r.answers and r.authority[0].startswith(f"{DOMAIN}. SOA")


async def test_a_host_inserted_while_running_resolves_on_the_next_query(store: Store, started: Started) -> None:
    srv = await started(store_zone(store))
    # +nocookie: the same query bytes every time, so the second NXDOMAIN comes from the answer cache,
    # which must not outlive the zone it was computed from.
    for _ in range(2):
        assert (await dig(srv.port, "+nocookie", f"fresh.{DOMAIN}")).status == "NXDOMAIN"
    assert srv.counters["cache_hits"] == 1
    await add_host(store, "fresh", "10.99.0.42")
    r = await dig(srv.port, "+nocookie", f"fresh.{DOMAIN}")
    assert r.status == "NOERROR" and r.answers == [f"fresh.{DOMAIN}. A 10.99.0.42"]
    assert (await dig(srv.port, "-x", "10.99.0.42")).answers == [f"42.0.99.10.in-addr.arpa. PTR fresh.{DOMAIN}."]

    def delete(conn: sqlite3.Connection) -> None:
        conn.execute("DELETE FROM hosts WHERE name = 'fresh'")

    await store.journal.run(delete)
    assert (await dig(srv.port, f"fresh.{DOMAIN}")).status == "NXDOMAIN"


# --- transports ----------------------------------------------------------------------------------

async def test_tcp_with_several_queries_on_one_connection(store: Store, started: Started) -> None:
    srv = await started(store_zone(store))
    proc = await asyncio.create_subprocess_exec(
        "dig", "@127.0.0.1", "-p", str(srv.port), "+tcp", "+keepopen", "+time=2", "+tries=1", "+short",
        f"www2.{DOMAIN}", f"node7.{DOMAIN}", f"imageserver.{DOMAIN}", stdout=asyncio.subprocess.PIPE)
    out, _ = await proc.communicate()
    assert out.decode().split() == ["10.99.0.12", "10.99.0.17", "10.99.0.1"]
    assert srv.counters["tcp_connections"] == 1 and srv.counters["queries_tcp"] == 3


def round_robin_zone() -> Zone:
    """A name with 100 addresses (about 1.7 kB of answer), so truncation is reachable."""
    base = make_zone(SETTINGS, [], serial=1)
    nodes = dict(base.nodes)
    nodes[(b"rr", b"cluster", b"local")] = MappingProxyType({QTYPE.A: tuple(A(f"10.99.1.{i}") for i in range(100))})
    return Zone(domain=base.domain, ns_name=base.ns_name, apexes=base.apexes, nodes=MappingProxyType(nodes),
                nonterminals=base.nonterminals, ttl=30, serial=1, names=1)


async def test_bufsize_truncation_and_tcp_fallback(started: Started) -> None:
    z = round_robin_zone()
    srv = await started(lambda: z)
    small = await dig(srv.port, "+ignore", "+bufsize=512", f"rr.{DOMAIN}")
    assert "tc" in small.flags and not small.answers and small.transport == "UDP"
    big = await dig(srv.port, "+bufsize=4096", f"rr.{DOMAIN}")
    assert "tc" not in big.flags and len(big.answers) == 100 and big.transport == "UDP"
    fallback = await dig(srv.port, "+bufsize=1232", f"rr.{DOMAIN}")  # TC over UDP, dig retries over TCP
    assert len(fallback.answers) == 100 and fallback.transport == "TCP"
    assert srv.counters["truncated"] == 2


async def test_norec_gets_our_names_but_no_forwarding(store: Store, started: Started, upstreams) -> None:
    up = await upstreams()
    srv = await started(store_zone(store), upstreams=[up.address])
    r = await dig(srv.port, "+norec", f"www2.{DOMAIN}")
    assert r.status == "NOERROR" and "aa" in r.flags and "rd" not in r.flags and r.answers
    assert (await dig(srv.port, "+norec", "example.com")).status == "REFUSED"
    assert up.queries == []


async def test_tcp_idle_connections_are_closed(started: Started) -> None:
    z = make_zone(SETTINGS, [], serial=1)
    srv = await started(lambda: z, tcp_idle=0.2)
    reader, writer = await asyncio.open_connection("127.0.0.1", srv.port)
    assert await asyncio.wait_for(reader.read(1), 2.0) == b""  # closed by the server, not by us
    writer.close()
    assert srv.counters["tcp_idle_closed"] == 1


async def test_a_tcp_client_that_never_reads_is_disconnected(started: Started) -> None:
    z = round_robin_zone()
    srv = await started(lambda: z, tcp_idle=0.3)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # fills after a few answers
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", srv.port))
    _reader, writer = await asyncio.open_connection(sock=sock)  # it stops reading at its 128 kB limit
    query = DNSRecord.question(f"rr.{DOMAIN}").pack()
    writer.write((struct.pack("!H", len(query)) + query) * 3000)  # about 5 MB of answers asked for, none read
    deadline = asyncio.get_running_loop().time() + 5
    while srv.counters["tcp_stalled_closed"] == 0 and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.05)
    assert srv.counters["tcp_stalled_closed"] == 1 and srv.status()["tcp_connections_open"] == 0
    writer.close()


# --- names that are not ours ------------------------------------------------------------------------

async def test_outside_name_is_refused_without_upstream(store: Store, started: Started) -> None:
    srv = await started(store_zone(store))
    r = await dig(srv.port, "example.com")
    assert r.status == "REFUSED" and "ra" not in r.flags


async def test_outside_name_is_forwarded_to_the_upstream(store: Store, started: Started, upstreams) -> None:
    up = await upstreams()
    srv = await started(store_zone(store), upstreams=[up.address])
    r = await dig(srv.port, "example.com")
    assert r.status == "NOERROR" and r.answers == ["example.com. A 192.0.2.53"] and "ra" in r.flags
    t = await dig(srv.port, "+tcp", "Example.COM")
    assert t.answers == ["example.com. A 192.0.2.53"] and t.transport == "TCP"
    assert len(up.queries) == 2
    assert srv.counters["forwarded"] == 2 and srv.counters["forward_replies"] == 2
    # Our own names never go upstream.
    assert (await dig(srv.port, f"www2.{DOMAIN}")).answers == [f"www2.{DOMAIN}. A 10.99.0.12"]
    assert len(up.queries) == 2


async def test_silent_upstream_gives_servfail_and_the_next_upstream_is_tried(store: Store, started: Started,
                                                                             upstreams) -> None:
    silent = await upstreams(silent=True)
    srv = await started(store_zone(store), upstreams=[silent.address], forward_timeout=0.3)
    r = await dig(srv.port, "example.com")
    assert r.status == "SERVFAIL" and srv.counters["forward_failed"] == 1
    good = await upstreams()
    srv.reconfigure([silent.address, good.address])
    r = await dig(srv.port, "example.org")
    assert r.answers == ["example.org. A 192.0.2.53"] and len(silent.queries) == 2
    assert srv.status()["pending_forwards"] == 0


async def test_pending_table_is_bounded(store: Store, started: Started, upstreams) -> None:
    silent = await upstreams(silent=True)
    srv = await started(store_zone(store), upstreams=[silent.address], forward_timeout=0.5, max_pending=4)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.setblocking(False)
        for i in range(10):
            s.sendto(DNSRecord.question(f"n{i}.example.com").pack(), ("127.0.0.1", srv.port))
        loop = asyncio.get_running_loop()
        replies = [DNSRecord.parse(await asyncio.wait_for(loop.sock_recv(s, 4096), 3.0)) for _ in range(10)]
    assert all(r.header.rcode == 2 for r in replies)  # 6 at once (table full), 4 after the timeout
    assert srv.counters["forward_table_full"] == 6 and srv.counters["forward_failed"] == 4
    assert len(silent.queries) == 4


# --- hostile input ---------------------------------------------------------------------------------

def _seeds() -> list[bytes]:
    seeds = [DNSRecord.question(n, t).pack() for n, t in
             ((f"www2.{DOMAIN}", "A"), ("12.0.99.10.in-addr.arpa", "PTR"), (DOMAIN, "SOA"), ("example.com", "A"))]
    e = DNSRecord.question(f"node7.{DOMAIN}", "ANY")
    e.add_ar(EDNS0(udp_len=4096, flags="do"))
    seeds.append(e.pack())
    return seeds


def mutate(rng: random.Random, seed: bytes) -> bytes:
    data = bytearray(seed)
    kind = rng.choice(["cut", "flip", "labellen", "loop", "pointer", "counts", "garbage"])
    if kind == "cut":
        del data[rng.randrange(len(data)):]
    elif kind == "flip":
        for _ in range(rng.randint(1, 6)):
            i = rng.randrange(len(data))
            data[i] ^= 1 << rng.randrange(8)
    elif kind == "labellen":  # the first label length says more (or less) than is there
        data[12] = rng.choice([0, 63, 64, 127, 191, 255, rng.randrange(256)])
    elif kind == "loop":  # the question name is a pointer to itself, or two pointers to each other
        data[12:] = rng.choice([b"\xc0\x0c", b"\xc0\x0e\xc0\x0c", b"\x01a\xc0\x0c"]) + b"\x00\x01\x00\x01"
    elif kind == "pointer":
        i = rng.randrange(12, len(data) - 1)
        data[i:i + 2] = struct.pack("!H", 0xC000 | rng.randrange(len(data) + 8))
    elif kind == "counts":
        data[4:12] = struct.pack("!HHHH", *(rng.choice([0, 1, 2, 0xFFFF]) for _ in range(4)))
    else:
        data = bytearray(rng.randbytes(rng.randrange(0, 64)))
    return bytes(data)


async def test_fuzzed_queries_over_udp_and_tcp_leave_the_server_answering(store: Store, started: Started) -> None:
    srv = await started(store_zone(store))
    rng = random.Random(20240601)
    seeds = _seeds()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.setblocking(False)
        for i in range(1500):
            s.sendto(mutate(rng, rng.choice(seeds)), ("127.0.0.1", srv.port))
            if i % 100 == 99:
                await asyncio.sleep(0.01)  # let the server drain its socket buffer
    for _ in range(20):  # TCP: mutated messages, lying length prefixes, connections cut mid-frame
        reader, writer = await asyncio.open_connection("127.0.0.1", srv.port)
        for _ in range(rng.randint(1, 10)):
            msg = mutate(rng, rng.choice(seeds))
            length = len(msg) if rng.random() < 0.8 else rng.randrange(0, 0x10000)
            writer.write(struct.pack("!H", length) + msg)
        if rng.random() < 0.5:
            writer.write_eof()
            await asyncio.wait_for(reader.read(), 3.0)
        writer.close()
    await asyncio.sleep(0.2)
    print(dict(srv.counters))
    assert srv.counters["internal_errors"] == 0
    assert srv.counters["rcode_formerr"] > 0 and srv.counters["dropped"] > 0
    assert (await dig(srv.port, f"www2.{DOMAIN}")).answers == [f"www2.{DOMAIN}. A 10.99.0.12"]
    assert (await dig(srv.port, "+tcp", f"node7.{DOMAIN}")).answers == [f"node7.{DOMAIN}. A 10.99.0.17"]
