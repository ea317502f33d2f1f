"""A satellite reads its primary's host list (GET /satellite/v1/config: `hosts`, `hosts_complete`): the shape
is checked by msgspec (domain/bodies.parse_body: an error names the index and key, `"hosts[3].ip": ...`) and
each host's state against the hosts table's states, so state/mirror.py applies checked rows only. The
document is a machine's: keys this satellite does not know (a newer primary's) are ignored."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from typing import Annotated, Any

import msgspec

from domain.bodies import parse_body
from domain.errors import Invalid
from state import mirror
from state.db import Connection
from state.hosts import HOST_STATES

MAX_HOSTS = 100_000  # taken from one config document


@dataclass(frozen=True, slots=True)
class ListedHost:
    """One host as the primary lists it (domain/satellites.MirroredHost is what it sends)."""

    name: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    state: str
    mac: str | None = None
    ip: IPv4Address | None = None
    image: str | None = None
    version: int | None = None
    updated: float | None = None  # None: not said (an older primary), taken as 0


@dataclass(frozen=True, slots=True)
class HostList:
    hosts: Annotated[list[ListedHost], msgspec.Meta(max_length=MAX_HOSTS)] = field(default_factory=list)
    hosts_complete: bool = False  # every host is listed: a mirrored host left out is removed


def mirror_hosts_op(document: Mapping[str, Any], now: float) -> Callable[[Connection], tuple[int, int, int, int]]:
    """The op applying the primary's host list (state/mirror.mirror_hosts_op); Invalid (nothing applied) names
    the first host and key that is not what a primary sends."""
    listed = parse_body(HostList, document, unknown="ignore")
    for i, h in enumerate(listed.hosts):
        if h.state not in HOST_STATES:
            raise Invalid(f'"hosts[{i}].state" {h.state!r} is not a host state')
    rows = [mirror.PrimaryHost(h.name, h.mac, h.ip, h.image, h.version, h.state, h.updated or 0.0)
            for h in listed.hosts]
    return mirror.mirror_hosts_op(rows, now, complete=listed.hosts_complete)
