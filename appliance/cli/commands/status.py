"""`imageserver status`: what the running daemon says about itself (GET /api/v1/status)."""

from __future__ import annotations

import argparse
from typing import Any

from appliance.cli.apiclient import ApiClient, ApiError, ApiUnavailable
from appliance.cli.commands._common import add_config_option, add_json_option, load, print_json, print_table
from appliance.cli.exitcodes import CommandFailed, exit_code


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("status", help="show the running daemon's services, counters and counts",
                       description="Ask the running imageserver (its HTTP API, [http] listen/port of the config) "
                                   "for its status. Exit 5 if it is not running (the exit codes: imageserver --help).")
    add_config_option(p)
    add_json_option(p)
    p.set_defaults(func=run)


def _duration(seconds: float) -> str:
    s = int(seconds)
    days, s = divmod(s, 86400)
    hours, s = divmod(s, 3600)
    minutes, s = divmod(s, 60)
    if days:
        return f"{days}d {hours}h {minutes}m"
    if hours:
        return f"{hours}h {minutes}m"
    return f"{minutes}m {s}s" if minutes else f"{s}s"


def _counters(counters: dict[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in counters.items()) or "-"


def _installers(present: dict[str, dict[str, str]]) -> str:
    """Each architecture with an installer, and where in the boot root (mkbootenv [--arch] builds them)."""
    return "   ".join(f"{arch} ({files['kernel'].rpartition('/')[0]}/)" for arch, files in present.items()) or \
        "none (build one with: imageserver mkbootenv)"


def render(doc: dict[str, Any]) -> None:
    """The status document as people read it (kept plain: it ends up in tickets)."""
    print(f"imageserver {doc.get('version', '?')}   up {_duration(float(doc.get('uptime') or 0))}   "
          f"config {doc.get('config') or '-'}   state {doc.get('state_dir') or '-'}")
    print()
    services: dict[str, dict[str, Any]] = doc.get("services") or {}
    rows = [{"service": name, "state": s.get("state"), "listen": ",".join(s.get("listen") or []) or "-",
             "counters": _counters(s.get("counters") or {})} for name, s in services.items()]
    print_table(rows, ["service", "state", "listen", "counters"])
    problems = [f"{name}: {s['error']}" for name, s in services.items() if s.get("error")]
    boot = services.get("bootfiles") or {}
    for name in boot.get("missing") or []:
        info = (boot.get("files") or {}).get(name, {})
        problems.append(f"boot file {name} missing: {info.get('source', '?')} (apt-get install "
                        f"{info.get('package', '?')})")
    for name in (boot.get("installer") or {}).get("missing") or []:
        problems.append(f"installer {name} missing (build it with: imageserver mkbootenv)")
    counts: dict[str, Any] = doc.get("counts") or {}
    if counts:
        print()
        parts = []
        for key in ("leases", "reservations", "hosts", "machines", "images"):
            if key in counts:
                extra = f" ({counts['active_leases']} active)" if key == "leases" and "active_leases" in counts else ""
                parts.append(f"{key} {counts[key]}{extra}")
        print("counts   " + "   ".join(parts))
    if "installers" in boot:
        print(f"installers   {_installers(boot['installers'])}")
    if problems:
        print()
        for p in problems:
            print(f"warning  {p}")


def run(args: argparse.Namespace) -> int:
    client = ApiClient.from_config(load(args))
    try:
        doc = client.get("/api/v1/status")
    except ApiUnavailable:
        raise ApiUnavailable(f"the imageserver is not running (nothing answers at {client.base_url}); "
                             "start it with `imageserver serve` or `systemctl start imageserver`") from None
    except ApiError as e:
        raise CommandFailed(f"status request failed: {e}", code=exit_code(e)) from None
    if args.json:
        print_json(doc)
    else:
        render(doc)
    return 0
