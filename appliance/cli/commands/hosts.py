"""`imageserver hosts [list] | add | show | reinstall`: the machines the imageserver installs."""

from __future__ import annotations

import argparse
import math
import time
from ipaddress import IPv4Address
from typing import Any

from appliance.cli.apiclient import ApiClient, ApiError, ApiUnavailable
from appliance.cli.commands import _hostverbs
from appliance.cli.commands._common import (
    add_config_option,
    fail,
    load,
    offline_writer,
    print_json,
    print_table,
)
from appliance.cli.commands._nodes import (
    BadNodes,
    add_nodes_argument,
    bulk_call,
    expand_nodes,
    for_each,
    print_outcomes,
)
from appliance.cli.exitcodes import UNREACHABLE, USAGE, CommandFailed
from appliance.cli.installview import host_detail, progress_line
from appliance.daemon.dhcp_setup import offline_lease_model
from appliance.images.assignable import image_problem_rule
from domain import hosts
from domain.errors import DomainError
from domain.hosts import AddHost
from domain.sources import Sources
from domain.views import view_json
from state.lease_rows import offline_transaction
from state.store import open_offline
from state.transports import TRANSPORTS


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "hosts",
        help="list, add, show or reinstall hosts (named machines and the image they get)",
        description="A host is a named machine (hostname, MAC, optional fixed address) and the image it "
                    "installs. A host with an image is *assigned*: its next PXE boot installs it. Then it is "
                    "*installing*, and *installed* (it boots its own disk from then on) or *failed*.",
        epilog="examples:\n"
               "  imageserver hosts add node1 --mac 52:54:00:12:34:56 --image demo\n"
               "  imageserver hosts add node2 --mac 52:54:00:12:34:57 --profile compute\n"
               "  imageserver hosts show node1\n"
               "  imageserver hosts reinstall node1\n"
               "follow installs live: imageserver watch",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_config_option(p)
    p.set_defaults(func=run, action="list", json=False)
    verbs = p.add_subparsers(dest="action", metavar="ACTION")
    ls = verbs.add_parser("list", help="every host with its state and install progress (the default)")
    add = verbs.add_parser("add", help="add a host", description="Add a host. With --image (or a --profile "
                                                                  "that has one) it is assigned and installs at "
                                                                  "its next PXE boot.")
    add.add_argument("name", metavar="NAME", help="host name (one DNS label)")
    add.add_argument("--mac", required=True, help="its MAC address")
    add.add_argument("--image", help="the image it installs")
    add.add_argument("--version", type=int, help="pin an image version (default: the newest at install time)")
    add.add_argument("--transport", choices=TRANSPORTS,
                     help="how its installer fetches the image (default: the image's, else rsync)")
    add.add_argument("--ip", type=IPv4Address, help="a fixed address (default: its DHCP lease, reserved once "
                                                    "installed)")
    add.add_argument("--profile", metavar="NAME",
                     help="the profile it inherits image, version, transport, kernel arguments, root-device hints "
                          "and BMC from (its own --image etc. win); exit 3 if there is no such profile")
    show = verbs.add_parser("show", help="hosts: state, address, next boot, install timeline")
    add_nodes_argument(show)
    again = verbs.add_parser("reinstall", help="install the host again at its next PXE boot",
                             description="State assigned with a new install token: the next PXE boot "
                                         "installs the host again (an installer still running with the old "
                                         "token can no longer report).")
    add_nodes_argument(again)
    again.add_argument("--power-cycle", action="store_true",
                       help="then, through each host's BMC, boot it from the network once and power cycle it "
                            "(on, if it is off): the install starts now")
    for verb in (ls, add, show, again):
        add_config_option(verb)
        verb.add_argument("--json", action="store_true", help="print JSON for scripts")
    _hostverbs.register(verbs)  # set, rm, export, script


def run(args: argparse.Namespace) -> int:
    """A refusal escapes as its error (domain, API or CommandFailed): appliance/cli/exitcodes.py maps it."""
    if args.action in _hostverbs.VERBS:
        return _hostverbs.run(args)
    cfg = load(args)
    api = ApiClient.from_config(cfg)
    try:
        if args.action == "add":
            body: dict[str, Any] = {"name": args.name, "mac": args.mac, "image": args.image,
                                    "version": args.version, "ip": str(args.ip) if args.ip else None,
                                    "transport": args.transport, "profile": args.profile}
            req = AddHost.from_json(body)  # the API's own check (Invalid): a bad MAC or name never reaches the store
            try:
                host = api.post("/api/v1/hosts", req.as_json())
            except ApiUnavailable as e:
                host = _add_offline(cfg, req, str(e))
            if args.json:
                print_json(host)
            else:
                print(f"host {host['name']} added ({host['state']})")
            return 0
        if args.action in ("reinstall", "show"):
            return _per_host(cfg, api, args)
    except BadNodes as e:
        return fail(str(e), USAGE)
    hosts = _hostverbs.get_or_offline(cfg, api, "/api/v1/hosts")["hosts"]
    if args.json:
        print_json(hosts)
    elif hosts:
        print_table([_hostverbs.list_row(h, progress_line(h)) for h in hosts],
                    ["mac", "ip", "image", "power", "seen", "progress"],
                    headers=["MAC", "IP", "IMAGE", "POWER", "LAST SEEN", "HOST / STATE / STAGE / PROGRESS"])
    else:
        print("no hosts (add one: imageserver hosts add NAME --mac MAC --image IMAGE)")
    return 0


# What fails one host of a range (the others go on); a single named host lets it escape to exitcodes.py.
HOST_ERRORS = (ApiError, ApiUnavailable, CommandFailed, DomainError)


def _per_host(cfg: Any, api: ApiClient, args: argparse.Namespace) -> int:
    """show / reinstall NODES: one host as it always was, several with a per-host result."""
    names = expand_nodes(args.nodes)

    def reinstall(name: str) -> tuple[str, dict[str, Any]]:
        host = api.post(f"/api/v1/hosts/{name}/reinstall")
        return f"will install again at its next PXE boot ({host['state']})", host

    def show(name: str) -> tuple[str, dict[str, Any]]:
        host = _hostverbs.get_or_offline(cfg, api, f"/api/v1/hosts/{name}")
        return host_detail(host), host

    act = reinstall if args.action == "reinstall" else show
    single = len(names) == 1 and args.nodes == names[0]
    if args.action == "reinstall" and (args.power_cycle or not single):
        return _reinstall_bulk(cfg, names, args)
    if single:
        _, host = act(names[0])  # a refusal escapes: exitcodes.py maps it
        if args.json:
            print_json(host)
        elif args.action == "show":
            print(host_detail(host))
        else:
            print(f"host {host['name']} will install again at its next PXE boot ({host['state']})")
        return 0
    outcomes = for_each(names, act, HOST_ERRORS)
    if args.action == "show" and not args.json:
        for o in outcomes:
            print(o.detail if o.ok else f"{o.host}: {o.detail}")
            print()
        return 0 if all(o.ok for o in outcomes) else 1
    return print_outcomes(outcomes, as_json=args.json)


def _reinstall_bulk(cfg: Any, names: list[str], args: argparse.Namespace) -> int:
    """reinstall NODES in one request (POST /api/v1/bulk/reinstall); with --power-cycle the daemon then boots
    each marked host from the network once and power cycles it through its BMC (the BMCs in parallel)."""
    power = cfg.power
    # the daemon answers when the last BMC is done: every round of `concurrency` BMCs may take `timeout`
    wait = power.timeout * math.ceil(len(names) / power.concurrency) + 30 if args.power_cycle else 60 + len(names) / 50
    outcomes = bulk_call(cfg, "/api/v1/bulk/reinstall", {"hosts": names, "power_cycle": bool(args.power_cycle)},
                         wait=wait)
    if outcomes is None:
        raise CommandFailed("reinstall needs the running daemon (it hands out the install tokens)", code=UNREACHABLE)
    for o in outcomes:
        if o.ok:
            o.detail = ("installing now: network boot once, power cycled" if args.power_cycle
                        else "will install again at its next PXE boot")
    return print_outcomes(outcomes, as_json=args.json)


def _add_offline(cfg: Any, req: AddHost, reason: str) -> dict[str, Any]:
    """The daemon is down: the same use case as the API (domain.hosts), on the state database in one
    transaction, with an offline lease book so a fixed address becomes the MAC's reservation there too.
    Only with the state dir's lock: a daemon that runs but did not answer owns the database."""

    with offline_writer(cfg, reason):
        conn = open_offline(cfg.state_dir)
        try:
            now = time.time()
            with offline_transaction(conn):
                src = Sources(conn, leases=offline_lease_model(cfg, conn, now),
                              image_problem=image_problem_rule(conn, cfg.state_dir))
                hosts.add_host_op(src, req, now, auto_static=cfg.dhcp.auto_static)(conn)
            view = hosts.show_host(src, req.name, now, with_timeline=False)
        finally:
            conn.close()
    return {**view_json(view), "offline": True}
