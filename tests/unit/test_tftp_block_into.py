"""OctetBlocks.block_into (lock-step's in-place copy) gives exactly the payloads blocks(n, 1) gives."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from protocols.tftp.blocks import OctetBlocks


@settings(max_examples=200, deadline=None)
@given(size=st.integers(0, 6000), blksize=st.sampled_from([8, 512, 1468]), readahead=st.sampled_from([1, 700, 4096]),
       as_bytes=st.booleans(), order=st.lists(st.integers(1, 20), max_size=10))
def test_block_into_equals_blocks(size: int, blksize: int, readahead: int, as_bytes: bool, order: list[int]) -> None:
    content = bytes(i * 7 % 251 for i in range(size))
    reads: list[tuple[int, int]] = []

    def read(offset: int, length: int) -> bytes | memoryview:
        reads.append((offset, length))
        chunk = content[offset:offset + length]
        return chunk if as_bytes else memoryview(chunk)

    plain, inplace = OctetBlocks(read, blksize, readahead), OctetBlocks(read, blksize, readahead)
    packet = bytearray(b"\xee" * (4 + blksize))
    final = size // blksize + 1
    # In order, as lock-step asks, then resends of earlier blocks (after a timeout the window starts again).
    for n in [*range(1, final + 1), *(k for k in order if k <= final)]:
        want = bytes(plain.blocks(n, 1)[0])
        got = inplace.block_into(n, packet)
        assert bytes(packet[4:4 + got]) == want, n
    assert packet[:4] == b"\xee" * 4  # the header is the caller's
