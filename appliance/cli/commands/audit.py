"""`imageserver audit [--limit N] [--offset N] [--json]`: the audit log, newest first.

From the running daemon (GET /api/v1/audit, the admin role), else from the state database as last committed.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from appliance.cli.commands._common import (
    CommandFailed,
    add_config_option,
    add_json_option,
    ask_daemon,
    fail,
    load,
    print_json,
    print_table,
)
from domain.paging import MAX_LIMIT
from state import audit
from state.db import connect, db_path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("audit", help="the audit log: every change through the API or the offline CLI",
                       description="Who changed what, when, from where, and what came of it; newest first.")
    p.add_argument("--limit", type=int, default=50, help=f"entries to show (at most {MAX_LIMIT}; default 50)")
    p.add_argument("--offset", type=int, default=0, help="skip this many of the newest first")
    add_config_option(p)
    add_json_option(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    cfg = load(args)
    if not 1 <= args.limit <= MAX_LIMIT or args.offset < 0:
        return fail(f"--limit 1..{MAX_LIMIT}, --offset 0 or more")
    try:
        online, answer = ask_daemon(cfg, lambda api: api.get(f"/api/v1/audit?limit={args.limit}&offset={args.offset}"))
    except CommandFailed as e:
        return fail(str(e))
    if online:
        rows: list[dict[str, Any]] = answer["entries"]
    else:
        conn = connect(db_path(cfg.state_dir))
        try:
            entries, _ = audit.page(conn, args.limit, args.offset)
        finally:
            conn.close()
        rows = [{"id": e.id, "at": e.at, "who": e.who, "via": e.via, "peer": e.peer, "operation": e.operation,
                 "target": e.target, "fields": e.fields, "outcome": e.outcome} for e in entries]
    if getattr(args, "json", False):
        print_json(rows)
        return 0
    print_table(rows, ["at", "who", "via", "peer", "operation", "target", "outcome"],
                ["WHEN (UTC)", "WHO", "VIA", "FROM", "OPERATION", "TARGET", "OUTCOME"],
                {"at": lambda t: time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(t)),
                 "peer": lambda p: p or "-", "target": lambda t: t or "-"})
    return 0
