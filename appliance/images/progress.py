"""rsync --info=progress2 parsing: one overall progress line, rewritten in place with '\\r'.

A line looks like ``  1,238,099  45%  146.38MB/s    0:00:10 (xfr#5, to-chk=12/700)``; with incremental
recursion ``ir-chk`` replaces ``to-chk`` and the total is still growing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_LINE = re.compile(r"^\s*(?P<bytes>[\d,.]+)\s+(?P<pct>\d+)%\s+(?P<rate>\S+/s)\s+(?P<eta>[\d:]+)"
                   r"(?:\s+\(xfr#(?P<xfr>\d+),\s*(?P<kind>to|ir)-chk=(?P<left>\d+)/(?P<total>\d+)\))?")


@dataclass(frozen=True, slots=True)
class Progress:
    bytes: int
    percent: int
    rate: str  # as rsync prints it, e.g. "146.38MB/s"
    eta: str
    transferred: int | None = None  # files transferred so far (xfr#)
    checked: int | None = None  # files looked at so far
    total: int | None = None  # files known so far (final once `final_total`)
    final_total: bool = False

    def render(self) -> str:
        files = ""
        if self.checked is not None and self.total is not None:
            files = f"  files {self.checked:,}/{self.total:,}{'' if self.final_total else '+'}"
        return f"{_human(self.bytes):>10}  {self.percent:3d}%  {self.rate:>12}{files}  eta {self.eta}"


def _human(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def parse_progress(line: str) -> Progress | None:
    m = _LINE.match(line)
    if not m:
        return None
    checked = total = None
    if m["total"] is not None:
        total = int(m["total"])
        checked = total - int(m["left"])
    return Progress(bytes=int(m["bytes"].replace(",", "").replace(".", "")), percent=int(m["pct"]),
                    rate=m["rate"], eta=m["eta"], transferred=int(m["xfr"]) if m["xfr"] else None,
                    checked=checked, total=total, final_total=m["kind"] == "to")


class LineSplitter:
    """Bytes from rsync's stdout -> complete lines, split on '\\r' (progress) and '\\n'."""

    def __init__(self) -> None:
        self._buf = b""

    def feed(self, data: bytes) -> list[str]:
        self._buf += data
        parts = re.split(rb"[\r\n]", self._buf)
        self._buf = parts.pop()
        return [p.decode(errors="replace") for p in parts if p.strip()]

    def flush(self) -> list[str]:
        rest, self._buf = self._buf, b""
        return [rest.decode(errors="replace")] if rest.strip() else []
