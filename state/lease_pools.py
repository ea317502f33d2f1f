"""The lease book's pools, one per subnet: the structures its allocator (state/leases.py) searches for a free
address (a cursor over never-seen addresses, heaps of handed-back addresses and of lease expiries, the queue
of offer holds) and counts active leases in; the rules every set of pools must keep (no overlaps, the share
of a pool DECLINEs may quarantine)."""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network
from itertools import pairwise
from typing import Protocol

from state.lease_validators import LeaseError


class SubnetLike(Protocol):
    """What the model needs of a DHCP subnet (protocols' `Subnet` and `PoolSpec` both have it)."""

    @property
    def network(self) -> IPv4Network: ...
    @property
    def pool_first(self) -> IPv4Address: ...
    @property
    def pool_last(self) -> IPv4Address: ...
    @property
    def lease_time(self) -> int: ...


@dataclass(frozen=True, slots=True)
class PoolSpec:
    """A subnet and its dynamic range, for callers that do not have a protocols `Subnet` (the CLI)."""

    network: IPv4Network
    pool_first: IPv4Address
    pool_last: IPv4Address
    lease_time: int


# Not frozen (but hashable, and never changed after construction): a frozen dataclass's __init__ sets each
# field through object.__setattr__, 5x the cost of a plain one, and one of these is built for every packet.
@dataclass(slots=True, unsafe_hash=True)
class Hold:
    mac: str
    until: float


@dataclass(slots=True)
class Pool:
    network: IPv4Network
    first: int
    last: int
    cursor: int  # addresses from here to `last` have not been looked at since the pool was built
    returned: list[int] = field(default_factory=list)  # heap: handed-back addresses without a lease row
    # Leases counted as active in this pool (address -> expires) and a heap of their expiries: pool usage
    # (/metrics, /api/v1/pools) is len(live) after dropping what expired, not a pass over every lease.
    live: dict[int, float] = field(default_factory=dict)
    live_heap: list[tuple[float, int]] = field(default_factory=list)
    expired: list[tuple[float, int, str]] = field(default_factory=list)  # heap: (expires, ip, mac)
    holds: deque[tuple[float, int, str]] = field(default_factory=deque)  # (until, ip, mac), oldest offer first
    # The network as integers and as text, for the per-packet checks and lease rows.
    net: int = field(init=False)
    mask: int = field(init=False)
    text: str = field(init=False)

    def __post_init__(self) -> None:
        self.net = int(self.network.network_address)
        self.mask = int(self.network.netmask)
        self.text = str(self.network)

    @property
    def size(self) -> int:
        return self.last - self.first + 1

    def active_count(self, now: float) -> int:
        """Leases active in this pool at `now` (amortized: each expiry is popped once)."""
        heap, live = self.live_heap, self.live
        while heap and heap[0][0] <= now:
            expires, n = heapq.heappop(heap)
            if live.get(n) == expires:
                del live[n]
        return len(live)


def check_pools(subnets: Iterable[SubnetLike]) -> None:
    """LeaseError if two pools overlap (checked before a reload changes anything)."""
    ordered = sorted(subnets, key=lambda s: int(s.pool_first))
    for a, b in pairwise(ordered):
        if int(b.pool_first) <= int(a.pool_last):
            raise LeaseError(f"pools of {a.network} and {b.network} overlap")


def decline_cap(pool_size: int, max_share: float) -> int:
    """How many of a pool's addresses DECLINEs may hold in quarantine: the share, but at least one (a
    real conflict in a tiny pool is still honoured) and 0 when the share is 0 (declines never quarantine)."""
    if max_share <= 0:
        return 0
    return max(1, int(pool_size * max_share))
