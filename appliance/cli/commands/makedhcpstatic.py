"""`imageserver makedhcpstatic`: turn every active DHCP lease into a reservation (SystemImager's verb)."""

from __future__ import annotations

import argparse

from appliance.cli.commands._common import (
    add_config_option,
    add_json_option,
    load,
    print_json,
    print_table,
)
from appliance.cli.commands._leasebook import run as via
from domain import leases
from domain.leases import reservation_list
from domain.views import view_json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "makedhcpstatic",
        help="make every active DHCP lease a reservation (static address)",
        description="Every machine holding an active lease keeps its address for good: each active lease "
                    "becomes a reservation with the same address and host name, and the lease is removed. "
                    "Machines that already have a reservation keep theirs. Live when the daemon runs; on the "
                    "state database otherwise. Prints the reservations it made.",
        epilog="see also: imageserver reservations, imageserver leases",
    )
    add_config_option(p)
    add_json_option(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    cfg = load(args)
    made = via(cfg, lambda api: api.post("/api/v1/makedhcpstatic")["reservations"],
               lambda model, now: view_json(reservation_list(leases.make_static(model, now)))["reservations"],
               writes=True)
    if args.json:
        print_json(made)
    elif made:
        print_table(made, ["ip", "mac", "hostname"])
        print(f"{len(made)} lease(s) made static")
    else:
        print("no active leases to make static")
    return 0
