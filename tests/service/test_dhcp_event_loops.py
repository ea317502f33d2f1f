"""The DHCP service on each event loop the daemon can run on (asyncio, uvloop): a relayed DORA over real
sockets on loopback, through the real journal (writer thread, group commit, durable callback), and the
ACK only leaves once its lease is committed: read back from the database the moment the ACK arrives.

The loops differ exactly where this path lives: add_reader on the server's socket, call_soon for the
hand-over, and call_soon_threadsafe from the writer thread when the commit is done.
"""

from __future__ import annotations

import asyncio
import socket
import sqlite3
import time
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import pytest

import protocols.dhcp.reply as reply_module
from appliance.daemon import eventloop
from protocols.dhcp.codec import DhcpPacket, decode, encode
from protocols.dhcp.options import MessageType, OptionCode
from protocols.dhcp.reply import BootSettings, ServerSettings, Subnet
from services.dhcp import DhcpServer
from state.db import db_path
from state.leases import LeaseModel
from state.store import Store

LOOPBACK = IPv4Address("127.0.0.1")
SUBNET = Subnet(IPv4Network("127.0.0.0/8"), IPv4Address("127.77.0.10"), IPv4Address("127.77.0.20"), None, (),
                None, 600)
CHADDR = bytes.fromhex("525400e1e1e1").ljust(16, b"\x00")
MAC = "52:54:00:e1:e1:e1"


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _relayed(kind: MessageType, relay_port: int, extra: dict[int, bytes] | None = None) -> bytes:
    # A relay on loopback (giaddr 127.0.0.1, hops 1) that does not send from port 67: it says so with the
    # relay source port sub-option (RFC 8357) of option 82, which the server echoes.
    agent = bytes([19, 2]) + relay_port.to_bytes(2, "big")
    options = {OptionCode.MESSAGE_TYPE: bytes([kind]), OptionCode.RELAY_AGENT_INFO: agent, **(extra or {})}
    return encode(DhcpPacket(op=1, xid=0x1234, hops=1, giaddr=LOOPBACK, chaddr=CHADDR, options=options))


def _stored_lease(path: Path) -> tuple[str, int] | None:
    conn = sqlite3.connect(path)
    try:
        row = conn.execute("SELECT mac, ip FROM leases WHERE mac = ?", (MAC,)).fetchone()
    finally:
        conn.close()
    return (row[0], int(row[1])) if row is not None else None


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_a_relayed_dora_is_acked_after_its_lease_is_committed(loop: str, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(eventloop.ENV, raising=False)
    name, factory = eventloop.loop_factory(loop)
    assert name == loop
    relay = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    relay.bind(("127.0.0.1", 0))
    relay.settimeout(5)
    relay_port = int(relay.getsockname()[1])
    # Relayed replies go to the relay's server port (67); here, to the test relay's own port.
    monkeypatch.setattr(reply_module, "SERVER_PORT", relay_port)
    port = _free_udp_port()

    async def dora() -> tuple[DhcpPacket, DhcpPacket, tuple[str, int] | None, dict[str, object]]:
        assert eventloop.running_loop_name() == loop
        store = Store(tmp_path)
        settings = ServerSettings(LOOPBACK, "authoritative", (SUBNET,), BootSettings(),
                                  trusted_relays=(IPv4Network("127.0.0.0/8"),))
        server = DhcpServer(settings=settings, leases=LeaseModel([SUBNET], store.writeback),
                            when_durable=store.journal.when_durable, port=port, bind_address="127.0.0.1",
                            clock=time.time, monotonic=time.monotonic)
        await server.start()
        try:
            def exchange() -> tuple[DhcpPacket, DhcpPacket, tuple[str, int] | None]:
                relay.sendto(_relayed(MessageType.DISCOVER, relay_port), ("127.0.0.1", port))
                offer = decode(relay.recv(2048))
                relay.sendto(_relayed(MessageType.REQUEST, relay_port, {
                    OptionCode.REQUESTED_IP: offer.yiaddr.packed, OptionCode.SERVER_ID: LOOPBACK.packed,
                }), ("127.0.0.1", port))
                ack = decode(relay.recv(2048))
                # Read at once, before the loop runs anything else of ours: the lease is on disk already.
                return offer, ack, _stored_lease(db_path(tmp_path))

            offer, ack, stored = await asyncio.to_thread(exchange)
            counters = dict(server.status()["counters"])
        finally:
            await server.stop()
            await store.close()
        return offer, ack, stored, counters

    try:
        with asyncio.Runner(loop_factory=factory) as runner:
            offer, ack, stored, counters = runner.run(dora())
    finally:
        relay.close()
    assert offer.message_type == MessageType.OFFER and ack.message_type == MessageType.ACK
    assert ack.yiaddr == offer.yiaddr and SUBNET.contains(ack.yiaddr)
    assert stored == (MAC, int(ack.yiaddr))
    assert counters["out_offer"] == 1 and counters["out_ack"] == 1 and counters["ack_batches"] == 1
