"""`imageserver satellites add NAME | list | remove NAME`: the primary's satellites and their tokens."""

from __future__ import annotations

import argparse
import time

from appliance.cli.commands._common import (
    add_config_option,
    add_json_option,
    ask_daemon,
    load,
    offline_writer,
    print_json,
    print_table,
)
from domain import satellites as satellite_cases
from state import satellites
from state.db import connect, db_path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "satellites", help="satellites of this primary: add (prints the token once), list, remove",
        description="A satellite is another imageserver (another rack or subnet) that mirrors this one's "
                    "image versions and hosts and reports its installs back. `add NAME` prints its token "
                    "once (only a hash is kept): put it in the satellite's <state_dir>/satellite.token and "
                    "set [satellite] primary there.")
    add_config_option(p)
    verbs = p.add_subparsers(dest="verb", metavar="VERB", required=True)
    add = verbs.add_parser("add", help="name a new satellite and print its token")
    add.add_argument("name")
    add_config_option(add)
    ls = verbs.add_parser("list", help="the satellites: last contact, versions, backlog")
    add_config_option(ls)
    add_json_option(ls)
    rm = verbs.add_parser("remove", help="forget a satellite (its token stops working at once)")
    rm.add_argument("name")
    add_config_option(rm)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    cfg = load(args)
    if args.verb == "add":
        # Through the running daemon (its journal is the one writer); offline only with the state dir's lock.
        online, answer = ask_daemon(cfg, lambda api: api.post("/api/v1/satellites", {"name": args.name}),
                                    writes=True)
        if online:
            print(answer["token"])
            return 0
    elif args.verb == "remove":
        online, _ = ask_daemon(cfg, lambda api: api.delete(f"/api/v1/satellites/{args.name}"), writes=True)
        if online:
            return 0
    if args.verb in ("add", "remove"):  # the same use cases as the API's (domain errors: exit 2, 3 or 4)
        with offline_writer(cfg):
            conn = connect(db_path(cfg.state_dir))
            try:
                with conn:
                    if args.verb == "add":
                        print(satellite_cases.add_op(args.name, time.time())(conn))
                    else:
                        satellite_cases.remove_op(args.name)(conn)
            finally:
                conn.close()
        return 0
    conn = connect(db_path(cfg.state_dir))
    try:
        satellites.ensure_table(conn)
        now = time.time()
        rows = [s.as_dict(now) for s in satellites.list_satellites(conn)]
    finally:
        conn.close()
    if getattr(args, "json", False):
        print_json(rows)
    else:
        print_table([{**r, "versions": len(r["versions"])} for r in rows],
                    ["name", "address", "seconds_since_contact", "versions", "backlog"],
                    ["NAME", "ADDRESS", "LAST CONTACT (s ago)", "VERSIONS", "BACKLOG"])
    return 0
