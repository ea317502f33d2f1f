"""One power action on many hosts, for `imageserver power` and `hosts reinstall --power-cycle`: through the
daemon's POST /api/v1/power, or with the daemon down by the same drivers here, on the BMCs the state
database names."""

from __future__ import annotations

import asyncio
import dataclasses
import math
import time
from typing import Any

from appliance.cli.apiclient import ApiClient
from appliance.cli.commands._common import CommandFailed, ask_daemon, offline_writer, print_json, print_table
from appliance.config import Config
from domain.power import power_targets
from domain.views import view_json
from services.power.fleet import run_power
from state.bmcs import record_power_op
from state.lease_rows import offline_transaction
from state.store import open_offline


def power_call(cfg: Config, names: list[str], action: str) -> list[dict[str, Any]]:
    """Per host its result: {"host", "ok", "power"?, "error"?, "seconds"}."""
    settings = cfg.power
    # the daemon answers when the last host is done: every round of `concurrency` BMCs may take `timeout`
    wait = settings.timeout * math.ceil(len(names) / settings.concurrency) + 30

    def online(api: ApiClient) -> list[dict[str, Any]]:
        answer = dataclasses.replace(api, timeout=wait).post("/api/v1/power", {"hosts": names, "action": action})
        return list(answer["results"])

    answered, results = ask_daemon(cfg, online)
    if answered:
        return results or []
    conn = open_offline(cfg.state_dir)
    try:
        targets, refused = power_targets(conn, names)
    finally:
        conn.close()
    done = asyncio.run(run_power(action, names, targets, refused, concurrency=settings.concurrency,
                                 timeout=settings.timeout))
    try:  # the last power state, when nobody else writes the database now
        with offline_writer(cfg):
            conn = open_offline(cfg.state_dir)
            try:
                with offline_transaction(conn):
                    record_power_op([(r.host, r.power, r.error) for r in done if r.host in targets],
                                    time.time())(conn)
            finally:
                conn.close()
    except CommandFailed:
        pass
    return [view_json(r) for r in done]


def detail(r: dict[str, Any]) -> str:
    return r.get("error") or ""


def print_results(results: list[dict[str, Any]], *, as_json: bool) -> int:
    if as_json:
        print_json(results)
    else:
        print_table([{**r, "result": "ok" if r["ok"] else "FAILED", "detail": detail(r),
                      "seconds": f"{r.get('seconds') or 0:.1f}"} for r in results],
                    ["host", "result", "power", "seconds", "detail"], headers=["HOST", "RESULT", "POWER", "SECONDS",
                                                                              "DETAIL"])
    return 0 if all(r["ok"] for r in results) else 1
