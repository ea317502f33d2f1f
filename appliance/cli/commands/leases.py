"""`imageserver leases`: the DHCP leases, from the running daemon or (when it is down) the database."""

from __future__ import annotations

import argparse
import time
from typing import Any

from appliance.cli.commands._common import (
    add_config_option,
    add_json_option,
    load,
    print_json,
    print_table,
)
from appliance.cli.commands._leasebook import run as via
from appliance.cli.commands._leasebook import when
from domain.leases import list_leases
from domain.views import view_json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "leases",
        help="list DHCP leases (dynamic addresses)",
        description="List the DHCP leases: address, MAC, host name the client sent, when the lease ends. "
                    "Only active leases unless --all, which adds expired and released ones (their addresses "
                    "go back to the same machine if nobody else took them). Works with the daemon running "
                    "(its live state) or stopped (the state database). Static addresses: "
                    "`imageserver reservations`.",
        epilog="examples:\n  imageserver leases\n  imageserver leases --all --json | jq '.[].ip'",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_config_option(p)
    add_json_option(p)
    p.add_argument("--all", action="store_true", help="include expired and released leases")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    cfg = load(args)
    query = "?all=1" if args.all else ""
    leases: list[dict[str, Any]] = via(
        cfg,
        lambda api: api.get(f"/api/v1/leases{query}")["leases"],
        lambda model, now: view_json(list_leases(model, now, include_expired=args.all))["leases"],
        writes=False,
    )
    if args.json:
        print_json(leases)
        return 0
    if not leases:
        print("no leases" if args.all else "no active leases (--all also lists ended ones)")
        return 0
    now = time.time()
    for row in leases:
        row["ends"] = ("ends " if row["active"] else "ended ") + when(row["expires"], now)
    print_table(leases, ["ip", "mac", "hostname", "ends", "subnet"], ["IP", "MAC", "HOSTNAME", "LEASE", "SUBNET"])
    return 0
