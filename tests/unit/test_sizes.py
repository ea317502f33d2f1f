"""appliance/cli/sizes.human_size: the one byte-size formatter of the CLI views."""

from __future__ import annotations

import pytest

from appliance.cli.sizes import human_size

KiB, MiB, GiB, TiB = 1 << 10, 1 << 20, 1 << 30, 1 << 40


@pytest.mark.parametrize(("n", "text"), [
    (None, "-"),
    (0, "0 B"),
    (1023, "1023 B"),
    (KiB, "1.0 KiB"),
    (1536, "1.5 KiB"),
    (MiB - 1, "1024.0 KiB"),  # one decimal: just under a unit rounds up in the smaller one
    (MiB, "1.0 MiB"),
    (4 * MiB, "4.0 MiB"),
    (GiB - 1, "1024.0 MiB"),
    (GiB, "1.0 GiB"),
    (TiB - 1, "1024.0 GiB"),
    (TiB, "1.0 TiB"),
    (3 * TiB // 2, "1.5 TiB"),
    (2048 * TiB, "2048.0 TiB"),  # TiB is the largest unit
    (12.0, "12 B"),
])
def test_human_size_binary_units_from_bytes_to_tib(n: float | None, text: str) -> None:
    assert human_size(n) == text
