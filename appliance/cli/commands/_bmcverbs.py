"""`imageserver hosts set NODES --bmc ADDRESS --bmc-user USER --bmc-password-file FILE`: each host's BMC,
through the admin API (PUT /api/v1/hosts/{name}/bmc) or, with the daemon down, on the state database.

The password never goes on the command line (where `ps` shows it): a file (`-` for stdin) or the
environment variable IMAGESERVER_BMC_PASSWORD. For a range, the address may hold `{host}` (the host's
name) or a range of its own (`ipmi://10.1.0.[1-200]`, `ipmi://127.0.0.1:[9001-9003]`), paired with the
hosts in order.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from ClusterShell.RangeSet import RangeSet, RangeSetParseError

from appliance.cli.apiclient import ApiClient
from appliance.cli.commands._common import CommandFailed, ask_daemon, offline_writer
from appliance.config import Config
from domain import power
from domain.errors import DomainError
from domain.power import SetBmc
from domain.sources import Sources
from domain.views import view_json
from state.lease_rows import offline_transaction
from state.store import open_offline

PASSWORD_ENV = "IMAGESERVER_BMC_PASSWORD"


def add_bmc_options(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("BMC (power control)")
    g.add_argument("--bmc", metavar="ADDRESS",
                   help="ipmi://HOST[:PORT], redfish://HOST[:PORT] or https://HOST[:PORT] ('' forgets the BMC); "
                        "{host} and [a-b] ranges give each host of a range its own")
    g.add_argument("--bmc-user", metavar="USER", help="the BMC's user")
    g.add_argument("--bmc-password-file", metavar="FILE", type=Path,
                   help=f"a file holding the BMC's password ('-': stdin); else ${PASSWORD_ENV}")
    g.add_argument("--bmc-fingerprint", metavar="SHA256", help="pin the Redfish BMC's TLS certificate")


def wanted(args: argparse.Namespace) -> bool:
    return any(getattr(args, k, None) is not None for k in ("bmc", "bmc_user", "bmc_password_file",
                                                            "bmc_fingerprint"))


def bmc_bodies(args: argparse.Namespace, names: list[str]) -> dict[str, dict[str, Any] | None]:
    """Per host the body of its PUT, or None to forget its BMC; CommandFailed for a bad combination."""
    if args.bmc is None:
        raise CommandFailed("give the BMC's address with --bmc (also to change its user or password)")
    if args.bmc == "":
        return dict.fromkeys(names)
    if not args.bmc_user:
        raise CommandFailed("give the BMC's user with --bmc-user")
    secret = password(args)
    addresses = _addresses(args.bmc, names)
    return {n: {"address": a, "username": args.bmc_user, "password": secret,
                "fingerprint": args.bmc_fingerprint} for n, a in zip(names, addresses, strict=True)}


def password(args: argparse.Namespace) -> str | None:
    if args.bmc_password_file is not None:
        try:
            text = sys.stdin.read() if str(args.bmc_password_file) == "-" else args.bmc_password_file.read_text()
        except OSError as e:
            raise CommandFailed(f"cannot read the BMC password file {args.bmc_password_file}: {e.strerror}") from None
        return text.rstrip("\r\n")
    return os.environ.get(PASSWORD_ENV) or None  # None: keep the stored one


def _addresses(template: str, names: list[str]) -> list[str]:
    if "[" not in template:
        return [template.replace("{host}", n) for n in names]
    head, rest = template.split("[", 1)
    inner, sep, tail = rest.partition("]")
    try:
        values = list(RangeSet(inner)) if sep else []
    except RangeSetParseError as e:
        raise CommandFailed(f"--bmc {template}: {e}") from None
    if len(values) != len(names):
        raise CommandFailed(f"--bmc {template} names {len(values)} addresses for {len(names)} hosts")
    return [f"{head}{v}{tail}".replace("{host}", n) for v, n in zip(values, names, strict=True)]


def apply(cfg: Config, name: str, body: dict[str, Any] | None) -> dict[str, Any]:
    """Set (or with None forget) the host's BMC; its view (no password)."""
    path = f"/api/v1/hosts/{name}/bmc"

    def online(api: ApiClient) -> Any:
        return api.delete(path) if body is None else api.request("PUT", path, body)

    answered, view = ask_daemon(cfg, online, writes=True)
    if answered:
        return view  # type: ignore[no-any-return]
    with offline_writer(cfg):
        conn = open_offline(cfg.state_dir)
        try:
            src = Sources(conn)
            with offline_transaction(conn):
                if body is None:
                    shown, op = power.remove_bmc_op(src, name)
                    op(conn)
                    return view_json(shown)
                if not power.set_bmc_op(src, name, SetBmc(**body))(conn):
                    raise CommandFailed(f"host {name} has no BMC yet: give its password too")
            return view_json(power.show_bmc(src, name))
        except DomainError as e:
            raise CommandFailed(str(e)) from None
        finally:
            conn.close()


def describe(view: dict[str, Any], forgotten: bool) -> str:
    if forgotten:
        return f"BMC {view['address']} forgotten"
    return f"BMC {view['address']} (user {view['username']}{', certificate pinned' if view.get('fingerprint') else ''})"
