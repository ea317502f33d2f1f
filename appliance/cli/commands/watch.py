"""`imageserver watch`: installs as they happen, one line per host with a progress bar (polls the API)."""

from __future__ import annotations

import argparse
import sys
import time

from appliance.cli.apiclient import ApiClient
from appliance.cli.commands._common import add_config_option, load
from appliance.cli.installview import progress_line

ACTIVE = ("assigned", "installing")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "watch",
        help="show installs live: each host's stage and progress, new stages as they arrive",
        description="Polls the running imageserver and prints, per host, its state, the stage its installer "
                    "reported last and a progress bar while the image is copied. On a terminal the view "
                    "redraws in place; otherwise each change is one new line (for logs).",
    )
    add_config_option(p)
    p.add_argument("--interval", type=float, default=1.0, help="seconds between polls (default 1)")
    p.add_argument("--until-done", action="store_true",
                   help="exit once no host is assigned or installing (exit 1 if any host failed)")
    p.add_argument("hosts", nargs="*", metavar="NAME", help="only these hosts")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    api = ApiClient.from_config(load(args))
    tty = sys.stdout.isatty()
    shown: dict[str, str] = {}
    drawn = 0
    while True:
        hosts = api.get("/api/v1/hosts?limit=1000")["hosts"]  # the largest page (the API pages hosts)
        if args.hosts:
            hosts = [h for h in hosts if h["name"] in args.hosts]
        lines = [progress_line(h) for h in hosts]
        if tty:
            # Redraw the block in place: cursor up over what was drawn last time, clear each line.
            sys.stdout.write("\x1b[F\x1b[2K" * drawn + "".join(f"\x1b[2K{line}\n" for line in lines))
            drawn = len(lines)
        else:
            for host, line in zip(hosts, lines, strict=True):
                key = f"{host['state']} {(host.get('progress') or {}).get('stage')}"
                if shown.get(host["name"]) != key:
                    shown[host["name"]] = key
                    print(line)
        sys.stdout.flush()
        if args.until_done and hosts and not any(h["state"] in ACTIVE for h in hosts):
            return 1 if any(h["state"] == "failed" for h in hosts) else 0
        time.sleep(args.interval)
