"""Attacker side of tests/system/test_security_limits.py, run inside the test's namespace.

`python -m tests.system._flood MODE ...` prints one JSON line per phase (flushed), so the test can act
while the attack is held:
  tcp        COUNT idle TCP connections from SOURCES source addresses; reports how many the server
             keeps open, then how long until it has closed them all (or --hold runs out).
  tftp-hold  COUNT RRQs (with options) from SOURCES addresses, one socket each, never ACKed; reports the
             first answer to each, then when the server's last retransmission came.
  amplify    one RRQ, never ACKed; reports every byte the server sent back.
  http-stall COUNT connections from SOURCES addresses, each with PIPELINE GETs of --name sent at once and
             never read (a tiny receive window); reports how many the server keeps open, then how long
             until it has closed them all (or --hold runs out).
"""

from __future__ import annotations

import argparse
import json
import resource
import select
import socket
import struct
import sys
import time

ERRNO_OK = 0
TCP_ESTABLISHED = 1  # tcp_info.tcpi_state


def emit(**fields: object) -> None:
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


def raise_nofile() -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def sources(base: str, count: int, first: int = 1) -> list[str]:
    return [f"{base}.{first + i}" for i in range(count)]


def still_open(sock: socket.socket) -> bool:
    try:
        return sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) != b""
    except BlockingIOError:
        return True
    except OSError:
        return False


def tcp(args: argparse.Namespace) -> None:
    raise_nofile()
    addrs = sources(args.base, args.sources)
    socks: list[socket.socket] = []
    for i in range(args.count):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind((addrs[i % len(addrs)], 0))
        sock.setblocking(False)
        sock.connect_ex((args.host, args.port))
        socks.append(sock)
        if (i + 1) % args.batch == 0:
            time.sleep(args.pause)  # paced like a patient attacker: every connection is really accepted
    deadline = time.monotonic() + 10
    poller = select.poll()  # select() stops at descriptor 1024
    for sock in socks:
        poller.register(sock, select.POLLOUT)
    pending = len(socks)
    while pending and time.monotonic() < deadline:
        for fd, _ in poller.poll(500):
            poller.unregister(fd)
            pending -= 1
    connected = sum(1 for s in socks if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == ERRNO_OK)
    time.sleep(args.settle)
    started = time.monotonic()
    emit(event="held", connected=connected, open=sum(still_open(s) for s in socks))
    while time.monotonic() - started < args.hold:
        open_now = sum(still_open(s) for s in socks)
        if open_now == 0:
            break
        time.sleep(0.2)
    emit(event="done", open=sum(still_open(s) for s in socks), seconds=round(time.monotonic() - started, 2))


def established(sock: socket.socket) -> bool:
    """The connection is still up (TCP_INFO state ESTABLISHED): unread data in it does not count as open."""
    try:
        return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)[0] == TCP_ESTABLISHED
    except OSError:
        return False


def http_stall(args: argparse.Namespace) -> None:
    raise_nofile()
    addrs = sources(args.base, args.sources, args.first)
    request = f"GET /boot/files/{args.name} HTTP/1.1\r\nHost: x\r\n\r\n".encode() * args.pipeline
    socks: list[socket.socket] = []
    for i in range(args.count):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect: the window stays tiny
        sock.bind((addrs[i % len(addrs)], 0))
        sock.settimeout(5)
        try:
            sock.connect((args.host, args.port))
            sock.setblocking(False)
            sock.send(request)
        except OSError:
            pass  # refused or reset by the gate: it still counts as not open
        socks.append(sock)
    time.sleep(args.settle)
    started = time.monotonic()
    emit(event="held", open=sum(established(s) for s in socks))
    while time.monotonic() - started < args.hold:
        if not any(established(s) for s in socks):
            break
        time.sleep(0.2)
    emit(event="done", open=sum(established(s) for s in socks), seconds=round(time.monotonic() - started, 2))


def rrq(name: str, options: list[str]) -> bytes:
    body = name.encode() + b"\0octet\0"
    for option in options:
        key, _, value = option.partition("=")
        body += key.encode() + b"\0" + value.encode() + b"\0"
    return struct.pack("!H", 1) + body


def describe(datagram: bytes) -> dict[str, object]:
    opcode = struct.unpack("!H", datagram[:2])[0]
    if opcode == 6:
        parts = datagram[2:].split(b"\0")[:-1]
        return {"kind": "oack", "options": {parts[i].decode(): parts[i + 1].decode()
                                            for i in range(0, len(parts) - 1, 2)}}
    if opcode == 5:
        return {"kind": "error", "message": datagram[4:].rstrip(b"\0").decode(errors="replace")}
    if opcode == 3:
        return {"kind": "data"}
    return {"kind": f"opcode-{opcode}"}


def tftp_hold(args: argparse.Namespace) -> None:
    raise_nofile()
    addrs = sources(args.base, args.sources, args.first)
    request = rrq(args.name, args.option)
    socks = []
    for i in range(args.count):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind((addrs[i % len(addrs)], 0))
        sock.setblocking(False)
        sock.sendto(request, (args.host, args.port))
        socks.append(sock)
    sent_at = time.monotonic()
    first: dict[int, dict[str, object]] = {}
    last_packet = 0.0
    reported = False
    while time.monotonic() - sent_at < args.hold:
        ready, _, _ = select.select(socks, [], [], 0.1)
        for sock in ready:
            try:
                data, _ = sock.recvfrom(70000)
            except OSError:
                continue
            last_packet = time.monotonic() - sent_at
            first.setdefault(sock.fileno(), describe(data))
        if not reported and time.monotonic() - sent_at >= 1.0:
            emit(event="answered", **summary(first.values()))
            reported = True
    emit(event="done", **summary(first.values()), last_packet_after=round(last_packet, 2))


def summary(answers: object) -> dict[str, object]:
    kinds: dict[str, int] = {}
    errors: dict[str, int] = {}
    timeouts: set[str] = set()
    for answer in answers:  # type: ignore[attr-defined]
        kinds[answer["kind"]] = kinds.get(answer["kind"], 0) + 1
        if answer["kind"] == "error":
            errors[answer["message"]] = errors.get(answer["message"], 0) + 1
        if answer["kind"] == "oack" and "timeout" in answer["options"]:
            timeouts.add(answer["options"]["timeout"])
    return {"kinds": kinds, "errors": errors, "oack_timeouts": sorted(timeouts)}


def amplify(args: argparse.Namespace) -> None:
    request = rrq(args.name, args.option)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((args.base + ".1", 0))
    sock.sendto(request, (args.host, args.port))
    started = time.monotonic()
    received = datagrams = 0
    last = 0.0
    while time.monotonic() - started < args.hold:
        ready, _, _ = select.select([sock], [], [], 0.2)
        if ready:
            data, _ = sock.recvfrom(70000)
            received += len(data)
            datagrams += 1
            last = time.monotonic() - started
    emit(event="done", sent=len(request), received=received, datagrams=datagrams,
         ratio=round(received / len(request), 1), last_packet_after=round(last, 2))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=("tcp", "tftp-hold", "amplify", "http-stall"))
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--count", type=int, default=1)
    parser.add_argument("--sources", type=int, default=1)
    parser.add_argument("--base", default="127.0.1")
    parser.add_argument("--first", type=int, default=1)  # the first source is BASE.FIRST
    parser.add_argument("--hold", type=float, default=10.0)
    parser.add_argument("--settle", type=float, default=0.5)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--pause", type=float, default=0.05)
    parser.add_argument("--name", default="undionly.kpxe")
    parser.add_argument("--option", action="append", default=[])
    parser.add_argument("--pipeline", type=int, default=32)
    args = parser.parse_args()
    {"tcp": tcp, "tftp-hold": tftp_hold, "amplify": amplify, "http-stall": http_stall}[args.mode](args)


if __name__ == "__main__":
    main()
