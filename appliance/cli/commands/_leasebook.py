"""Shared by the lease commands: ask the running daemon, or run the same use case on a lease book loaded
from the state database when it is down."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

from appliance.cli.apiclient import ApiClient
from appliance.cli.commands._store import run as on_store
from appliance.config import Config
from appliance.daemon.dhcp_setup import offline_lease_model
from state.db import Connection
from state.leases import LeaseModel

T = TypeVar("T")


def run(cfg: Config, online: Callable[[ApiClient], T], offline: Callable[[LeaseModel, float], T],
        *, writes: bool) -> T:
    """`online` through the admin API; if the daemon is not running, `offline` on the database.

    Offline changes happen in one transaction; the daemon loads them when it starts.
    """
    def with_book(conn: Connection) -> T:
        now = time.time()
        return offline(offline_lease_model(cfg, conn, now), now)

    return on_store(cfg, online, with_book, writes=writes)


def when(ts: Any, now: float) -> str:
    """An absolute time as people read it next to 'now': 'in 59m', '3h ago'."""
    if ts is None:
        return "-"
    delta = float(ts) - now
    span = _span(abs(delta))
    return f"in {span}" if delta > 0 else f"{span} ago"


def _span(seconds: float) -> str:
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"
