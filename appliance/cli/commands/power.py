"""`imageserver power status|on|off|cycle|pxe NODES`: power control through the hosts' BMCs."""

from __future__ import annotations

import argparse

from appliance.cli.apiclient import ApiError, ApiUnavailable
from appliance.cli.commands._common import CommandFailed, add_config_option, add_json_option, fail, load
from appliance.cli.commands._nodes import BadNodes, add_nodes_argument, expand_nodes
from appliance.cli.commands._power import power_call, print_results


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "power", help="power hosts on, off, cycle them or boot them from the network once, through their BMCs",
        description="One action on every host of NODES through its BMC (IPMI or Redfish; give it with "
                    "imageserver hosts set NODES --bmc ...). Each host answers for itself: a BMC that is slow, "
                    "silent or refuses fails its own host, the others go on ([power] concurrency, timeout).",
        epilog="actions:\n"
               "  status     ask the power state\n"
               "  on, off    power on or off (hard), and wait until the BMC says so\n"
               "  cycle      off and on again (on, when it is off)\n"
               "  pxe        the next boot, once, from the network (no power change)\n"
               "  pxe-cycle  pxe, then cycle: what hosts reinstall --power-cycle does\n"
               "examples:\n"
               "  imageserver power status node[001-300]\n"
               "  imageserver power pxe-cycle rack1-n[01-40] --json",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("action", choices=("status", "on", "off", "cycle", "pxe", "pxe-cycle"), metavar="ACTION",
                   help="status, on, off, cycle, pxe or pxe-cycle")
    add_nodes_argument(p)
    add_config_option(p)
    add_json_option(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        names = expand_nodes(args.nodes)
    except BadNodes as e:
        return fail(str(e), code=2)
    cfg = load(args)
    try:
        return print_results(power_call(cfg, names, args.action), as_json=args.json)
    except (CommandFailed, ApiError, ApiUnavailable) as e:
        return fail(getattr(e, "message", None) or str(e))
