"""`imageserver tokens add NAME --role reader|operator|admin | list | revoke NAME`: named API tokens with roles.

Through the running daemon's admin API when it answers (its journal is the one writer); offline, the same
use cases (domain/tokens.py) on the state database under the state directory's lock. `add` prints the token
once: only its hash is kept.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from appliance.cli.commands._common import add_config_option, add_json_option, load, print_json, print_table
from appliance.cli.commands._store import run as via
from domain import tokens
from domain.views import view_json


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
    """The same use case live or offline; a refusal escapes as its error (appliance/cli/exitcodes.py maps it)."""
    cfg = load(args)
    if args.verb == "add":
        op = tokens.add_op(args.name, args.role, time.time())  # a bad name or role fails here, before anything is asked
        added = via(cfg, lambda api: api.post("/api/v1/tokens", {"name": args.name, "role": args.role}),
                    lambda conn: view_json(op(conn)), writes=True)
        print(added["token"])  # the one time the secret is shown: only its hash is kept
    elif args.verb == "revoke":
        via(cfg, lambda api: api.delete(f"/api/v1/tokens/{args.name}"),
            lambda conn: view_json(tokens.revoke_op(args.name)(conn)), writes=True)
    else:
        _show(args, via(cfg, lambda api: api.get("/api/v1/tokens")["tokens"],
                        lambda conn: view_json(tokens.token_list(conn))["tokens"], writes=False))
    return 0


def _show(args: argparse.Namespace, rows: list[dict[str, Any]]) -> None:
    if getattr(args, "json", False):
        print_json(rows)
        return
    print_table(rows, ["name", "role", "created"], ["NAME", "ROLE", "CREATED"],
                {"created": lambda t: "(admin.token)" if t is None else time.strftime("%Y-%m-%d %H:%M:%S",
                                                                                      time.gmtime(t))})
