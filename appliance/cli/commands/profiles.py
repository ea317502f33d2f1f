"""`imageserver profiles [list] | add | set | show | rm`: named settings hosts inherit unless they set their own
(`imageserver hosts set NODES --profile NAME`). Through the API, or with the daemon down the same use cases
(domain/profiles.py) on the state database."""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from appliance.cli.apiclient import ApiClient
from appliance.cli.commands import _bmcverbs, _rootdevice
from appliance.cli.commands._common import (
    add_config_option,
    add_json_option,
    ask_daemon,
    fail,
    load,
    offline_writer,
    print_json,
    print_table,
)
from appliance.cli.exitcodes import USAGE, CommandFailed
from appliance.config import Config
from domain import profiles
from domain.views import view_json
from state.db import StoreFailure
from state.hosts import Op
from state.lease_rows import offline_transaction
from state.profiles import StoredProfiles
from state.store import open_offline
from state.transports import TRANSPORTS


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "profiles", help="named settings (image, version, transport, kernel arguments, root-device hints, BMC) "
                         "hosts inherit",
        description="A profile holds settings that every host naming it inherits unless the host sets its own: "
                    "image, version, transport, kernel arguments, root-device hints and BMC defaults. Change a "
                    "profile and every host inheriting it follows; `hosts show` says where each value comes from.",
        epilog="examples:\n"
               "  imageserver profiles add compute --image rocky9 --transport bittorrent\n"
               "  imageserver hosts set 'node[001-300]' --profile compute\n"
               "  imageserver hosts add node301 --mac 52:54:00:00:01:2d --profile compute\n"
               "  imageserver profiles set compute --root-device 'rotational=false,smallest'\n"
               "  imageserver profiles set compute --image rocky9 --version 4\n"
               "  imageserver profiles add gpu --bmc 'ipmi://{host}-bmc' --bmc-user admin "
               "--bmc-password-file pw.txt\n"
               "  imageserver profiles rm gpu      (refused, exit 4, while hosts use it)",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_option(p)
    p.set_defaults(func=run, action="list", json=False)
    verbs = p.add_subparsers(dest="action", metavar="ACTION")
    ls = verbs.add_parser("list", help="every profile and how many hosts use it (the default)")
    add = verbs.add_parser("add", help="a new profile")
    st = verbs.add_parser("set", help="change a profile ('' clears a setting); its hosts follow")
    show = verbs.add_parser("show", help="one profile and its hosts")
    rm = verbs.add_parser("rm", aliases=["remove"], help="remove a profile no host uses")
    for verb in (add, st, show, rm):
        verb.add_argument("name", metavar="NAME")
    for verb in (add, st):
        verb.add_argument("--image")
        verb.add_argument("--version", help="a version number, or '' for the newest at install time")
        verb.add_argument("--transport", choices=(*TRANSPORTS, ""))
        verb.add_argument("--kernel-args", metavar="ARGS", help="added to the installer's kernel command line")
        verb.add_argument("--root-device", metavar="HINTS", help=_rootdevice.HELP + "; a host's own win, and these "
                                                                 "win over the image's")
        g = verb.add_argument_group("BMC defaults (hosts without a BMC of their own)")
        g.add_argument("--bmc", metavar="ADDRESS", help="an address where {host} is the host's name, e.g. "
                                                        "ipmi://{host}-bmc or redfish://10.9.0.1:8000")
        g.add_argument("--bmc-user", metavar="USER")
        g.add_argument("--bmc-password-file", metavar="FILE", type=Path,
                       help=f"a file holding the BMC password ('-': stdin); else ${_bmcverbs.PASSWORD_ENV}")
    for verb in (ls, add, st, show, rm):
        add_config_option(verb)
        add_json_option(verb)


def _settings(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, field in (("image", "image"), ("transport", "transport"), ("kernel_args", "kernel_args"),
                       ("root_device", "root_device"), ("bmc", "bmc_address"), ("bmc_user", "bmc_username")):
        value = getattr(args, key)
        if value is not None:
            out[field] = value or None
    if args.version is not None:
        try:
            out["version"] = int(args.version) if args.version else None
        except ValueError:
            raise CommandFailed(f"--version {args.version!r} is not a number", code=USAGE) from None
    if args.bmc_password_file is not None or args.bmc or args.bmc_user:
        password = _bmcverbs.password(args)  # the file, else $IMAGESERVER_BMC_PASSWORD, else None: keep it
        if password is not None:
            out["bmc_password"] = password
    return out


def _offline(cfg: Config, act: Callable[[StoredProfiles, float], tuple[Any, list[Op]]], *, writes: bool) -> Any:
    """The use case on the state database (under the state dir's lock when it writes)."""
    def go() -> Any:
        conn = open_offline(cfg.state_dir)
        try:
            now = time.time()
            with offline_transaction(conn):
                result, ops = act(StoredProfiles(conn), now)
                for op in ops:
                    taken = op(conn)
                    if isinstance(taken, list) and taken:  # a removal a host took up meanwhile
                        raise profiles.in_use(str(result["name"]), taken)
            return result
        except StoreFailure as e:
            raise CommandFailed(f"state database: {e}") from None
        finally:
            conn.close()

    if not writes:
        return go()
    with offline_writer(cfg):
        return go()


def run(args: argparse.Namespace) -> int:
    cfg = load(args)
    action = "rm" if args.action == "remove" else args.action
    name = getattr(args, "name", None)
    path = f"/api/v1/profiles/{name}" if name else "/api/v1/profiles"

    if action == "list":
        answered, got = ask_daemon(cfg, lambda api: api.get(path))
        listed = got if answered else _offline(
            cfg, lambda s, now: (view_json(profiles.list_profiles(s)), []), writes=False)
        rows = listed["profiles"]
        if args.json:
            print_json(rows)
        elif rows:
            print_table(rows, ["name", "image", "version", "transport", "kernel_args", "bmc_address", "hosts"],
                        headers=["NAME", "IMAGE", "VERSION", "TRANSPORT", "KERNEL ARGS", "BMC", "HOSTS"])
        else:
            print("no profiles (add one: imageserver profiles add NAME --image IMAGE)")
        return 0
    if action == "show":
        answered, got = ask_daemon(cfg, lambda api: api.get(path))
        view = got if answered else _offline(
            cfg, lambda s, now: (view_json(profiles.show_profile(s, name)), []), writes=False)
        if args.json:
            print_json(view)
        else:
            print(describe(view))
        return 0
    if action in ("add", "set"):
        body = _settings(args)
        if action == "set" and not body:
            return fail("nothing to change (give --image, --version, --transport, --kernel-args, --root-device or "
                        "--bmc ...)", USAGE)

        def offline_change(s: StoredProfiles, now: float) -> tuple[Any, list[Op]]:
            if action == "add":
                added, ops = profiles.add_profile(s, {"name": name, **body}, now)
                return {"name": added}, ops
            return {"name": name}, profiles.change_profile(s, name, body, now)

        def online(api: ApiClient) -> Any:
            if action == "add":
                return api.post("/api/v1/profiles", {"name": name, **body})
            return api.request("PATCH", path, body)

        answered, view = ask_daemon(cfg, online, writes=True)
        if not answered:
            done = _offline(cfg, offline_change, writes=True)
            view = _offline(cfg, lambda s, now: (view_json(profiles.show_profile(s, done["name"])), []),
                            writes=False)
        if args.json:
            print_json(view)
        else:
            print(f"profile {view['name']} {'added' if action == 'add' else 'changed'} "
                  f"({view['hosts']} host(s) inherit from it)")
        return 0
    # rm: refused (exit 4) while hosts use it; the message names them

    def offline_rm(s: StoredProfiles, now: float) -> tuple[Any, list[Op]]:
        view, op = profiles.remove_profile(s, name)
        return view_json(view), [op]

    answered, view = ask_daemon(cfg, lambda api: api.delete(path), writes=True)
    if not answered:
        view = _offline(cfg, offline_rm, writes=True)
    if args.json:
        print_json(view)
    else:
        print(f"profile {view['name']} removed")
    return 0


def describe(view: dict[str, Any]) -> str:
    lines = [f"profile {view['name']}"]
    for key, label in (("image", "image"), ("version", "version"), ("transport", "transport"),
                       ("kernel_args", "kernel args"), ("root_device", "root device"), ("bmc_address", "BMC"),
                       ("bmc_username", "BMC user")):
        value = view.get(key)
        if key == "version" and value is None and view.get("image"):
            value = "newest"
        lines.append(f"  {label + ':':<15}{value if value is not None else '-'}")
    lines.append(f"  {'BMC password:':<15}{'set' if view.get('bmc_password_set') else '-'}")
    names = view.get("host_names") or []
    lines.append(f"  {'hosts:':<15}{view.get('hosts', len(names))}" + (f" ({', '.join(names[:30])}"
                                                                         f"{' ...' if len(names) > 30 else ''})"
                                                                         if names else ""))
    return "\n".join(lines)
