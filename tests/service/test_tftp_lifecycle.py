"""Start/stop, status, limits, retransmission and give-up of the TFTP service on loopback."""

from __future__ import annotations

import asyncio
import os
import socket
from pathlib import Path

import pytest

from domain.settings import TftpConfig
from protocols.tftp import Data, Error, ErrorCode, OptionAck, ReadRequest, decode_packet, encode_error, encode_request
from services.base import ServiceError
from services.tftp import TftpServer
from tests.service.test_tftp_support import HOST, Probe, atftp, running_server


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    root.mkdir()
    (root / "boot.bin").write_bytes(os.urandom(5000))
    (root / "large.bin").write_bytes(os.urandom(200_000))
    return root


@pytest.fixture
def probe():
    probe = Probe()
    yield probe
    probe.close()


def rrq(name: str, **options: str) -> bytes:
    return encode_request(ReadRequest(name, "octet", options))


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def test_start_on_a_busy_port_raises_service_error_with_the_reason(root: Path):
    holder = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    holder.bind((HOST, 0))
    port = holder.getsockname()[1]
    try:
        server = TftpServer(root=root, host=HOST, port=port)
        with pytest.raises(ServiceError, match=rf"^tftp: cannot listen on {HOST}:{port}: Address already in use"):
            await server.start()
        assert server.status()["state"] == "failed"
        assert "Address already in use" in server.status()["error"]
    finally:
        holder.close()


async def test_start_with_a_missing_root_raises_service_error(tmp_path: Path):
    server = TftpServer(root=tmp_path / "nowhere", host=HOST, port=0)
    with pytest.raises(ServiceError, match="not a directory"):
        await server.start()
    assert server.status()["state"] == "failed"


async def test_status_and_port_through_start_and_stop(root: Path, tmp_path: Path):
    server = TftpServer(root=root, host=HOST, port=0)
    assert server.status()["state"] == "stopped"
    await server.start()
    try:
        assert server.port > 0
        status = server.status()
        assert status["state"] == "running"
        assert status["listen"] == [f"{HOST}:{server.port}/udp"]
        assert (await atftp(server.port, "boot.bin", tmp_path / "o"))[0] == 0
        counters = server.status()["counters"]
        assert counters["transfers_started"] == counters["transfers_completed"] == 1
        assert counters["bytes_sent"] == 5000
    finally:
        await server.stop()
    assert server.status()["state"] == "stopped"
    rebound = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rebound.bind((HOST, server.port))  # the port was released
    rebound.close()


async def test_stop_closes_active_transfers_sockets_and_files(root: Path):
    before = open_fds()
    server = TftpServer(root=root, host=HOST, port=0, memory_cache_limit=0)
    await server.start()
    peers = [Probe() for _ in range(3)]
    try:
        for peer in peers:
            assert await peer.exchange(rrq("large.bin"), (HOST, server.port)) is not None
        assert server.status()["active_transfers"] == 3
    finally:
        await server.stop()
        for peer in peers:
            peer.close()
    assert server.status()["active_transfers"] == 0
    assert server.status()["counters"]["transfers_failed"] == 3
    assert open_fds() == before


async def test_over_the_limit_a_request_gets_server_busy(root: Path, probe: Probe, tmp_path: Path):
    async with running_server(root, settings=TftpConfig(max_transfers=1)) as server:
        first = await probe.exchange(rrq("boot.bin"), (HOST, server.port))
        assert first is not None and decode_packet(first[0]).block == 1
        other = Probe()
        try:
            reply = await other.exchange(rrq("boot.bin"), (HOST, server.port))
            assert reply is not None
            assert decode_packet(reply[0]) == Error(ErrorCode.NOT_DEFINED, "server busy")
        finally:
            other.close()
        await probe.send(encode_error(ErrorCode.NOT_DEFINED, "enough"), first[1])
        await asyncio.sleep(0.05)
        assert server.status()["active_transfers"] == 0
        assert (await atftp(server.port, "boot.bin", tmp_path / "o"))[0] == 0
        counters = server.status()["counters"]
    assert (counters["busy_refusals"], counters["transfers_aborted"], counters["transfers_completed"]) == (1, 1, 1)


async def test_a_retransmitted_request_does_not_start_a_second_transfer(root: Path, probe: Probe):
    async with running_server(root) as server:
        await probe.send(rrq("boot.bin"), (HOST, server.port))
        await probe.send(rrq("boot.bin"), (HOST, server.port))
        first = await probe.receive()
        assert first is not None and decode_packet(first[0]).block == 1
        assert await probe.receive(timeout=0.3) is None
        counters = server.status()["counters"]
        assert (counters["transfers_started"], counters["duplicate_requests"]) == (1, 1)
        await probe.send(encode_error(ErrorCode.NOT_DEFINED, "done"), first[1])


async def test_pxe_style_tsize_probe_then_download(root: Path, probe: Probe, tmp_path: Path):
    async with running_server(root) as server:
        reply = await probe.exchange(rrq("boot.bin", tsize="0", blksize="1456"), (HOST, server.port))
        assert reply is not None
        assert decode_packet(reply[0]) == OptionAck({"tsize": "5000", "blksize": "1456"})
        await probe.send(encode_error(ErrorCode.OPTION_REFUSED, "tsize only"), reply[1])
        rc, text = await atftp(server.port, "boot.bin", tmp_path / "o", "blksize 1456")
        assert rc == 0, text
        counters = server.status()["counters"]
    assert (counters["transfers_aborted"], counters["transfers_completed"]) == (1, 1)


async def test_retransmits_on_timeout_then_gives_up_and_cleans_up(root: Path, probe: Probe):
    async with running_server(root) as server:
        reply = await probe.exchange(rrq("boot.bin", timeout="1"), (HOST, server.port))
        assert reply is not None and decode_packet(reply[0]) == OptionAck({"timeout": "1"})
        retransmitted = []
        while (late := await probe.receive(timeout=1.5)) is not None:
            retransmitted.append(decode_packet(late[0]))
        # Before the peer's first ACK only one resend (a spoofed source never ACKs: see FIRST_ACK_RETRIES),
        # then it gave up.
        assert retransmitted == [OptionAck({"timeout": "1"})] * 1
        await asyncio.sleep(1.0)  # the backed-off second deadline (t=3 s) ends it
        status = server.status()
    assert status["active_transfers"] == 0
    assert status["counters"]["transfers_failed"] == 1
    assert status["counters"]["retransmissions"] == 1


async def test_reply_comes_from_the_address_the_request_was_sent_to(root: Path, probe: Probe):
    # Bound to the wildcard address, the server must answer 127.0.0.2 from 127.0.0.2 (IP_PKTINFO);
    # PXE clients drop DATA from any other address.
    server = TftpServer(root=root, host="0.0.0.0", port=0)
    await server.start()
    try:
        reply = await probe.exchange(rrq("boot.bin"), ("127.0.0.2", server.port))
        assert reply is not None
        assert isinstance(decode_packet(reply[0]), Data)
        assert reply[1][0] == "127.0.0.2"
        await probe.send(encode_error(ErrorCode.NOT_DEFINED, "done"), reply[1])
    finally:
        await server.stop()


async def test_when_full_of_known_machines_another_known_machine_is_not_answered_until_a_slot_frees(
        root: Path, probe: Probe):
    """A boot storm of machines we know: the one that finds every slot taken by the others gets no answer (its
    ROM resends the RRQ, and then finds a slot); "server busy" would end its boot."""
    async with running_server(root, settings=TftpConfig(max_transfers=1), known=lambda address: True) as server:
        later = _probe_from("127.0.0.2")
        try:
            first = await probe.exchange(rrq("boot.bin"), (HOST, server.port))
            assert first is not None and decode_packet(first[0]).block == 1
            assert await later.exchange(rrq("boot.bin"), (HOST, server.port)) is None  # not told "busy"
            assert server.status()["active_transfers"] == 1  # nobody's transfer ended for it
            await probe.send(encode_error(ErrorCode.NOT_DEFINED, "enough"), first[1])
            await asyncio.sleep(0.05)
            resent = await later.exchange(rrq("boot.bin"), (HOST, server.port))
            assert resent is not None and decode_packet(resent[0]).block == 1
            counters = server.status()["counters"]
            assert counters["requests_deferred"] == 1 and counters.get("busy_refusals", 0) == 0
        finally:
            later.close()


def _probe_from(address: str) -> Probe:
    probe = Probe()
    probe.sock.close()
    probe.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    probe.sock.setblocking(False)
    probe.sock.bind((address, 0))
    return probe


async def test_when_full_a_known_client_takes_a_strangers_slot_and_a_stranger_gets_busy(root: Path, probe: Probe):
    asked: list[str] = []

    def known(address: str) -> bool:
        asked.append(address)
        return address == HOST

    async with running_server(root, settings=TftpConfig(max_transfers=1), known=known) as server:
        stranger, late = _probe_from("127.0.0.2"), _probe_from("127.0.0.3")
        try:
            first = await stranger.exchange(rrq("boot.bin"), (HOST, server.port))
            assert first is not None and decode_packet(first[0]).block == 1
            # Another stranger: busy, nobody's transfer ended for it.
            reply = await late.exchange(rrq("boot.bin"), (HOST, server.port))
            assert reply is not None and decode_packet(reply[0]) == Error(ErrorCode.NOT_DEFINED, "server busy")
            # The known machine: served; the stranger's transfer ends with "server busy".
            mine = await probe.exchange(rrq("boot.bin"), (HOST, server.port))
            assert mine is not None and decode_packet(mine[0]).block == 1
            ended = await stranger.receive()
            assert ended is not None and decode_packet(ended[0]) == Error(ErrorCode.NOT_DEFINED, "server busy")
            assert server.status()["active_transfers"] == 1
            counters = server.status()["counters"]
            assert counters["transfers_evicted"] == 1 and counters["busy_full"] == 1
        finally:
            stranger.close()
            late.close()
    # Asked only once the slots ran out: not for the first request; the late stranger, then the known
    # client and the transfer that made room for it.
    assert asked == ["127.0.0.3", HOST, "127.0.0.2"]
