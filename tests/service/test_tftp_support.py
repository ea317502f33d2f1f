"""Shared pieces of the TFTP service tests: a running server, real clients, a raw UDP probe.

(It holds no tests; the test_ prefix keeps it inside the TFTP test file set.)
"""

from __future__ import annotations

import asyncio
import hashlib
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import tftpy

from services.tftp import TftpServer

HOST = "127.0.0.1"
CLIENT_TIMEOUT = 60.0


@asynccontextmanager
async def running_server(root: Path, **kwargs) -> AsyncIterator[TftpServer]:
    server = TftpServer(root=root, host=HOST, port=0, **kwargs)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


async def run(*args: str) -> tuple[int, str]:
    """Run a client process without blocking the loop the server runs on."""
    proc = await asyncio.create_subprocess_exec(
        *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), CLIENT_TIMEOUT)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    return proc.returncode or 0, out.decode(errors="replace")


async def atftp(port: int, name: str, out: Path, *options: str) -> tuple[int, str]:
    args = ["atftp", "-g", "-r", name, "-l", str(out)]
    for option in options:
        args += ["--option", option]
    return await run(*args, HOST, str(port))


async def curl(port: int, name: str, out: Path, blksize: int | None = None) -> tuple[int, str]:
    args = ["curl", "-sS", "-o", str(out)]
    if blksize is not None:
        args += ["--tftp-blksize", str(blksize)]
    return await run(*args, f"tftp://{HOST}:{port}/{name}")


async def tftp_hpa(port: int, name: str, out: Path, mode: str = "binary") -> tuple[int, str]:
    return await run("tftp", "-m", mode, HOST, str(port), "-c", "get", name, str(out))


async def tftpy_get(port: int, name: str, out: Path, options: dict[str, int] | None = None) -> None:
    def download() -> None:
        client = tftpy.TftpClient(HOST, port, options=options or {})
        client.download(name, str(out), timeout=5)

    await asyncio.to_thread(download)


class Probe:
    """A raw UDP peer for malformed input: send anything, see what comes back (or nothing)."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setblocking(False)
        self.sock.bind((HOST, 0))

    def close(self) -> None:
        self.sock.close()

    async def send(self, datagram: bytes, address: tuple[str, int]) -> None:
        await asyncio.get_running_loop().sock_sendto(self.sock, datagram, address)

    async def receive(self, timeout: float = 1.0) -> tuple[bytes, tuple[str, int]] | None:
        try:
            return await asyncio.wait_for(
                asyncio.get_running_loop().sock_recvfrom(self.sock, 65536), timeout
            )
        except TimeoutError:
            return None

    async def exchange(self, datagram: bytes, address: tuple[str, int], timeout: float = 1.0):
        await self.send(datagram, address)
        return await self.receive(timeout)
