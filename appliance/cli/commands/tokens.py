"""`imageserver tokens add NAME --role reader|operator|admin | list | revoke NAME`: named API tokens with roles.

Through the running daemon's admin API when it answers (its journal is the one writer); offline, on the
state database under the state directory's lock. `add` prints the token once: only its hash is kept.
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
    offline_writer,
    print_json,
    print_table,
)
from state import tokens
from state.db import connect, db_path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "tokens", help="named API tokens with a role: add (prints the token once), list, revoke",
        description="A named token opens the API with its role: reader reads hosts, leases, machines and "
                    "images; operator may also assign, reinstall and edit hosts; admin may also change images, "
                    "tokens, satellites and settings. <state_dir>/admin.token is the admin token named 'admin'.")
    add_config_option(p)
    verbs = p.add_subparsers(dest="verb", metavar="VERB", required=True)
    add = verbs.add_parser("add", help="a new named token: printed once, only its hash is kept")
    add.add_argument("name")
    add.add_argument("--role", required=True, choices=tokens.ROLES)
    add_config_option(add)
    ls = verbs.add_parser("list", help="names, roles and when they were made (never a secret)")
    add_config_option(ls)
    add_json_option(ls)
    rm = verbs.add_parser("revoke", help="revoke a named token: refused from its next request on")
    rm.add_argument("name")
    add_config_option(rm)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    cfg = load(args)
    try:
        if args.verb == "add":
            tokens.add_op(args.name, args.role, 0.0)  # a bad name or role fails here, before anything is asked
            online, answer = ask_daemon(
                cfg, lambda api: api.post("/api/v1/tokens", {"name": args.name, "role": args.role}), writes=True)
        elif args.verb == "revoke":
            online, answer = ask_daemon(cfg, lambda api: api.delete(f"/api/v1/tokens/{args.name}"), writes=True)
        else:
            online, answer = ask_daemon(cfg, lambda api: api.get("/api/v1/tokens"))
    except (CommandFailed, tokens.TokenError) as e:
        return fail(str(e))
    if online:
        return _done(args, answer)
    return _offline(args, cfg)


def _done(args: argparse.Namespace, answer: Any) -> int:
    if args.verb == "add":
        print(answer["token"])
    elif args.verb == "list":
        _show(args, answer["tokens"])
    return 0


def _offline(args: argparse.Namespace, cfg: Any) -> int:
    if args.verb == "list":
        conn = connect(db_path(cfg.state_dir))
        try:
            rows = [{"name": t.name, "role": t.role, "created": t.created} for t in tokens.list_tokens(conn)]
        finally:
            conn.close()
        _show(args, [{"name": tokens.ADMIN_NAME, "role": "admin", "created": None}, *rows])
        return 0
    try:
        lock = offline_writer(cfg)
    except CommandFailed as e:
        return fail(str(e))
    with lock:
        conn = connect(db_path(cfg.state_dir))
        try:
            with conn:
                if args.verb == "add":
                    print(tokens.add_op(args.name, args.role, time.time())(conn))
                    return 0
                gone = tokens.revoke_op(args.name)(conn)
        except tokens.TokenError as e:
            return fail(str(e))
        finally:
            conn.close()
    return 0 if gone else fail(f"no token named {args.name}")


def _show(args: argparse.Namespace, rows: list[dict[str, Any]]) -> None:
    if getattr(args, "json", False):
        print_json(rows)
        return
    print_table(rows, ["name", "role", "created"], ["NAME", "ROLE", "CREATED"],
                {"created": lambda t: "(admin.token)" if t is None else time.strftime("%Y-%m-%d %H:%M:%S",
                                                                                      time.gmtime(t))})
