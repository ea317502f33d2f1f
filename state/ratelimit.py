"""Rate-limited logging of repeated events: a flood of one error must not become a flood of log.

Per key, the first `burst` events of each `interval` seconds are logged; the rest are only counted, and
one summary line (`event=log-suppressed key=... suppressed=N`) reports them when the interval is over
(at the key's next event, or at `flush`). Time is passed in. Keys are fixed strings chosen by the code
(an error kind), never a peer's address, and at most `max_keys` are kept.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

from state.eventlog import EventLog


@dataclass(slots=True)
class _Window:
    start: float
    logged: int = 0
    suppressed: int = 0


@dataclass(slots=True)
class RateLimiter:
    burst: int = 5
    interval: float = 10.0
    max_keys: int = 128
    _windows: OrderedDict[str, _Window] = field(default_factory=OrderedDict)

    def check(self, key: str, now: float) -> tuple[bool, int]:
        """(log this event?, events suppressed in the key's previous interval, to report now)."""
        window = self._windows.get(key)
        reported = 0
        if window is None or now - window.start >= self.interval or now < window.start:
            reported = window.suppressed if window is not None else 0
            window = _Window(now)
            self._windows[key] = window
            self._windows.move_to_end(key)
            while len(self._windows) > self.max_keys:
                self._windows.popitem(last=False)
        if window.logged < self.burst:
            window.logged += 1
            return True, reported
        window.suppressed += 1
        return False, reported

    def flush(self, now: float) -> list[tuple[str, int]]:
        """(key, suppressed) for every interval that is over and suppressed something; those are reset."""
        out = []
        for key, window in list(self._windows.items()):
            if now - window.start >= self.interval:
                if window.suppressed:
                    out.append((key, window.suppressed))
                del self._windows[key]
        return out


@dataclass(slots=True)
class LimitedLog:
    """An event log behind a RateLimiter: `log(key, now, level, event, **fields)` logs or counts."""

    logger: EventLog
    limiter: RateLimiter = field(default_factory=RateLimiter)

    def log(self, key: str, now: float, level: int, event: str, /, *, exc_info: BaseException | None = None,
            **fields: object) -> bool:
        allowed, suppressed = self.limiter.check(key, now)
        if suppressed:
            self._summary(key, suppressed)
        if allowed:
            self.logger.log(level, event, exc_info=exc_info, **fields)
        return allowed

    def flush(self, now: float) -> None:
        for key, suppressed in self.limiter.flush(now):
            self._summary(key, suppressed)

    def _summary(self, key: str, suppressed: int) -> None:
        self.logger.warning("log-suppressed", key=key, suppressed=suppressed, interval=f"{self.limiter.interval:g}s")
