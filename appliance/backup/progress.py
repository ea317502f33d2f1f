"""One progress line on stderr, rewritten in place, when stderr is a terminal (nothing in logs or pipes)."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import TextIO

from appliance.images.progress import _human as human


@dataclass
class Progress:
    stream: TextIO = field(default_factory=lambda: sys.stderr)
    enabled: bool | None = None  # None: when the stream is a terminal
    phase: str = ""
    total: int = 0  # bytes expected in this phase, 0 when unknown
    done: int = 0
    files: int = 0
    _last: float = 0.0
    _width: int = 0

    def __post_init__(self) -> None:
        if self.enabled is None:
            self.enabled = self.stream.isatty()

    def start(self, phase: str, total: int = 0) -> None:
        self.phase, self.total, self.done, self.files = phase, total, 0, 0
        self._draw(force=True)

    def bytes(self, n: int) -> None:
        self.done += n
        self._draw()

    def file(self, *_: object) -> None:
        self.files += 1
        self._draw()

    def end(self) -> None:
        if self.enabled and self._width:
            self._draw(force=True)
            self.stream.write("\n")
            self.stream.flush()
            self._width = 0

    def _draw(self, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if not force and now - self._last < 0.1:
            return
        self._last = now
        pct = f"{min(100, self.done * 100 // self.total):3d}%  " if self.total else ""
        line = f"{self.phase}: {pct}{human(self.done)}" + (f" of {human(self.total)}" if self.total else "")
        if self.files:
            line += f"  {self.files:,} files"
        self.stream.write("\r" + line.ljust(self._width))
        self.stream.flush()
        self._width = len(line)
