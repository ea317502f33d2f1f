"""The periodic power poll: every [power] poll seconds, `status` on every host with a BMC (its own or its
profile's), at most [power] concurrency BMCs at a time, each within [power] timeout; each answer (or the BMC's
error) becomes the host's last known power state (state/bmcs.py power_states), shown by the host view."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Any

from domain.power import pollable_hosts, power_targets
from domain.settings import PowerConfig
from services.power.fleet import DriverFactory, driver_for, run_power
from state.bmcs import record_power_op
from state.eventlog import EventLog
from state.store import Store

log = EventLog("imageserver.power")


class PowerPoller:
    name = "power-poll"

    def __init__(self, store: Store, settings: Callable[[], PowerConfig], *, clock: Callable[[], float],
                 factory: DriverFactory = driver_for) -> None:
        self.store = store
        self.settings = settings  # read at every round: SIGHUP's [power] applies at the next
        self.clock = clock
        self.factory = factory
        self.rounds = 0
        self.last_round: dict[str, Any] = {}
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="power-poll")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def status(self) -> dict[str, Any]:
        # A state like every other service's (status shows each one's; the package VM test asks for running).
        state = "running" if self._task is not None and not self._task.done() else "stopped"
        return {"state": state, "rounds": self.rounds, "interval": self.settings().poll, **self.last_round}

    async def _loop(self) -> None:
        while True:
            interval = self.settings().poll
            await asyncio.sleep(interval if interval > 0 else 60)  # 0: off (asked again a minute later)
            if self.settings().poll > 0:
                try:
                    await self.poll_once()
                except Exception:  # a store hiccup must not end the poll for good
                    log.exception("power-poll-failed")

    async def poll_once(self) -> None:
        """One round over every host with a BMC."""
        s = self.settings()
        names = pollable_hosts(self.store.reader)
        start = time.monotonic()
        if names:
            targets, refused = power_targets(self.store.reader, names)
            results = await run_power("status", names, targets, refused, concurrency=s.concurrency,
                                      timeout=s.timeout, factory=self.factory)
            await self.store.journal.run(record_power_op(
                [(r.host, r.power, r.error) for r in results if r.host in targets], self.clock()))
            failed = sum(1 for r in results if not r.ok)
        else:
            failed = 0
        self.rounds += 1
        self.last_round = {"hosts": len(names), "failed": failed, "seconds": round(time.monotonic() - start, 3)}
        log.info("power-poll", hosts=len(names), failed=failed, seconds=self.last_round["seconds"])
