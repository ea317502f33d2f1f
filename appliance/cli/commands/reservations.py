"""`imageserver reservations list|add|rm`: static DHCP addresses, live or on the database."""

from __future__ import annotations

import argparse
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

from appliance.cli.commands._common import (
    add_config_option,
    add_json_option,
    load,
    print_json,
    print_table,
)
from appliance.cli.commands._leasebook import run as via
from appliance.cli.exports import export, rows_from_dicts
from domain import leases
from domain.errors import valid_names
from domain.leases import ReservationView
from domain.views import view_json
from protocols.mac import normalize_mac
from protocols.names import dns_name

COLUMNS = ["ip", "mac", "hostname", "source"]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "reservations",
        help="list, add or remove DHCP reservations (static addresses)",
        description="A reservation gives one MAC the same address every time. It wins over the pool: the "
                    "machine gets it on its next DHCP request (a running lease is refused at renewal, so the "
                    "client starts over and gets its fixed address). An address may lie outside the pool "
                    "(anywhere in a DHCP subnet) or inside it, unless another machine holds an active lease "
                    "on it. Adding a reservation for a MAC that has one moves it. With the daemon running "
                    "the change is live; otherwise it goes into the state database for the next start.",
        epilog="examples:\n"
               "  imageserver reservations\n"
               "  imageserver reservations add 52:54:00:12:34:56 10.0.0.20 --hostname node20\n"
               "  imageserver reservations rm 52:54:00:12:34:56\n"
               "turn every current lease into a reservation: imageserver makedhcpstatic",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_config_option(p)
    add_json_option(p)
    p.set_defaults(func=run, action="list")
    verbs = p.add_subparsers(dest="action", metavar="ACTION")
    ls = verbs.add_parser("list", help="list reservations (the default)")
    _verb_json_option(ls)
    add = verbs.add_parser("add", help="reserve IP for MAC",
                           description="Reserve IP for MAC. Refused (exit 4, with the reason) if the address "
                                       "is reserved for another MAC, leased to another machine, outside "
                                       "every DHCP subnet, or the imageserver's own.")
    add.add_argument("mac", metavar="MAC", help="the machine's MAC (aa:bb:cc:dd:ee:ff, aa-bb-..., aabbccddeeff)")
    add.add_argument("ip", metavar="IP", type=_ip, help="the IPv4 address to reserve")
    add.add_argument("--hostname", metavar="NAME", help="host name (DNS) for the address")
    _verb_json_option(add)
    rm = verbs.add_parser("rm", aliases=["remove"], help="remove the reservation of MAC",
                          description="Remove the reservation of MAC; its address returns to the pool if "
                                      "it lies inside one. Exit 3 if the MAC has no reservation.")
    rm.add_argument("mac", metavar="MAC")
    _verb_json_option(rm)
    ex = verbs.add_parser("export", help="write the reservations for another DHCP server",
                          description="The reservation table as ISC dhcpd host declarations, dnsmasq "
                                      "dhcp-host lines or Kea subnet4 reservations (JSON), for sites that "
                                      "keep another DHCP server.")
    ex.add_argument("--format", required=True, choices=("isc", "dnsmasq", "kea"))
    ex.add_argument("-o", "--output", metavar="FILE", help="write to FILE instead of printing")
    for verb in (ls, add, rm, ex):
        add_config_option(verb)


def _verb_json_option(parser: argparse.ArgumentParser) -> None:
    # SUPPRESS: `reservations --json list` must keep the --json given before the verb.
    parser.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                        help="print JSON for scripts instead of a table")


def _ip(text: str) -> IPv4Address:
    try:
        return IPv4Address(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an IPv4 address") from None


def run(args: argparse.Namespace) -> int:
    """A refusal escapes as its error (domain, API or CommandFailed): appliance/cli/exitcodes.py maps it."""
    cfg = load(args)
    action = args.action or "list"
    if action == "list":
        rows: list[dict[str, Any]] = via(
            cfg, lambda api: api.get("/api/v1/reservations")["reservations"],
            lambda model, now: view_json(leases.list_reservations(model))["reservations"], writes=False)
        if args.json:
            print_json(rows)
        elif rows:
            print_table(rows, COLUMNS)
        else:
            print("no reservations")
        return 0
    if action == "add":
        with valid_names():
            mac = normalize_mac(args.mac)
            hostname = dns_name(args.hostname) if args.hostname else None
        body = {"mac": mac, "ip": str(args.ip), **({"hostname": hostname} if hostname else {})}
        row = via(cfg, lambda api: api.post("/api/v1/reservations", body)["reservation"],
                  lambda model, now: view_json(ReservationView.of(leases.add_reservation(model, mac, str(args.ip),
                                                                                         hostname, now))),
                  writes=True)
        _show(args, row, "reserved")
        return 0
    if action == "export":
        return _export(args, via(cfg, lambda api: api.get("/api/v1/reservations")["reservations"],
                                 lambda model, now: view_json(leases.list_reservations(model))["reservations"],
                                 writes=False),
                       [sub.subnet for sub in cfg.dhcp.subnets])
    with valid_names():
        mac = normalize_mac(args.mac)
    row = via(cfg, lambda api: api.delete(f"/api/v1/reservations/{mac}")["reservation"],
              lambda model, now: view_json(ReservationView.of(leases.remove_reservation(model, mac))), writes=True)
    _show(args, row, "removed")
    return 0


def _show(args: argparse.Namespace, row: dict[str, Any], verb: str) -> None:
    if args.json:
        print_json(row)
    else:
        print(f"{verb} {row['ip']} for {row['mac']}" + (f" ({row['hostname']})" if row.get("hostname") else ""))


def _export(args: argparse.Namespace, rows: list[dict[str, Any]], subnets: list[Any]) -> int:
    text = export(args.format, rows_from_dicts(rows), subnets)
    if args.output:
        Path(args.output).write_text(text)
    else:
        print(text, end="")
    return 0
