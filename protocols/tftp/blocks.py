"""Cutting file content into TFTP DATA payloads, in octet or netascii mode.

Content arrives through a reader `read(offset, size) -> bytes` (or a bytes-like object), so the
transfer machine does no file I/O. A reader returns fewer than `size` bytes only at end of file.
A whole window is fetched with one read call, and payloads are memoryview slices of it.

Netascii is converted, not refused (RFC 764 as used by RFC 1350): LF -> CR LF, CR -> CR NUL.
The converted stream is longer than the file, so block boundaries do not map to file offsets by
arithmetic; each block start is remembered as (file offset, pending byte) and a resend from any
block not yet acknowledged replays exactly the same bytes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

Reader = Callable[[int, int], bytes | memoryview]


def reader_for(source: bytes | bytearray | memoryview | Reader) -> Reader:
    """Wrap in-memory content as a zero-copy reader; pass a callable through."""
    if callable(source):
        return source
    view = memoryview(source).cast("B")

    def read(offset: int, size: int) -> memoryview:
        return view[offset : offset + size]

    return read


def netascii_encode(data: bytes | memoryview) -> bytes:
    """Whole-buffer netascii conversion; CR first, so the CR added for LF gets no NUL."""
    return bytes(data).replace(b"\r", b"\r\0").replace(b"\n", b"\r\n")


class BlockSource(Protocol):
    def blocks(self, first: int, count: int) -> list[memoryview | bytes]:
        """Payloads of blocks first..first+count-1 (1-based, absolute); stops after the final
        (shorter than blksize, possibly empty) block."""
        ...


class OctetBlocks:
    """File blocks by arithmetic, read ahead in chunks: lock-step transfers make one read call
    per ~64 KiB instead of one per block."""

    __slots__ = ("_at", "_blksize", "_buffer", "_eof", "_read", "_readahead")

    def __init__(self, read: Reader, blksize: int, readahead: int = 64 * 1024) -> None:
        self._read = read
        self._blksize = blksize
        self._readahead = readahead
        self._at = 0  # file offset of _buffer[0]
        self._buffer = memoryview(b"")
        self._eof = False  # _buffer ends at end of file

    def blocks(self, first: int, count: int) -> list[memoryview | bytes]:
        bs = self._blksize
        start = (first - 1) * bs
        end = start + count * bs
        at, buffer = self._at, self._buffer
        if at <= start and end <= at + len(buffer):
            if count == 1:  # lock-step fast path: a full block straight from the buffer
                return [buffer[start - at : end - at]]
        elif not (at <= start and self._eof):
            size = max(end - start, self._readahead // bs * bs)
            buffer = memoryview(self._read(start, size))
            self._at, self._buffer, self._eof = start, buffer, len(buffer) < size
            at = start
        data = buffer[start - at : end - at]
        full = min(len(data) // bs, count)
        out: list[memoryview | bytes] = [data[i : i + bs] for i in range(0, full * bs, bs)]
        if full < count:
            out.append(data[full * bs :])  # the final block: shorter than bs, maybe empty
        return out


    def block_into(self, n: int, packet: bytearray) -> int:
        """Block `n`'s payload copied into `packet` from offset 4 (lock-step's per-block path: no list, no new
        bytes object); returns the payload's length. The same bytes `blocks(n, 1)` gives."""
        bs = self._blksize
        off = (n - 1) * bs - self._at
        buffer = self._buffer
        # Within the read-ahead (or past its end at end of file): a slice of it; else blocks() reads ahead.
        in_buffer = off >= 0 and (off + bs <= len(buffer) or self._eof)
        payload = buffer[off : off + bs] if in_buffer else self.blocks(n, 1)[0]
        size = len(payload)
        packet[4 : 4 + size] = payload
        return size


class NetasciiBlocks:
    __slots__ = ("_blksize", "_read", "_starts")

    def __init__(self, read: Reader, blksize: int) -> None:
        self._read = read
        self._blksize = blksize
        # block number -> (file offset, converted byte carried over from the previous block)
        self._starts: dict[int, tuple[int, bytes]] = {1: (0, b"")}

    def blocks(self, first: int, count: int) -> list[memoryview | bytes]:
        # Blocks before `first` are never asked for again (resends start after the last ACK).
        for stale in [n for n in self._starts if n < first]:
            del self._starts[stale]
        out: list[memoryview | bytes] = []
        for n in range(first, first + count):
            payload, next_start = self._convert(*self._starts[n])
            self._starts[n + 1] = next_start
            out.append(payload)
            if len(payload) < self._blksize:
                break
        return out

    def _convert(self, offset: int, pending: bytes) -> tuple[bytes, tuple[int, bytes]]:
        bs = self._blksize
        out = bytearray(pending)
        while len(out) < bs:
            need = bs - len(out)
            chunk = bytes(self._read(offset, need))  # each byte converts to 1 or 2: `need` is enough
            if not chunk:
                break
            converted = netascii_encode(chunk)
            if len(converted) > need:  # the last byte's expansion may straddle the boundary
                chunk = chunk[: _prefix_reaching(chunk, need)]
                converted = netascii_encode(chunk)
            out += converted
            offset += len(chunk)
        return bytes(out[:bs]), (offset, bytes(out[bs:]))


def _prefix_reaching(chunk: bytes, need: int) -> int:
    """Smallest k such that chunk[:k] converts to at least `need` bytes (binary search)."""
    lo, hi = 1, len(chunk)
    while lo < hi:
        mid = (lo + hi) // 2
        grown = mid + chunk.count(b"\r", 0, mid) + chunk.count(b"\n", 0, mid)
        if grown >= need:
            hi = mid
        else:
            lo = mid + 1
    return lo
