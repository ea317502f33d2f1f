"""Shared by commands whose use case is one journal operation: ask the running daemon, or run the same
operation on the state database when it is down (a write under the state directory's lock, in one transaction)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from appliance.cli.apiclient import ApiClient
from appliance.cli.commands._common import ask_daemon, offline_writer
from appliance.cli.exitcodes import CommandFailed
from appliance.config import Config
from state.db import Connection, StoreFailure
from state.lease_rows import offline_transaction
from state.store import open_offline

T = TypeVar("T")


def run(cfg: Config, online: Callable[[ApiClient], T], offline: Callable[[Connection], T], *, writes: bool) -> T:
    """`online` through the admin API; if the daemon is not running, `offline` on the database. A domain
    error raised offline rolls the transaction back and escapes, as the API's refusal does online."""
    answered, result = ask_daemon(cfg, online, writes=writes)
    if answered:
        return result  # type: ignore[return-value]
    if not writes:
        return _offline(cfg, offline, writes=False)
    with offline_writer(cfg):
        return _offline(cfg, offline, writes=True)


def _offline(cfg: Config, offline: Callable[[Connection], Any], *, writes: bool) -> Any:
    conn = open_offline(cfg.state_dir)
    try:
        if not writes:
            return offline(conn)
        with offline_transaction(conn):
            return offline(conn)
    except StoreFailure as e:
        raise CommandFailed(f"state database: {e}") from None
    finally:
        conn.close()
