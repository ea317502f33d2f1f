"""Short mutation-fuzzing campaigns per protocol (the long ones: python3 -m tests.fuzz.campaign)."""

from __future__ import annotations

import os

import pytest

from tests.fuzz.campaign import PROTOCOLS, mutate, run_campaign

# IMAGESERVER_FUZZ_INPUTS overrides the count (e.g. 1000000 for a long run under pytest).
COUNT = int(os.environ.get("IMAGESERVER_FUZZ_INPUTS", "15000"))


@pytest.mark.parametrize("protocol", sorted(PROTOCOLS))
def test_no_input_crashes_the_protocol(protocol: str) -> None:
    result = run_campaign(protocol, COUNT, seed=7)
    assert result.inputs == COUNT
    assert result.crashes == [], result.crashes[:3]


def test_the_harness_catches_a_crash() -> None:
    """A target that breaks on some inputs must be reported, or a green campaign means nothing."""
    import random

    from tests.fuzz import campaign

    def brittle(data: bytes) -> None:
        if len(data) < 10:
            raise IndexError("short")

    original = campaign.PROTOCOLS["tftp"]
    campaign.PROTOCOLS["tftp"] = campaign.Protocol("tftp", original.seeds, lambda: brittle)
    try:
        result = run_campaign("tftp", 2000, seed=3, max_crashes=2)
    finally:
        campaign.PROTOCOLS["tftp"] = original
    assert len(result.crashes) == 2 and "IndexError" in result.crashes[0][0]
    rng = random.Random(1)
    assert any(mutate(b"abcdef", rng, [b"abcdef"]) != b"abcdef" for _ in range(10))
