"""Shared by the host commands (addclients, hosts set/rm, machines assign): ask the running daemon's admin
API, or run the same use case (domain.hostadmin) on the state database when it is down, over a HostBook
(the store port) with an offline lease book."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from appliance.cli.apiclient import ApiClient
from appliance.cli.commands._common import ask_daemon, offline_writer
from appliance.cli.exitcodes import CommandFailed
from appliance.config import Config
from appliance.daemon.dhcp_setup import offline_lease_model, subnets
from appliance.images.assignable import image_problem_rule
from domain.hostadmin import writing
from domain.hostbook import HostBook
from state.db import Connection, StoreFailure
from state.hosts import Op
from state.lease_rows import offline_transaction
from state.store import open_offline

T = TypeVar("T")


def offline_book(cfg: Config, conn: Connection, now: float) -> HostBook:
    return HostBook(conn, offline_lease_model(cfg, conn, now), pools=subnets(cfg), auto_static=cfg.dhcp.auto_static,
                    image_problem=image_problem_rule(conn, cfg.state_dir))


def run(cfg: Config, online: Callable[[ApiClient], T],
        offline: Callable[[HostBook, float], tuple[T, list[Op]]], what: str = "host change") -> T:
    """`online` through the admin API; if the daemon is not running, `offline` on the database (one
    transaction: the host rows it returns are written with the reservations it made, or nothing is)."""
    answered, result = ask_daemon(cfg, online, writes=True)
    if answered:
        return result  # type: ignore[return-value]
    with offline_writer(cfg):
        return _offline(cfg, offline, what)


def _offline(cfg: Config, offline: Callable[[HostBook, float], tuple[T, list[Op]]], what: str) -> T:
    conn = open_offline(cfg.state_dir)
    try:
        now = time.time()
        with offline_transaction(conn):
            result, ops = offline(offline_book(cfg, conn, now), now)  # a DomainError: refused, nothing written
            with writing(what):
                for op in ops:
                    op(conn)
        return result
    except StoreFailure as e:
        raise CommandFailed(f"state database: {e}") from None
    finally:
        conn.close()

