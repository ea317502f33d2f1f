"""`imageserver addclients`: define a range of hosts (www1..www300) with addresses and MACs, live or offline."""

from __future__ import annotations

import argparse
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

from appliance.cli.commands._common import (
    add_config_option,
    add_json_option,
    fail,
    load,
    print_json,
    print_table,
)
from appliance.cli.commands._hostbook import run as via
from domain import hostadmin
from domain.addclients import PlanError, parse_macs
from domain.errors import Invalid


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "addclients",
        help="define a range of hosts: names BASE+n, addresses, MACs, image",
        description="Define hosts BASE<n> for n in RANGE (SystemImager's addclients). With --first-ip the "
                    "hosts get consecutive addresses from it (outside every DHCP pool; an address that is "
                    "another host's, reserved or leased for another MAC is refused, naming both). With --macs "
                    "they get MACs from FILE (one per line: 'MAC [HOSTNAME]'; a line naming a host binds to it, "
                    "the others take the names in order); a host with a MAC and an address gets its DHCP "
                    "reservation at once. Hosts without a MAC wait for a machine: `imageserver machines assign "
                    "MAC --next`. Running it again with the same arguments changes nothing; a wider range adds "
                    "the new hosts only. With the daemon running the change is live (DHCP and DNS at once).",
        epilog="examples:\n"
               "  imageserver addclients --base www --range 1-300 --pad 3 --image web --first-ip 10.0.0.11\n"
               "  imageserver addclients --base node --range 1-3 --image demo --first-ip 10.0.0.21 --macs macs.txt\n"
               "  imageserver addclients --base node --range 1-3 --image demo --dry-run\n"
               "  imageserver addclients --base node --range 4-300 --pad 3 --profile compute --first-ip 10.0.0.24",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_config_option(p)
    add_json_option(p)
    p.add_argument("--base", required=True, help="host name prefix, e.g. www")
    p.add_argument("--range", required=True, metavar="FIRST-LAST", help="numbers, e.g. 1-300")
    p.add_argument("--image", help="the image the hosts install")
    p.add_argument("--profile", metavar="NAME", help="the profile the new hosts inherit from (image, version, "
                                                     "transport, kernel arguments, root-device hints, BMC); exit 3 "
                                                     "if there is no such profile")
    p.add_argument("--version", type=int, help="pin an image version (default: the newest at install time)")
    p.add_argument("--domain", help="DNS domain for the printed names (default: [appliance] domain)")
    p.add_argument("--first-ip", type=IPv4Address, metavar="ADDRESS", help="address of the first host")
    p.add_argument("--macs", type=Path, metavar="FILE", help="MACs, one per line: 'MAC [HOSTNAME]'")
    p.add_argument("--pad", type=int, default=0, metavar="N", help="zero-pad numbers to N digits (www001)")
    p.add_argument("--dry-run", action="store_true", help="print the plan, change nothing")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """A refusal escapes as its error (domain, API or CommandFailed): appliance/cli/exitcodes.py maps it."""
    cfg = load(args)
    try:
        macs = parse_macs(args.macs.read_text(), str(args.macs)) if args.macs else ()
    except OSError as e:
        return fail(f"{args.macs}: {e.strerror or e}")
    except PlanError as e:  # a malformed MAC file
        raise Invalid(str(e)) from None
    body: dict[str, Any] = {"base": args.base, "range": args.range, "image": args.image, "version": args.version,
                            "pad": args.pad, "first_ip": str(args.first_ip) if args.first_ip else None,
                            "macs": [list(m) for m in macs], "profile": args.profile}
    req = hostadmin.addclients_request(body)
    own = (cfg.appliance.address,) if cfg.appliance.address is not None else ()

    def offline(book: Any, now: float) -> tuple[dict[str, Any], list[Any]]:
        plan, ops = hostadmin.add_clients(book, req, now, dry_run=args.dry_run, own=own)
        return hostadmin.plan_json(plan), ops

    plan = via(cfg, lambda api: api.post("/api/v1/addclients", {**body, "dry_run": args.dry_run})["plan"],
               offline, "addclients")
    if args.json:
        print_json(plan)
        return 0
    domain = args.domain or cfg.appliance.domain
    rows = [{**h, "fqdn": f"{h['name']}.{domain}" if domain else h["name"],
             "action": h["action"] + (f" ({', '.join(h['changes'])})" if h["changes"] else "")}
            for h in plan["hosts"]]
    print_table(rows, ["fqdn", "ip", "mac", "image", "action"], ["HOST", "IP", "MAC", "IMAGE", "ACTION"])
    c = plan["counts"]
    verb = "would create" if args.dry_run else "created"
    print(f"{verb} {c['create']}, {'would update' if args.dry_run else 'updated'} {c['update']}, "
          f"unchanged {c['keep']}" + (" (dry run: nothing changed)" if args.dry_run else ""))
    return 0
