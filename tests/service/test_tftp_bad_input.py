"""Malformed and hostile input: the server answers ERROR or nothing, and keeps serving."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from protocols.tftp import (
    Data,
    Error,
    ErrorCode,
    OptionAck,
    ReadRequest,
    WriteRequest,
    decode_packet,
    encode_ack,
    encode_request,
)
from services.tftp import TftpServer
from tests.service.test_tftp_support import HOST, Probe, atftp, running_server

SECRET = b"root:x:0:0:secret outside the tftp root\n"


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    (root / "pxelinux.0").write_bytes(os.urandom(3000))
    (root / "sub" / "x").write_bytes(b"inside")
    (tmp_path / "x").write_bytes(SECRET)  # what "sub/../../x" would reach
    (tmp_path / "secret").write_bytes(SECRET)
    (root / "escape").symlink_to(tmp_path / "secret")
    (root / "escape-dir").symlink_to(tmp_path)
    (root / "inside-link").symlink_to(root / "sub" / "x")
    os.mkfifo(root / "fifo")
    return root


@pytest.fixture
async def server(root: Path):
    async with running_server(root) as server:
        yield server


@pytest.fixture
def probe():
    probe = Probe()
    yield probe
    probe.close()


def rrq(name: str, **options: str) -> bytes:
    return encode_request(ReadRequest(name, "octet", options))


async def assert_still_serving(server: TftpServer, root: Path, tmp_path: Path) -> None:
    out = tmp_path / "after.bin"
    rc, text = await atftp(server.port, "pxelinux.0", out, "blksize 1468")
    assert rc == 0, text
    assert out.read_bytes() == (root / "pxelinux.0").read_bytes()
    assert server.status()["state"] == "running"


async def error_code(probe: Probe, datagram: bytes, port: int) -> int | None:
    """The ERROR code answered to `datagram`, or None if the server stayed silent."""
    reply = await probe.exchange(datagram, (HOST, port), timeout=0.5)
    if reply is None:
        return None
    packet = decode_packet(reply[0])
    assert isinstance(packet, Error), packet
    return packet.code


ILLEGAL, ACCESS, NOT_FOUND = ErrorCode.ILLEGAL_OPERATION, ErrorCode.ACCESS_VIOLATION, ErrorCode.FILE_NOT_FOUND


@pytest.mark.parametrize(
    "datagram, expected",
    [
        (b"", ILLEGAL),
        (b"\x00", ILLEGAL),
        (b"\x01", ILLEGAL),
        (b"\x00\x07whatever", ILLEGAL),  # unknown opcode
        (b"\xff\xff\x00", ILLEGAL),
        (b"\x00\x01pxelinux.0\x00octet\x00blksize\x00", ILLEGAL),  # odd option count
        (b"\x00\x01pxelinux.0\x00octet\x00a\x001\x00b\x00", ILLEGAL),
        (b"\x00\x01pxelinux.0\x00octet", ILLEGAL),  # no terminating NUL
        (b"\x00\x01pxelinux.0\x00mail\x00", ILLEGAL),
        (b"\x00\x01a\x00b\x00octet\x00", ILLEGAL),  # a NUL inside the name shifts every field
        (encode_ack(1), ILLEGAL),  # an ACK to port 69
        (encode_request(WriteRequest("upload.bin", "octet", {})), ACCESS),
        (rrq("x" * 300), ACCESS),
        (rrq("../etc/passwd"), ACCESS),
        (rrq("sub/../../x"), ACCESS),
        (rrq("..\\..\\x"), ACCESS),
        (rrq("sub\\x"), ACCESS),
        (rrq("//etc/passwd"), ACCESS),
        (rrq("escape"), ACCESS),  # symlink out of the root
        (rrq("escape-dir/secret"), ACCESS),
        (rrq("/etc/passwd"), NOT_FOUND),  # <root>/etc/passwd, which does not exist
        (rrq("sub"), NOT_FOUND),  # a directory
        (rrq("fifo"), NOT_FOUND),  # opened without blocking, refused as not a regular file
        (rrq("missing"), NOT_FOUND),
        (b"\x00\x05\x00\x00no reply to an error\x00", None),
    ],
)
async def test_bad_requests_get_an_error_or_nothing(server, root, tmp_path, probe, datagram, expected):
    assert await error_code(probe, datagram, server.port) == expected
    await assert_still_serving(server, root, tmp_path)


async def test_traversal_never_returns_content_from_outside(server, probe):
    names = ["../x", "/../x", "sub/../../x", "escape", "escape-dir/x", "/escape", "./../secret"]
    for name in names:
        reply = await probe.exchange(rrq(name), (HOST, server.port), timeout=0.5)
        assert reply is not None
        assert SECRET not in reply[0]
        assert isinstance(decode_packet(reply[0]), Error), name


async def test_symlink_inside_the_root_is_served(server, probe):
    reply = await probe.exchange(rrq("inside-link"), (HOST, server.port))
    assert reply is not None
    assert decode_packet(reply[0]) == Data(1, b"inside")


@pytest.mark.parametrize(
    "options, expected_oack",
    [
        ({"blksize": "abc"}, None),
        ({"windowsize": "0"}, None),
        ({"blksize": "7"}, None),
        ({"blksize": "abc", "tsize": "0"}, {"tsize": "3000"}),
        ({"windowsize": "0", "blksize": "1024"}, {"blksize": "1024"}),
    ],
)
async def test_bad_option_values_are_ignored(server, probe, options, expected_oack):
    reply = await probe.exchange(rrq("pxelinux.0", **options), (HOST, server.port))
    assert reply is not None
    packet = decode_packet(reply[0])
    if expected_oack is None:
        assert isinstance(packet, Data) and packet.block == 1 and len(packet.payload) == 512
    else:
        assert packet == OptionAck(expected_oack)
    await probe.send(b"\x00\x05\x00\x00done\x00", reply[1])  # end the transfer politely


async def test_foreign_tid_gets_unknown_transfer_id_and_the_transfer_goes_on(server, root, probe):
    content = (root / "pxelinux.0").read_bytes()
    reply = await probe.exchange(rrq("pxelinux.0"), (HOST, server.port))
    assert reply is not None
    first, tid = reply
    assert decode_packet(first) == Data(1, content[:512])
    stranger = Probe()
    try:
        answer = await stranger.exchange(encode_ack(1), tid)
        assert answer is not None
        assert decode_packet(answer[0]).code == ErrorCode.UNKNOWN_TID
        assert await stranger.exchange(b"\x00", tid, timeout=0.3) is not None  # garbage: same answer
        assert await stranger.exchange(b"\x00\x05\x00\x05x\x00", tid, timeout=0.3) is None  # never to ERROR
    finally:
        stranger.close()
    # The real peer's transfer is unaffected.
    received = [first[4:]]
    block = 1
    while len(received[-1]) == 512:
        reply = await probe.exchange(encode_ack(block), tid)
        assert reply is not None and reply[1] == tid
        packet = decode_packet(reply[0])
        assert isinstance(packet, Data) and packet.block == block + 1
        received.append(packet.payload)
        block += 1
    await probe.send(encode_ack(block), tid)
    assert b"".join(received) == content
    assert server.status()["counters"]["unknown_tid"] == 3


async def test_garbage_on_a_transfer_socket_is_ignored(server, root, probe):
    reply = await probe.exchange(rrq("pxelinux.0"), (HOST, server.port))
    assert reply is not None
    _, tid = reply
    for junk in [b"", b"\x00", b"\x00\x09junk", b"\x00\x03\x00\x01data?", rrq("pxelinux.0")]:
        await probe.send(junk, tid)
    # Nothing answers the junk; at most the retransmission timer resends DATA 1.
    while (late := await probe.receive(timeout=0.3)) is not None:
        assert decode_packet(late[0]).block == 1
    reply = await probe.exchange(encode_ack(1), tid)
    assert reply is not None and decode_packet(reply[0]) == Data(2, (root / "pxelinux.0").read_bytes()[512:1024])
    await probe.send(b"\x00\x05\x00\x00bye\x00", tid)


async def test_random_datagrams_never_kill_the_server(server, root, tmp_path, probe):
    rng = random.Random(2347)
    reply = await probe.exchange(rrq("pxelinux.0", blksize="1024"), (HOST, server.port))
    assert reply is not None
    tid = reply[1]
    for _ in range(300):
        datagram = rng.randbytes(rng.choice([0, 1, 2, 3, 4, 5, 20, 600]))
        if rng.random() < 0.5:
            datagram = rng.choice([b"\x00\x01", b"\x00\x02", b"\x00\x04", b"\x00\x06"]) + datagram
        await probe.send(datagram, (HOST, server.port) if rng.random() < 0.6 else tid)
    await assert_still_serving(server, root, tmp_path)
    assert server.status()["counters"].get("internal_errors", 0) == 0


async def test_a_failing_dynamic_callback_costs_one_request_not_the_server(root, tmp_path, probe):
    def dynamic(name: str, peer: tuple[str, int]) -> bytes | None:
        if name == "boom":
            raise RuntimeError("state unavailable")
        if name == "wrong-type":
            return "a str, not bytes"  # type: ignore[return-value]
        return None

    async with running_server(root, dynamic=dynamic) as server:
        for name in ("boom", "wrong-type"):
            reply = await probe.exchange(rrq(name), (HOST, server.port))
            assert reply is not None
            assert decode_packet(reply[0]) == Error(ErrorCode.NOT_DEFINED, "internal error")
        await assert_still_serving(server, root, tmp_path)
        assert server.status()["active_transfers"] == 0
