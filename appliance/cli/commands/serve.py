"""`imageserver serve`: run the appliance (what the systemd unit starts)."""

from __future__ import annotations

import argparse

from appliance.cli.commands._common import add_config_option, load
from appliance.daemon.logs import setup_logging


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve",
        help="run the imageserver daemon (DHCP, TFTP, HTTP, DNS, rsync) in the foreground",
        description="Run every enabled service in one process until SIGTERM/SIGINT. SIGHUP re-reads the "
                    "configuration without dropping leases. A bad configuration fails at start with the key "
                    "and the problem (exit code 2).",
    )
    add_config_option(p)
    p.add_argument("--log-format", choices=("text", "json"), default="text",
                   help="text: one key=value line per event (default); json: one JSON object per line")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # Lazy on purpose: the daemon pulls in aiohttp and every server, which the other commands never need.
    from appliance.daemon.daemon import serve

    cfg = load(args)
    setup_logging(cfg.appliance.log_level, args.log_format)
    return serve(cfg)
