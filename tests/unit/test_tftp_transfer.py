"""The read-transfer machine, driven by hand: datagrams in, datagrams out, time as an argument."""

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocols.tftp import (
    Data,
    ErrorCode,
    OptionAck,
    Outcome,
    ReadRequest,
    ReadTransfer,
    TftpError,
    decode_packet,
    encode_ack,
    encode_error,
    netascii_encode,
)

T0 = 1000.0


def rrq(mode: str = "octet", **options: str) -> ReadRequest:
    return ReadRequest("file", mode, dict(options))


def data(datagrams: list[bytes]) -> list[tuple[int, bytes]]:
    out = []
    for datagram in datagrams:
        packet = decode_packet(datagram)
        assert isinstance(packet, Data), packet
        out.append((packet.block, packet.payload))
    return out


def blocks(datagrams: list[bytes]) -> list[int]:
    return [number for number, _ in data(datagrams)]


def ack(machine: ReadTransfer, block: int, now: float = T0) -> list[bytes]:
    return machine.receive(encode_ack(block), now)


# --- RFC 1350 basics ------------------------------------------------------------------------------


def test_without_options_data_1_comes_first_and_ack_completes():
    machine = ReadTransfer(rrq(), b"hello")
    assert data(machine.start(T0)) == [(1, b"hello")]
    assert ack(machine, 1) == []
    assert machine.outcome is Outcome.COMPLETED and machine.finished
    assert machine.bytes_transferred == 5
    assert machine.deadline is None


@pytest.mark.parametrize(
    "size, expected_lengths",
    [
        (0, [0]),
        (511, [511]),
        (512, [512, 0]),  # a multiple of blksize ends with an empty block
        (1024, [512, 512, 0]),
        (1025, [512, 512, 1]),
    ],
)
def test_block_lengths_and_final_short_block(size, expected_lengths):
    content = bytes(random.Random(size).randbytes(size))
    machine = ReadTransfer(rrq(), content)
    received, out = [], machine.start(T0)
    while out:
        ((number, payload),) = data(out)
        received.append(payload)
        out = ack(machine, number)
    assert [len(p) for p in received] == expected_lengths
    assert b"".join(received) == content
    assert machine.outcome is Outcome.COMPLETED
    assert machine.bytes_transferred == size


def test_duplicate_ack_is_ignored_no_sorcerers_apprentice():
    machine = ReadTransfer(rrq(), bytes(2048))
    machine.start(T0)
    assert blocks(ack(machine, 1)) == [2]
    assert ack(machine, 1) == []  # the duplicate would otherwise double every later block
    assert blocks(ack(machine, 2)) == [3]
    assert ack(machine, 1) == []  # older than the last ACK


def test_ack_for_a_block_not_sent_yet_is_ignored():
    machine = ReadTransfer(rrq(), bytes(4096))
    machine.start(T0)
    assert ack(machine, 5) == []
    assert blocks(ack(machine, 1)) == [2]


def test_garbage_and_non_ack_packets_on_the_transfer_are_ignored():
    machine = ReadTransfer(rrq(), bytes(1024))
    machine.start(T0)
    for junk in [b"", b"\x00", b"\x00\x09", b"\x00\x03\x00\x01abc", b"\x00\x01f\x00octet\x00"]:
        assert machine.receive(junk, T0) == []
    assert not machine.finished
    assert blocks(ack(machine, 1)) == [2]


def test_peer_error_ends_the_transfer():
    machine = ReadTransfer(rrq(tsize="0"), bytes(100))
    machine.start(T0)
    assert machine.receive(encode_error(ErrorCode.OPTION_REFUSED, "tsize probe done"), T0) == []
    assert machine.outcome is Outcome.PEER_ERROR
    assert machine.peer_error == "OPTION_REFUSED: tsize probe done"
    assert ack(machine, 0) == []


def test_unsupported_mode_is_refused_by_the_machine():
    with pytest.raises(TftpError):
        ReadTransfer(rrq("mail"), b"x")


# --- RFC 2347 option negotiation -------------------------------------------------------------------


def test_accepted_options_are_answered_with_oack_then_ack_0_starts_data():
    machine = ReadTransfer(rrq(blksize="1024", tsize="0"), bytes(3000))
    (oack,) = machine.start(T0)
    assert decode_packet(oack) == OptionAck({"blksize": "1024", "tsize": "3000"})
    assert machine.awaiting_first_ack
    assert data(ack(machine, 0)) == [(1, bytes(1024))]
    assert not machine.awaiting_first_ack


def test_options_sent_but_none_accepted_gives_plain_data_1():
    machine = ReadTransfer(rrq(blksize="abc", windowsize="0", foo="bar"), bytes(600))
    assert data(machine.start(T0)) == [(1, bytes(512))]


def test_blksize_8_transfer():
    content = b"0123456789abcdefXYZ"
    machine = ReadTransfer(rrq(blksize="8"), content)
    machine.start(T0)
    got = []
    out = ack(machine, 0)
    while out:
        ((number, payload),) = data(out)
        got.append(payload)
        out = ack(machine, number)
    assert got == [b"01234567", b"89abcdef", b"XYZ"]


# --- RFC 7440 windows --------------------------------------------------------------------------------


def test_whole_window_goes_out_at_once_and_last_block_ack_opens_the_next():
    machine = ReadTransfer(rrq(blksize="8", windowsize="4"), bytes(range(100)))
    machine.start(T0)
    assert blocks(ack(machine, 0)) == [1, 2, 3, 4]
    assert blocks(ack(machine, 4)) == [5, 6, 7, 8]


def test_ack_of_an_earlier_block_in_the_window_resends_from_there():
    content = bytes(range(100))
    machine = ReadTransfer(rrq(blksize="8", windowsize="4"), content)
    machine.start(T0)
    ack(machine, 0)
    assert data(ack(machine, 2)) == [(n, content[(n - 1) * 8 : n * 8]) for n in (3, 4, 5, 6)]
    assert ack(machine, 2) == []  # the same gap reported twice: wait for the timer


def test_window_stops_at_the_final_block():
    machine = ReadTransfer(rrq(blksize="8", windowsize="16"), bytes(20))
    machine.start(T0)
    assert [len(p) for _, p in data(ack(machine, 0))] == [8, 8, 4]
    assert ack(machine, 3) == []
    assert machine.outcome is Outcome.COMPLETED


def test_window_with_exact_multiple_sends_the_empty_final_block():
    machine = ReadTransfer(rrq(blksize="8", windowsize="8"), bytes(32))
    machine.start(T0)
    assert [len(p) for _, p in data(ack(machine, 0))] == [8, 8, 8, 8, 0]
    ack(machine, 5)
    assert machine.outcome is Outcome.COMPLETED


# --- rollover ------------------------------------------------------------------------------------------


def test_block_numbers_wrap_to_zero_after_65535_and_content_stays_in_order():
    blksize, count = 8, 65_540
    content = b"".join(n.to_bytes(8, "big") for n in range(count)) + b"tail"
    machine = ReadTransfer(rrq(blksize="8", windowsize="64"), content)
    machine.start(T0)
    wire_numbers, received, last = [], [], 0
    out = ack(machine, 0)
    while out:
        window = data(out)
        wire_numbers += [n for n, _ in window]
        received += [p for _, p in window]
        last = window[-1][0]
        out = ack(machine, last)
    assert machine.outcome is Outcome.COMPLETED
    assert b"".join(received) == content
    assert wire_numbers[65_534:65_538] == [65_535, 0, 1, 2]
    assert len(received) == count + 1 and received[-1] == b"tail"
    assert machine.bytes_transferred == len(content)
    assert blksize * count < len(content)


def test_after_rollover_an_ack_from_before_the_wrap_is_ignored():
    content = bytes(8 * 65_540)
    machine = ReadTransfer(rrq(blksize="8"), content)
    out = machine.start(T0)
    for n in range(1, 65_538):  # ACK up to absolute block 65537 (wire number 1)
        out = ack(machine, n & 0xFFFF)
    assert blocks(out) == [2]
    assert ack(machine, 65_535) == []  # stale, from before the wrap
    assert blocks(ack(machine, 2)) == [3]


# --- timeouts ----------------------------------------------------------------------------------------------


def test_retransmits_the_unacknowledged_window_when_the_deadline_passes():
    machine = ReadTransfer(rrq(blksize="8", windowsize="3"), bytes(range(64)), timeout=2.0)
    machine.start(T0)
    first = ack(machine, 0, T0)
    assert machine.deadline == T0 + 2.0
    assert machine.on_timeout(T0 + 1.9) == []
    assert machine.on_timeout(T0 + 2.0) == first
    assert machine.retransmissions == 1
    assert machine.deadline == T0 + 4.0


def test_oack_is_retransmitted_until_ack_0():
    machine = ReadTransfer(rrq(tsize="0"), b"abc")
    (oack,) = machine.start(T0)
    assert machine.on_timeout(T0 + 1.0) == [oack]
    assert data(ack(machine, 0, T0 + 1.5)) == [(1, b"abc")]


def test_client_timeout_option_sets_the_retransmission_interval():
    machine = ReadTransfer(rrq(timeout="7"), b"abc", timeout=1.0)
    machine.start(T0)
    assert machine.deadline == T0 + 7
    assert machine.on_timeout(T0 + 6.99) == []
    assert machine.on_timeout(T0 + 7) != []


def test_gives_up_after_max_retries_without_progress():
    machine = ReadTransfer(rrq(), bytes(2000), timeout=1.0, retries=3)
    machine.start(T0)
    now = T0
    for _ in range(3):
        now += 1.0
        assert blocks(machine.on_timeout(now)) == [1]
    now += 1.0
    assert machine.on_timeout(now) == []
    assert machine.outcome is Outcome.TIMED_OUT
    assert machine.deadline is None
    assert ack(machine, 1, now) == []


def test_progress_resets_the_retry_budget():
    machine = ReadTransfer(rrq(), bytes(5000), timeout=1.0, retries=1)
    machine.start(T0)
    assert machine.on_timeout(T0 + 1) != []
    ack(machine, 1, T0 + 1.5)
    assert machine.on_timeout(T0 + 2.5) != []  # one retry again, not given up
    assert not machine.finished


# --- netascii ---------------------------------------------------------------------------------------------------


NETASCII_TEXT = b"line one\nline two\r\nbare cr\r\n\n\r\rend\n" * 7 + b"\r"


@pytest.mark.parametrize("blksize", ["8", "9", "13", "512"])
def test_netascii_converts_lf_to_crlf_and_cr_to_crnul(blksize):
    machine = ReadTransfer(rrq("netascii", blksize=blksize), NETASCII_TEXT)
    machine.start(T0)
    received, out = [], ack(machine, 0)
    while out:
        ((number, payload),) = data(out)
        received.append(payload)
        out = ack(machine, number)
    assert b"".join(received) == netascii_encode(NETASCII_TEXT)
    assert netascii_encode(b"a\nb\rc\r\n") == b"a\r\nb\r\0c\r\0\r\n"
    assert all(len(p) == int(blksize) for p in received[:-1])


def test_netascii_resend_replays_the_same_bytes_across_a_straddled_boundary():
    machine = ReadTransfer(rrq("netascii", blksize="8", windowsize="4"), NETASCII_TEXT)
    machine.start(T0)
    first_window = data(ack(machine, 0))
    assert data(ack(machine, 1)) [:3] == first_window[1:]
    assert data(machine.on_timeout(T0 + 1))[:3] == first_window[1:]


def test_netascii_does_not_acknowledge_tsize():
    machine = ReadTransfer(rrq("netascii", tsize="0"), b"a\nb")
    assert data(machine.start(T0)) == [(1, b"a\r\nb")]


# --- the reader interface -----------------------------------------------------------------------------------------


def test_reader_is_asked_for_windows_not_the_whole_file():
    size, asked = 10 * 1024 * 1024, []

    def read(offset: int, length: int) -> bytes:
        asked.append(length)
        return bytes(min(length, max(0, size - offset)))

    machine = ReadTransfer(rrq(blksize="1468", windowsize="16", tsize="0"), read, size=size)
    assert decode_packet(machine.start(T0)[0]).options["tsize"] == str(size)
    out, last = ack(machine, 0), 0
    while out:
        last = data(out)[-1][0]
        out = ack(machine, last)
    assert machine.outcome is Outcome.COMPLETED
    assert machine.bytes_transferred == size
    assert max(asked) <= 128 * 1024
    windows = size // (1468 * 16) + 1
    assert len(asked) <= windows // 2  # one read serves several windows, never one per block


# --- a lossy RFC 7440 peer: every byte arrives, whatever is lost ---------------------------------


def _download(machine: ReadTransfer, windowsize: int, loss: float, seed: int) -> bytes:
    """A client that ACKs each full window, ACKs the last in-order block on a gap or a short
    block, and loses datagrams in both directions with probability `loss`."""
    rng, now, expected, received = random.Random(seed), T0, 1, []
    in_window = 0
    pending = machine.start(now)
    for _ in range(100_000):
        if machine.finished:
            break
        if not pending:
            now = machine.deadline or now
            pending = machine.on_timeout(now)
            continue
        replies = []
        arrived = [d for d in pending if rng.random() >= loss]
        if arrived and isinstance(decode_packet(arrived[0]), OptionAck):
            replies.append(0)
            arrived = []
        for number, payload in data(arrived):
            if number == expected & 0xFFFF:
                received.append(payload)
                expected += 1
                in_window += 1
                if len(payload) < machine.blksize or in_window == windowsize:
                    replies.append((expected - 1) & 0xFFFF)
                    in_window = 0
            else:
                replies.append((expected - 1) & 0xFFFF)  # a gap: report the last good block
                in_window = 0
                break
        pending = []
        for number in replies:
            if rng.random() >= loss:
                pending += machine.receive(encode_ack(number), now)
    assert machine.outcome is Outcome.COMPLETED
    return b"".join(received)


@settings(max_examples=60, deadline=None)
@given(
    size=st.integers(0, 6000),
    blksize=st.sampled_from([8, 64, 512]),
    windowsize=st.integers(1, 8),
    loss=st.sampled_from([0.0, 0.1, 0.3]),
    seed=st.integers(0, 2**32),
    netascii=st.booleans(),
)
def test_lossy_peer_receives_exactly_the_content(size, blksize, windowsize, loss, seed, netascii):
    content = random.Random(seed).randbytes(size)
    mode = "netascii" if netascii else "octet"
    options = {"blksize": str(blksize), "windowsize": str(windowsize)}
    machine = ReadTransfer(ReadRequest("f", mode, options), content, retries=1000)
    expected = netascii_encode(content) if netascii else content
    assert _download(machine, windowsize, loss, seed) == expected


# --- bounds against a peer that never answers (issue 14) --------------------------------------------------------


def test_before_the_first_ack_only_the_first_ack_retries_with_backoff():
    machine = ReadTransfer(rrq(), bytes(2000), timeout=1.0, retries=5, first_ack_retries=1, first_ack_backoff=2.0)
    assert blocks(machine.start(T0)) == [1]
    assert machine.deadline == T0 + 1
    assert blocks(machine.on_timeout(T0 + 1)) == [1]
    assert machine.deadline == T0 + 1 + 2  # backed off
    assert machine.on_timeout(T0 + 2.5) == []  # not yet
    assert machine.on_timeout(T0 + 3) == []
    assert machine.outcome is Outcome.TIMED_OUT
    assert machine.datagrams_sent == 2


def test_after_the_first_ack_the_full_retry_budget_applies():
    machine = ReadTransfer(rrq(), bytes(5000), timeout=1.0, retries=3, first_ack_retries=0, first_ack_backoff=2.0)
    machine.start(T0)
    ack(machine, 1, T0 + 0.1)
    now = T0 + 0.1
    for _ in range(3):
        now += 1.0  # no backoff once the peer has answered
        assert blocks(machine.on_timeout(now)) == [2]
    assert machine.on_timeout(now + 1.0) == [] and machine.outcome is Outcome.TIMED_OUT


def test_a_transfer_without_progress_ends_at_the_stall_limit_whatever_its_timeout_option():
    machine = ReadTransfer(rrq(timeout="255", tsize="0"), bytes(5000), timeout=1.0, retries=5, stall_timeout=30.0)
    assert machine.negotiated.timeout == 255  # max_timeout left at the RFC maximum here
    machine.start(T0)
    assert machine.deadline == T0 + 30  # the stall limit comes before the 255 s retransmission
    assert machine.on_timeout(T0 + 30) == []
    assert machine.outcome is Outcome.TIMED_OUT


def test_progress_moves_the_stall_limit():
    machine = ReadTransfer(rrq(), bytes(512 * 10), timeout=1.0, retries=100, stall_timeout=5.0)
    machine.start(T0)
    now = T0
    for block in range(1, 8):
        now += 4.0  # each ACK within the stall limit of the previous one
        assert blocks(ack(machine, block, now)) == [block + 1]
    assert not machine.finished


def test_a_repeated_request_repeats_the_first_answer_at_most_once_per_half_timeout():
    machine = ReadTransfer(rrq(), bytes(2000), timeout=2.0)
    machine.start(T0)
    assert machine.repeat_first(T0 + 0.5) == []
    assert blocks(machine.repeat_first(T0 + 1.0)) == [1]
    assert machine.repeat_first(T0 + 1.5) == []
    ack(machine, 1, T0 + 1.6)
    assert machine.repeat_first(T0 + 10) == []  # the peer answered: a late duplicate RRQ gets nothing


# --- the lock-step shortcut ------------------------------------------------------------------------

def _state(m: ReadTransfer) -> tuple[object, ...]:
    return (m._acked, m._sent, m._final, m._final_len, m._deadline, m._retries, m._last_send, m._progress_at,
            m.outcome, m.datagrams_sent, m.retransmissions, m.bytes_transferred, m.deadline)


@settings(max_examples=60, deadline=None)
@given(size=st.integers(0, 5000), blksize=st.sampled_from([None, "8", "512", "1468"]),
       seed=st.integers(0, 2**32 - 1), stall=st.sampled_from([None, 0.5, 30.0]), streamed=st.booleans())
def test_receive_lockstep_is_receive_in_one_call(size: int, blksize: str | None, seed: int,
                                                 stall: float | None, streamed: bool) -> None:
    """Fed the same datagrams (in-order ACKs, duplicates, stale and future ones, garbage, timeouts), the
    machine that tries receive_lockstep first says and becomes exactly what the one using receive() does,
    for content in memory and for content read through a reader (a file too big for the cache)."""
    rng = random.Random(seed)
    content = bytes(rng.randrange(256) for _ in range(size))
    options = {"blksize": blksize} if blksize else {}

    def read(offset: int, length: int) -> bytes:
        return content[offset:offset + length]

    source = read if streamed else content
    plain = ReadTransfer(rrq(**options), source, size=size, stall_timeout=stall)
    fast = ReadTransfer(rrq(**options), source, size=size, stall_timeout=stall)
    now = T0
    assert plain.start(now) == fast.start(now)
    shortcuts = 0
    for _ in range(400):
        if plain.finished:
            break
        now += rng.choice([0.001, 0.01, 0.3, 1.5])
        roll = rng.random()
        if roll < 0.05:
            assert plain.on_timeout(now) == fast.on_timeout(now)
            continue
        if roll < 0.8:
            datagram = encode_ack(plain._sent & 0xFFFF)
        elif roll < 0.9:
            datagram = encode_ack((plain._sent + rng.choice([-2, -1, 1, 2])) & 0xFFFF)
        else:
            datagram = rng.choice([b"", b"\x00\x04", b"\x00\x03\x00\x01", encode_error(ErrorCode.NOT_DEFINED, "x"),
                                   bytes(rng.randrange(256) for _ in range(6))])
        expected = plain.receive(datagram, now)
        one = fast.receive_lockstep(datagram, now)
        if one is None:
            got = fast.receive(datagram, now)
        else:
            shortcuts += 1
            got = [one]
        assert got == expected
        assert _state(fast) == _state(plain)

    assert shortcuts <= plain.datagrams_sent


def test_a_clean_lockstep_transfer_takes_the_shortcut_for_every_block_after_the_first() -> None:
    content = bytes(range(256)) * 20  # 5120 bytes: 10 full blocks of 512 and an empty last one
    m = ReadTransfer(rrq(), content)
    out = m.start(T0)
    received = data(out)
    while True:
        datagram = m.receive_lockstep(encode_ack(received[-1][0]), T0)
        if datagram is None:
            break
        received += data([datagram])
    assert [n for n, _ in received] == list(range(1, 12)) and received[-1][1] == b""
    assert ack(m, 11) == [] and m.outcome is Outcome.COMPLETED  # the final ACK: the long way
    assert b"".join(p for _, p in received) == content


def test_receive_lockstep_declines_windows_and_netascii() -> None:
    content = b"x" * 5000
    windowed = ReadTransfer(rrq(windowsize="4"), content)
    windowed.start(T0)
    assert windowed.receive_lockstep(encode_ack(0), T0) is None
    text = ReadTransfer(rrq("netascii"), b"a\nb" * 1000)
    text.start(T0)
    assert text.receive_lockstep(encode_ack(1), T0) is None
