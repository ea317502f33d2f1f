"""`imageserver machines list | show MAC | assign MAC (--host NAME | --next)`: what was seen on the wire, and making
a seen machine a host."""

from __future__ import annotations

import argparse
import time
from typing import Any

from appliance.cli.commands._common import (
    add_config_option,
    ask_daemon,
    load,
    print_json,
    print_table,
)
from appliance.cli.commands._hostbook import run as via
from appliance.cli.commands._leasebook import when
from appliance.cli.inventoryview import inventory_lines
from domain import hostadmin
from domain.machines import show_machine
from domain.sources import Sources
from domain.views import view_json
from state.hosts import hosts_by_mac
from state.sightings import stored_machines
from state.store import open_offline

ARCH_NAMES = {0: "bios", 6: "efi-ia32", 7: "efi-x64", 9: "efi-x64", 10: "efi-arm32", 11: "efi-arm64",
              16: "efi-x64-http"}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "machines",
        help="machines seen by DHCP and the boot path; assign one to a host",
        description="Every machine that sent DHCP or asked for a boot script: MAC, firmware architecture, "
                    "vendor class, host (if any) and what it boots now. `assign` makes a machine a host: "
                    "--host NAME, or --next for the first host of an addclients range that has no MAC yet. "
                    "A waiting machine picks its install up at its next poll; the host's address becomes "
                    "its reservation at once.",
        epilog="examples:\n"
               "  imageserver machines\n"
               "  imageserver machines assign 52:54:00:12:34:56 --host node7\n"
               "  imageserver machines assign 52:54:00:12:34:56 --next",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_config_option(p)
    p.set_defaults(func=run, action="list", json=False)
    verbs = p.add_subparsers(dest="action", metavar="ACTION")
    ls = verbs.add_parser("list", help="machines, most recently seen first (the default)")
    assign = verbs.add_parser("assign", help="make machine MAC a host")
    assign.add_argument("mac", metavar="MAC")
    which = assign.add_mutually_exclusive_group(required=True)
    which.add_argument("--host", metavar="NAME", help="the host it becomes")
    which.add_argument("--next", action="store_true", help="the next host of an addclients range without a MAC")
    show = verbs.add_parser("show", help="one machine: its sighting, host, next boot and hardware inventory")
    show.add_argument("mac", metavar="MAC")
    for verb in (ls, assign, show):
        add_config_option(verb)
        verb.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="print JSON for scripts")


def run(args: argparse.Namespace) -> int:
    cfg = load(args)
    if args.action == "assign":
        body = {"next": True} if args.next else {"host": args.host}

        def offline(book: Any, now: float) -> tuple[dict[str, Any], list[Any]]:
            host, ops = hostadmin.assign_machine(book, args.mac, None if args.next else args.host, now)
            return hostadmin.host_json(host), ops

        host = via(cfg, lambda api: api.post(f"/api/v1/machines/{args.mac}/assign", body)["host"], offline,
                   "assign")
        if args.json:
            print_json(host)
        else:
            print(f"machine {host['mac']} is host {host['name']} ({host['state']}"
                  + (f", {host['ip']}" if host.get("ip") else "") + ")")
        return 0
    if args.action == "show":
        return _show(cfg, args)
    machines = _list(cfg)
    if args.json:
        print_json(machines)
        return 0
    now = time.time()

    rows = [{**m, "arch": ARCH_NAMES.get(m["arch"], m["arch"]) if m.get("arch") is not None else None,
             "seen": when(m.get("last_seen"), now), "boot": m.get("boot") if isinstance(m.get("boot"), str) else None}
            for m in machines]
    print_table(rows, ["mac", "arch", "vendor_class", "host", "host_state", "boot", "seen"],
                ["MAC", "ARCH", "VENDOR CLASS", "HOST", "STATE", "BOOTS", "LAST SEEN"])
    return 0


def _show(cfg: Any, args: argparse.Namespace) -> int:
    answered, machine = ask_daemon(cfg, lambda api: api.get(f"/api/v1/machines/{args.mac}"))
    if not answered:
        conn = open_offline(cfg.state_dir)
        try:
            machine = view_json(show_machine(Sources(conn), args.mac))  # a refusal escapes: exitcodes.py
        finally:
            conn.close()
    assert machine is not None
    if getattr(args, "json", False):
        print_json(machine)
        return 0
    boot = machine.get("boot")
    arch = machine.get("arch")
    lines = [f"machine    {machine['mac']}",
             f"host       {machine.get('host') or '-'}"
             + (f" ({machine['host_state']})" if machine.get("host") else ""),
             f"firmware   {ARCH_NAMES.get(arch, arch) if arch is not None else '-'}"
             + (f", vendor class {machine['vendor_class']}" if machine.get("vendor_class") else ""),
             f"seen       {when(machine.get('last_seen'), time.time()) if machine.get('last_seen') else 'never'}"]
    if isinstance(boot, dict):
        lines.append(f"next boot  {boot.get('kind')}: {boot.get('reason')}")
    lines += inventory_lines(machine.get("inventory"))
    print("\n".join(lines))
    return 0


def _list(cfg: Any) -> list[dict[str, Any]]:
    def pages(api: Any) -> list[dict[str, Any]]:
        # The API answers a page at a time; the CLI lists them all (the table is capped).
        out: list[dict[str, Any]] = []
        offset: int | None = 0
        while offset is not None:
            page = api.get(f"/api/v1/machines?limit=1000&offset={offset}")
            out.extend(page["machines"])
            offset = page.get("next_offset")
        return out

    answered, result = ask_daemon(cfg, pages)
    if answered:
        return result  # type: ignore[return-value]

    conn = open_offline(cfg.state_dir)
    try:
        hosts = hosts_by_mac(conn)
        out = []
        for machine in stored_machines(conn):
            m = machine.as_dict()
            m["host"], m["host_state"] = hosts.get(machine.mac, (None, None))
            out.append(m)
        return out
    finally:
        conn.close()
