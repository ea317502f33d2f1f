"""Pool usage is counted incrementally (state.leases: per-pool live counts and an expiry heap); it must equal
a plain count over every lease after any sequence of offers, commits, renewals, releases, declines,
reservations and expiry, and after the pools are rebuilt (SIGHUP)."""

from __future__ import annotations

import random
from pathlib import Path

from domain.leases import reserve
from state.db import connect
from state.leases import LeaseModel
from tests.unit.test_leases import OTHER, POOL, T0, mac


def slow_count(model: LeaseModel, first: int, last: int, now: float) -> int:
    return sum(1 for lease in model.leases(now) if first <= int(lease.ip) <= last)


def test_incremental_pool_usage_equals_a_full_count(tmp_path: Path) -> None:
    conn = connect(tmp_path / "s.db")
    model = LeaseModel.offline(conn, [POOL, OTHER], now=T0, offer_hold=30, decline_probation=600)
    rng = random.Random(15)
    now = T0
    counts: set[int] = set()
    for step in range(600):
        now += rng.choice((0.0, 1.0, 30.0, 200.0))
        who = mac(rng.randrange(40))
        pool = rng.choice((POOL, OTHER))
        action = rng.random()
        current = model.lease(who)
        if action < 0.6:
            offered = model.offer(who, pool, None, now)
            if offered is not None:
                model.commit(who, offered, pool, now, None, None)
        elif action < 0.75 and current is not None:
            model.release(who, current.ip, now)
        elif action < 0.8 and current is not None:
            model.decline(who, current.ip, now)
        elif action < 0.85 and current is not None and current.active(now):
            reserve(model, who, current.ip, now)
        elif action < 0.9:
            model.remove_reservation(who)
        if step % 150 == 149:
            model.set_subnets([POOL, OTHER])
        usage = model.pool_usage([POOL, OTHER], now)
        for spec, (active, _reserved, _quarantined) in zip((POOL, OTHER), usage, strict=True):
            assert active == slow_count(model, int(spec.pool_first), int(spec.pool_last), now), step
            counts.add(active)
    assert len(counts) > 3  # the pools filled and emptied (expiry, release): the counts were exercised
