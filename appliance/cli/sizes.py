"""Byte counts as people read them, for every CLI view (images, hardware, install progress)."""

from __future__ import annotations

UNITS = ("B", "KiB", "MiB", "GiB", "TiB")


def human_size(n: float | None) -> str:
    """'-' for unknown, whole bytes below 1 KiB, else one decimal in the largest binary unit up to TiB."""
    if n is None:
        return "-"
    size = float(n)
    for unit in UNITS[:-1]:
        if size < 1024:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} {UNITS[-1]}"
