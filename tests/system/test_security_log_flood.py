"""Issue 24 hole 4: a DISCOVER flood against a full pool must not become a flood of log.

Once a pool is full, every DISCOVER from a new MAC takes back the oldest outstanding offer and said so
in one `offer-reclaimed` line: 49,097 lines (7.3 MB) in one flood minute. The flood here is spoofed
DISCOVERs from made-up MACs (tests/system/_floods.py, crafted with our codec) from a client namespace
against the real daemon; the log must hold a few such lines per interval and one `log-suppressed`
line counting the rest.
"""

from __future__ import annotations

import re
import time

import pytest

from lab.netns import Lab
from tests.system.test_security_floods import dhclient_fast, flood, raw, server_for

pytestmark = pytest.mark.system

INTERVAL = 10.0  # state.ratelimit.RateLimiter's default interval
BURST = 5  # ... and its lines per interval


def test_a_discover_flood_on_a_full_pool_logs_a_few_reclaims_and_a_count(lab: Lab) -> None:
    pair, server = server_for(lab, "")  # pool .100-.150: 51 addresses, offers held 30 s
    started = time.monotonic()
    sent = flood(pair, "discover", 3000)
    assert sent["sent"] > 2500, sent
    flooded = time.monotonic() - started

    def reclaims() -> list[str]:
        return [line for line in server.log().splitlines() if "event=offer-reclaimed" in line]

    lines = reclaims()
    windows = int(flooded // INTERVAL) + 2
    assert 1 <= len(lines) <= BURST * windows, (len(lines), lines[:3])
    assert "reason=pool-full" in lines[0]

    # The interval ends; the next DISCOVER (the pool is still full of held offers) brings the count.
    time.sleep(max(0.0, INTERVAL + 0.5 - (time.monotonic() - started)))
    raw(pair, [{"mac": "02:24:04:00:00:01"}])
    summaries = re.findall(r"event=log-suppressed key=offer-reclaimed suppressed=(\d+)", server.log())
    assert summaries, server.log()[-2000:]
    # Most of the flood's DISCOVERs reclaimed an offer: they are counted, not logged one by one.
    assert sum(int(n) for n in summaries) + len(lines) > 1000, (summaries, len(lines))
    assert len(reclaims()) <= BURST * (windows + 1)
    # A real machine is still served.
    dhclient_fast(pair)
