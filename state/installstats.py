"""Install outcomes and durations for /metrics, kept incrementally: each scrape reads only the install
events written since the previous one (events are never updated or deleted), so a scrape costs the same
with ten events or ten million.

An attempt starts at its first report after a reinstall or the previous attempt's end (the "reinstall"
event itself is the operator's request, not the machine's start) and ends at done or failed.
"""

from __future__ import annotations

import sqlite3
from bisect import bisect_left
from collections.abc import Iterable
from dataclasses import dataclass, field

from state.installs import events_after

# Seconds from an installer's first report to "done": a small image takes a minute, a big one half an hour.
DURATION_BUCKETS = (30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0)
BATCH = 10_000  # rows read per query while catching up (the first scrape of a big store reads them in slices)


@dataclass(slots=True)
class InstallTally:
    """Finished installs by outcome, and a histogram of successful install durations, up to event `last_id`."""

    buckets: tuple[float, ...] = DURATION_BUCKETS
    last_id: int = 0
    outcomes: dict[str, int] = field(default_factory=lambda: {"done": 0, "failed": 0})
    counts: list[int] = field(default_factory=list)  # per bucket (not cumulative), then one for +Inf
    total: float = 0.0  # sum of the durations
    _start: dict[str, float | None] = field(default_factory=dict)  # host -> start of its running attempt

    def __post_init__(self) -> None:
        if not self.counts:
            self.counts = [0] * (len(self.buckets) + 1)

    def add(self, events: Iterable[tuple[str, float, str]]) -> None:
        """(host, time, stage) rows in id order."""
        start = self._start
        for host, time, stage in events:
            if stage == "reinstall":
                start[host] = None
            elif stage in ("done", "failed"):
                self.outcomes[stage] = self.outcomes.get(stage, 0) + 1
                begun = start.pop(host, None)
                if stage == "done" and begun is not None:
                    seconds = max(0.0, time - begun)
                    self.counts[bisect_left(self.buckets, seconds)] += 1
                    self.total += seconds
            elif start.get(host) is None:
                start[host] = time

    def add_all(self, events: Iterable[tuple[str, float, str]]) -> InstallTally:
        self.add(events)
        return self

    def refresh(self, conn: sqlite3.Connection) -> InstallTally:
        """Take in the events written since the last refresh."""
        while True:
            rows = events_after(conn, self.last_id, BATCH)
            if not rows:
                return self
            self.add((r[1], float(r[3]), r[4]) for r in rows)
            self.last_id = int(rows[-1][0])
            if len(rows) < BATCH:
                return self

    @property
    def observed(self) -> int:
        return sum(self.counts)
