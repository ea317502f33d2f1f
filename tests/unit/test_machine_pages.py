"""MachineLog.page reads a page from the end of the log (kept in order of last sighting) instead of sorting
every machine per request; it must equal the sorted list's slice, with ties, exclusions and a clock that
stepped back."""

from __future__ import annotations

import random

from state.sightings import MachineLog


def test_a_page_equals_the_slice_of_the_sorted_list() -> None:
    rng = random.Random(15)
    log = MachineLog(lambda op: None, cap=1000)
    now = 1000.0
    macs = [f"52:54:00:00:{i >> 8:02x}:{i & 255:02x}" for i in range(300)]
    for step in range(3000):
        now += rng.choice((0.0, 0.0, 1.0, 5.0))  # many ties
        if step == 2000:
            now -= 50.0  # the clock steps back once
        log.seen(rng.choice(macs), now)
        if step % 97 == 0:
            exclude = set(rng.sample(macs, 40))
            ordered = [m for m in log.all() if m.mac not in exclude]
            for offset, limit in ((0, 10), (5, 50), (0, 1000), (250, 100)):
                assert log.page(offset, limit, exclude) == (ordered[offset:offset + limit], len(ordered)), step
            assert log.page(0, 20) == (log.all()[:20], len(log.all()))
