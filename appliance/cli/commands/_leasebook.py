"""Shared by the lease commands: ask the running daemon, or work on the store when it is down."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from typing import Any, TypeVar

from appliance.cli.apiclient import ApiClient
from appliance.cli.commands._common import ask_daemon, offline_writer
from appliance.cli.exitcodes import CommandFailed
from appliance.config import Config
from appliance.daemon.dhcp_setup import offline_lease_model
from state.lease_rows import offline_transaction
from state.leases import LeaseModel
from state.store import open_offline

T = TypeVar("T")


def run(cfg: Config, online: Callable[[ApiClient], T], offline: Callable[[LeaseModel, float], T],
        *, writes: bool) -> T:
    """`online` through the admin API; if the daemon is not running, `offline` on the database.

    Offline changes happen in one transaction; the daemon loads them when it starts.
    """
    answered, result = ask_daemon(cfg, online, writes=writes)
    if answered:
        return result  # type: ignore[return-value]
    if not writes:
        return _offline(cfg, offline, writes=False)
    with offline_writer(cfg):
        return _offline(cfg, offline, writes=True)


def _offline(cfg: Config, offline: Callable[[LeaseModel, float], T], *, writes: bool) -> T:
    conn = open_offline(cfg.state_dir)
    try:
        now = time.time()
        model = offline_lease_model(cfg, conn, now)
        if not writes:
            return offline(model, now)
        with offline_transaction(conn):
            return offline(model, now)
    except sqlite3.Error as e:
        raise CommandFailed(f"state database: {e}") from None
    finally:
        conn.close()


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
