"""What /metrics and /api/v1/pools report that comes from the model: pool usage, hosts by state, and
install outcomes and durations (kept incrementally by state.installstats, never recomputed per scrape)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from ipaddress import IPv4Address

from domain.sources import Sources
from state.hosts import HOST_STATES, host_state_counts
from state.installstats import InstallTally
from state.lease_pools import SubnetLike
from state.lease_rows import stored_addresses


@dataclass(frozen=True, slots=True)
class PoolUsage:
    subnet: str
    size: int
    active: int  # active leases inside the pool range
    reserved: int  # reservations inside the subnet (outside the pool by design)
    quarantined: int = 0  # pool addresses kept out of offers now (DECLINEd or answering a conflict probe)


@dataclass(frozen=True, slots=True)
class PoolList:
    """GET /api/v1/pools: one entry per configured pool."""

    pools: list[PoolUsage]


@dataclass(frozen=True, slots=True)
class ModelMetrics:
    host_states: dict[str, int]  # every state of HOST_STATES, 0 where none
    pools: list[PoolUsage]
    installs: InstallTally


def pool_usage(src: Sources, pools: Iterable[SubnetLike], now: float) -> list[PoolUsage]:
    """Per configured pool: its size, active leases in it, reservations in its subnet, quarantined addresses."""
    pools = list(pools)
    if src.leases is not None:
        counts = src.leases.pool_usage(pools, now)
        return [PoolUsage(str(p.network), int(p.pool_last) - int(p.pool_first) + 1, a, r, q)
                for p, (a, r, q) in zip(pools, counts, strict=True)]
    active, reserved, quarantined = stored_addresses(src.reader, now)
    out = []
    for p in pools:
        first, last = int(p.pool_first), int(p.pool_last)
        out.append(PoolUsage(str(p.network), last - first + 1, sum(1 for n in active if first <= n <= last),
                             sum(1 for n in reserved if IPv4Address(n) in p.network),
                             sum(1 for n in quarantined if first <= n <= last)))
    return out


def model_metrics(src: Sources, pools: Iterable[SubnetLike], tally: InstallTally, now: float) -> ModelMetrics:
    """The scrape's view of the model; `tally` (the daemon keeps one) takes in the events since the last one."""
    states = host_state_counts(src.reader)
    return ModelMetrics({s: states.get(s, 0) for s in sorted({*HOST_STATES, *states})}, pool_usage(src, pools, now),
                        tally.refresh(src.reader))
