"""The read-transfer state machine: datagrams in, datagrams out, time passed in.

One instance per RRQ. The caller sends what start()/receive()/on_timeout() return to the peer,
calls on_timeout(now) once `deadline` has passed, and drops the instance when `finished`.

Block numbers are absolute internally (1, 2, ... beyond 65,535) and wrap to 0 on the wire.
The OACK counts as block 0. Windows follow RFC 7440: a window of `windowsize` blocks goes out
at once; an ACK for the window's last block opens the next window; an ACK for an earlier block
of the window resends from the block after it; an ACK for an already acknowledged block is
ignored (no Sorcerer's Apprentice). A timeout resends the unacknowledged window (or the OACK);
after `retries` timeouts without progress the transfer gives up.

Bounds against a peer that never answers (a spoofed source makes us a traffic amplifier, a patient
one holds transfer slots): before the first ACK only `first_ack_retries` resends, each waiting
`first_ack_backoff` times as long as the one before; and `stall_timeout` seconds without progress
end any transfer, whatever timeout option it negotiated.
"""

from __future__ import annotations

import struct
from enum import StrEnum

from protocols.tftp.blocks import BlockSource, NetasciiBlocks, OctetBlocks, Reader, reader_for
from protocols.tftp.options import MAX_BLKSIZE, Negotiated, negotiate
from protocols.tftp.packets import (
    Error,
    ErrorCode,
    Opcode,
    ReadRequest,
    TftpError,
    decode_packet,
    encode_oack,
)

_DATA_HEADER = struct.Struct("!HH")
# Plain ints on the per-block path: enum attribute lookups cost more than the rest of an ACK.
_OP_DATA = int(Opcode.DATA)
_OP_ACK = int(Opcode.ACK)
SUPPORTED_MODES = frozenset({"octet", "netascii"})


class Outcome(StrEnum):
    RUNNING = "running"
    COMPLETED = "completed"
    TIMED_OUT = "timeout"
    PEER_ERROR = "peer-error"  # the client sent ERROR (PXE tsize probes end this way, code 8)


_RUNNING = Outcome.RUNNING


class ReadTransfer:
    """Serve one file to one peer. `size` is needed only to answer tsize (octet mode)."""

    __slots__ = (
        "_acked",
        "_backoff",
        "_block_into",
        "_blocks",
        "_deadline",
        "_final",
        "_final_len",
        "_first_ack_retries",
        "_last_send",
        "_lockstep_wait",
        "_oack",
        "_packet",
        "_progress_at",
        "_retries",
        "_sent",
        "_stall_timeout",
        "_timeout",
        "blksize",
        "datagrams_sent",
        "max_retries",
        "negotiated",
        "outcome",
        "peer_error",
        "retransmissions",
        "windowsize",
    )

    def __init__(
        self,
        request: ReadRequest,
        source: bytes | bytearray | memoryview | Reader,
        *,
        size: int | None = None,
        timeout: float = 1.0,
        retries: int = 5,
        max_blksize: int = MAX_BLKSIZE,
        max_windowsize: int = 64,
        max_timeout: int = 255,
        first_ack_retries: int | None = None,
        first_ack_backoff: float = 1.0,
        stall_timeout: float | None = None,
    ) -> None:
        if request.mode not in SUPPORTED_MODES:
            raise TftpError(f"transfer mode {request.mode!r} not supported")
        netascii = request.mode == "netascii"
        if size is None and not callable(source):
            size = len(memoryview(source).cast("B"))
        # The netascii size differs from the file size and is unknown until converted: no tsize.
        self.negotiated: Negotiated = negotiate(
            request.options,
            size=None if netascii else size,
            max_blksize=max_blksize,
            max_windowsize=max_windowsize,
            max_timeout=max_timeout,
        )
        self.blksize = self.negotiated.blksize
        self.windowsize = self.negotiated.windowsize
        self._timeout = float(self.negotiated.timeout or timeout)
        self.max_retries = retries
        self._first_ack_retries = retries if first_ack_retries is None else min(first_ack_retries, retries)
        self._stall_timeout = stall_timeout
        self._backoff = first_ack_backoff
        self._progress_at = 0.0
        self._last_send = 0.0
        read = reader_for(source)
        self._blocks: BlockSource = (NetasciiBlocks if netascii else OctetBlocks)(read, self.blksize)
        self._oack = encode_oack(self.negotiated.acknowledged) if self.negotiated.acknowledged else None
        self._acked = self._initial_acked  # highest acknowledged absolute block (-1: OACK pending)
        self._sent = 0  # highest absolute block sent in the current window
        self._final: int | None = None  # absolute number of the last block, once read
        self._final_len = 0
        self._deadline: float | None = None
        # Lock-step's steady state (receive_lockstep): the DATA built in place block after block in one buffer,
        # the retransmit wait fixed while nothing is lost.
        lockstep = self.windowsize == 1 and not netascii
        self._packet = bytearray(4 + self.blksize) if lockstep else None
        blocks = self._blocks
        self._block_into = blocks.block_into if isinstance(blocks, OctetBlocks) else None
        self._lockstep_wait = self._timeout if stall_timeout is None else min(self._timeout, stall_timeout)
        self._retries = 0
        self.outcome = Outcome.RUNNING
        self.peer_error: str | None = None
        self.datagrams_sent = 0
        self.retransmissions = 0

    # --- what the caller reads ---------------------------------------------------------------

    @property
    def finished(self) -> bool:
        return self.outcome is not _RUNNING

    @property
    def deadline(self) -> float | None:
        """When on_timeout() must be called next; None once finished."""
        return None if self.finished else self._deadline

    @property
    def awaiting_first_ack(self) -> bool:
        """True until the peer acknowledges anything: a repeated RRQ then is a duplicate."""
        return self._acked == self._initial_acked and not self.finished

    @property
    def _initial_acked(self) -> int:
        return -1 if self._oack is not None else 0

    @property
    def bytes_transferred(self) -> int:
        """File bytes the peer has acknowledged (converted bytes in netascii mode)."""
        if self._acked <= 0:
            return 0
        if self._final is not None and self._acked >= self._final:
            return (self._final - 1) * self.blksize + self._final_len
        return self._acked * self.blksize

    # --- events ------------------------------------------------------------------------------

    def start(self, now: float) -> list[bytes]:
        """The first datagrams: the OACK, or the first window of DATA."""
        self._progress_at = now
        if self._oack is not None:
            self._schedule(now)
            self.datagrams_sent += 1
            return [self._oack]
        return self._send_window(1, now)

    def repeat_first(self, now: float) -> list[bytes]:
        """The peer repeated its request before any ACK (its first answer was lost): the first
        datagram again, at most once per half timeout so a stream of requests is no multiplier."""
        if not self.awaiting_first_ack or now - self._last_send < self._timeout / 2:
            return []
        self.retransmissions += 1
        if self._oack is not None:
            self._last_send = now
            self.datagrams_sent += 1
            return [self._oack]
        return self._send_window(1, now, count=1)

    def receive(self, datagram: bytes, now: float) -> list[bytes]:
        """A datagram from the peer's TID. Malformed or out-of-place packets are ignored."""
        if self.outcome is not _RUNNING:
            return []
        # Fast path: an ACK is the one packet of the transfer's steady state.
        if len(datagram) >= 4 and datagram[1] == _OP_ACK and datagram[0] == 0:
            return self._on_ack((datagram[2] << 8) | datagram[3], now)
        try:
            packet = decode_packet(datagram)
        except TftpError:
            return []
        if isinstance(packet, Error):
            self.outcome = Outcome.PEER_ERROR
            self.peer_error = f"{_error_name(packet.code)}: {packet.message}"
        return []

    def receive_lockstep(self, datagram: bytes, now: float) -> bytearray | memoryview | None:
        """Lock-step's steady state in one call: the ACK of the block in flight gives the next DATA.

        Exactly what receive() would do for it (same datagram, same state after), without its calls and
        lists; None for anything else (another packet, a window, the last block, a resend), and then
        the caller hands the datagram to receive(). The DATA is one buffer of the transfer's, rewritten in
        place by the next call (header packed into it, the block copied after it): send it before then.
        """
        sent = self._sent
        packet = self._packet
        # The datagram compared whole with the ACK of the block in flight (the cheapest test in CPython); an ACK
        # with trailing bytes takes the long way, with the same result.
        if (packet is None or self._final is not None or self._retries or sent <= self._acked
                or self.outcome is not _RUNNING or datagram != _DATA_HEADER.pack(_OP_ACK, sent & 0xFFFF)):
            return None
        block = sent + 1
        block_into = self._block_into
        assert block_into is not None  # lock-step's buffer exists only in octet mode
        size = block_into(block, packet)
        _DATA_HEADER.pack_into(packet, 0, _OP_DATA, block & 0xFFFF)
        self._acked = sent
        self._sent = block
        self._progress_at = self._last_send = now
        self._deadline = now + self._lockstep_wait  # = min(now + timeout, now + stall), as _schedule computes
        self.datagrams_sent += 1
        if size < self.blksize:
            self._final = block
            self._final_len = size
            return memoryview(packet)[: 4 + size]
        return packet

    def on_timeout(self, now: float) -> list[bytes]:
        """Retransmit what is unacknowledged if the deadline passed; give up after max_retries."""
        if self.finished or self._deadline is None or now < self._deadline:
            return []
        if self._stall_timeout is not None and now - self._progress_at >= self._stall_timeout:
            self.outcome = Outcome.TIMED_OUT
            return []
        self._retries += 1
        if self._retries > (self._first_ack_retries if self.awaiting_first_ack else self.max_retries):
            self.outcome = Outcome.TIMED_OUT
            return []
        self.retransmissions += 1
        if self._acked < 0:
            assert self._oack is not None
            self._schedule(now)
            self.datagrams_sent += 1
            return [self._oack]
        return self._send_window(self._acked + 1, now)

    # --- internals ---------------------------------------------------------------------------

    def _on_ack(self, block: int, now: float) -> list[bytes]:
        # The ACK can only name a block in [acked, sent]; that span is at most 65,535 wide,
        # so the 16-bit number maps to exactly one absolute block.
        delta = (block - self._acked) & 0xFFFF
        if delta == 0:
            return []  # duplicate of the last ACK: answering it would double the traffic
        absolute = self._acked + delta
        if absolute > self._sent:
            return []  # an ACK older than the last one (wrapped); nothing to do
        self._acked = absolute
        self._retries = 0
        self._progress_at = now
        if self._final is not None and absolute >= self._final:
            self.outcome = Outcome.COMPLETED
            return []
        return self._send_window(absolute + 1, now)

    def _schedule(self, now: float) -> None:
        """The next deadline: a retransmission (backed off before the first ACK), or the stall limit."""
        # Progress resets the retries, and backoff ** 0 is 1: the per-block case skips the first-ACK check.
        wait = self._timeout if not self._retries else (
            self._timeout * (self._backoff ** self._retries if self.awaiting_first_ack else 1))
        deadline = now + wait
        stall = self._stall_timeout
        if stall is not None and self._progress_at + stall < deadline:
            deadline = self._progress_at + stall
        self._deadline = deadline
        self._last_send = now

    def _send_window(self, first: int, now: float, count: int = 0) -> list[bytes]:
        count = count or self.windowsize
        final = self._final
        if final is not None and final - first + 1 < count:
            count = final - first + 1
        payloads = self._blocks.blocks(first, count)
        if len(payloads) == 1:  # lock-step: skip the comprehension
            out = [_DATA_HEADER.pack(_OP_DATA, first & 0xFFFF) + payloads[0]]
        else:
            pack = _DATA_HEADER.pack
            out = [pack(_OP_DATA, (first + i) & 0xFFFF) + p for i, p in enumerate(payloads)]
        last = first + len(payloads) - 1
        tail = len(payloads[-1])
        if tail < self.blksize:
            self._final = last
            self._final_len = tail
        if last > self._sent:
            self._sent = last
        self._schedule(now)
        self.datagrams_sent += len(out)
        return out


def _error_name(code: int) -> str:
    try:
        return ErrorCode(code).name
    except ValueError:
        return str(code)
