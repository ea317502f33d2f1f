"""`imageserver watch`: installs as they happen, one line per host with a progress bar (polls the API).

On a terminal the view is redrawn in place within the terminal's height: when the fleet is taller than the
screen it shows one page of hosts at a time and moves to the next page at every poll, with a header counting
the hosts by state (so every host is seen, and nothing scrolls). Otherwise each change is one new line (for
logs), or with --json one JSON object per line. Every page of the API is read, not only the first.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any

from appliance.cli.apiclient import ApiClient
from appliance.cli.commands._common import add_config_option, fail, load
from appliance.cli.commands._nodes import BadNodes, expand_nodes
from appliance.cli.exitcodes import USAGE
from appliance.cli.installview import power_text, progress_line

ACTIVE = ("assigned", "installing")
PAGE = 1000  # the API's largest page
HOME_CLEAR = "\x1b[H\x1b[J"  # cursor to the top left, clear to the end of the screen


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "watch",
        help="show installs live: each host's stage and progress, new stages as they arrive",
        description="Polls the running imageserver and prints, per host, its state, the stage its installer "
                    "reported last and a progress bar while the image is copied. On a terminal the view "
                    "redraws in place within the screen, a page of hosts at a time when the fleet is taller "
                    "than the screen; otherwise each change is one new line (for logs), or one JSON object "
                    "per line with --json.",
    )
    add_config_option(p)
    p.add_argument("--interval", type=float, default=1.0, help="seconds between polls (default 1)")
    p.add_argument("--until-done", action="store_true",
                   help="exit once no host is assigned or installing (exit 1 if any host failed)")
    p.add_argument("--json", action="store_true",
                   help="one JSON object per line: each host as the API shows it, when its state or stage changes")
    p.add_argument("hosts", nargs="*", metavar="NODES", help="only these hosts (names or ranges: node[001-200])")
    p.set_defaults(func=run)


def all_hosts(api: ApiClient) -> list[dict[str, Any]]:
    """Every host, page by page (the API pages hosts)."""
    out: list[dict[str, Any]] = []
    while True:
        page = api.get(f"/api/v1/hosts?limit={PAGE}&offset={len(out)}")
        out.extend(page["hosts"])
        if page.get("next_offset") is None or not page["hosts"]:
            return out


def summary(hosts: Sequence[dict[str, Any]]) -> str:
    counts = Counter(h["state"] for h in hosts)
    return " \u00b7 ".join(f"{state} {counts[state]}" for state in
                           ("new", "assigned", "installing", "installed", "failed") if counts[state])


def screen(hosts: Sequence[dict[str, Any]], rows: int, cols: int, page: int) -> tuple[list[str], int]:
    """The lines to draw on a `rows` x `cols` terminal: a header, then page `page` of the hosts (wrapping to
    the first page after the last); each line cut to the width, so nothing wraps or scrolls. Returns the
    lines and the page drawn."""
    per_page = max(1, rows - 1)
    pages = max(1, -(-len(hosts) // per_page))
    page %= pages
    shown = hosts[page * per_page:(page + 1) * per_page]
    where = (f"hosts {page * per_page + 1}-{page * per_page + len(shown)} of {len(hosts)}, page {page + 1}/{pages}"
             if pages > 1 else f"{len(hosts)} hosts")
    header = f"{where} \u00b7 {summary(hosts) or 'no hosts'} \u00b7 {time.strftime('%H:%M:%S')}"
    lines = [header] + [_with_power(h) for h in shown]
    return [line[:cols] for line in lines], page


def _with_power(host: dict[str, Any]) -> str:
    power = host.get("power")
    return progress_line(host) + (f"  power {power_text(power)}" if power else "")


def _key(host: dict[str, Any]) -> str:
    return f"{host['state']} {(host.get('progress') or {}).get('stage')}"


def run(args: argparse.Namespace) -> int:
    try:
        wanted = {n for text in args.hosts for n in expand_nodes(text)}
    except BadNodes as e:
        return fail(str(e), USAGE)
    api = ApiClient.from_config(load(args))
    tty = sys.stdout.isatty() and not args.json
    shown: dict[str, str] = {}
    page = 0
    while True:
        hosts = all_hosts(api)
        if wanted:
            hosts = [h for h in hosts if h["name"] in wanted]
        if tty:
            size = shutil.get_terminal_size()
            lines, page = screen(hosts, size.lines, size.columns, page)
            # No newline after the last line: the cursor stays on the screen's last row, nothing scrolls.
            sys.stdout.write(HOME_CLEAR + "\n".join(lines))
            page += 1
        else:
            for host in hosts:
                key = _key(host)
                if shown.get(host["name"]) != key:
                    shown[host["name"]] = key
                    if args.json:
                        print(json.dumps({k: v for k, v in host.items() if k != "timeline"}, sort_keys=True))
                    else:
                        print(progress_line(host))
        sys.stdout.flush()
        if args.until_done and hosts and not any(h["state"] in ACTIVE for h in hosts):
            if tty:
                sys.stdout.write("\n")
            return 1 if any(h["state"] == "failed" for h in hosts) else 0
        time.sleep(args.interval)
