"""`imageserver hosts set | rm | export | script`: editing hosts (the verbs appliance/cli/commands/hosts.py
registers from here), live through the admin API or offline on the state database."""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import tempfile
import time
import urllib.request
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

from appliance.cli.apiclient import ApiClient, ApiError, ApiUnavailable
from appliance.cli.commands import _bmcverbs, _rootdevice
from appliance.cli.commands._common import (
    add_config_option,
    daemon_busy,
    fail,
    load,
    offline_writer,
    print_json,
)
from appliance.cli.commands._hostbook import run as via
from appliance.cli.commands._leasebook import when
from appliance.cli.commands._nodes import (
    BadNodes,
    add_nodes_argument,
    bulk_call,
    expand_nodes,
    for_each,
    print_outcomes,
)
from appliance.cli.exitcodes import UNREACHABLE, USAGE, CommandFailed
from appliance.cli.installview import effective_image, power_text
from domain import hostadmin, hosts
from domain.errors import DomainError, Invalid, NotFound
from domain.hostsfile import hosts_file
from domain.sources import Sources
from domain.views import view_json
from state.hosts import list_hosts
from state.lease_rows import offline_transaction
from state.statelock import holder
from state.store import open_offline
from state.transports import TRANSPORTS

VERBS = ("set", "rm", "remove", "export", "script")


def register(verbs: argparse._SubParsersAction) -> None:
    st = verbs.add_parser("set", help="change a host's MAC, address, image, version or state",
                          description="Change a host. An address with a MAC is reserved for it at once (live); "
                                      "'' clears a field (--mac '' frees the host for another machine). "
                                      "--state installed with [dhcp] auto_static = on-install makes the "
                                      "host's lease its reservation.")
    add_nodes_argument(st)
    st.add_argument("--mac")
    st.add_argument("--ip")
    st.add_argument("--image")
    st.add_argument("--version", help="a version number, or '' for the newest at install time")
    st.add_argument("--transport", choices=(*TRANSPORTS, ""),
                    help="how its installer fetches the image; '' for the image's default")
    st.add_argument("--state", choices=("new", "assigned", "installing", "installed", "failed"))
    prof = st.add_mutually_exclusive_group()
    prof.add_argument("--profile", metavar="NAME", help="inherit image, version, transport, kernel arguments and "
                                                        "BMC from profile NAME where the host sets none itself")
    prof.add_argument("--no-profile", action="store_true", help="inherit from no profile any more")
    st.add_argument("--kernel-args", metavar="ARGS",
                    help="added to the installer's kernel command line; '' for its profile's")
    st.add_argument("--root-device", metavar="HINTS", help=_rootdevice.HELP)
    _bmcverbs.add_bmc_options(st)
    rm = verbs.add_parser("rm", aliases=["remove"], help="remove hosts (and their reservations)")
    add_nodes_argument(rm)
    ex = verbs.add_parser("export", help="print (or write) the hosts in /etc/hosts format")
    ex.add_argument("-o", "--output", type=Path, metavar="FILE", help="write to FILE instead of printing")
    sc = verbs.add_parser("script", help="the host's own copy of its autoinstall script",
                          description="Print the host's autoinstall script (its own copy, else its image's). "
                                      "--edit opens $EDITOR on a per-host copy (stored in the state database; "
                                      "the next install of this host runs it); --reset goes back to the image's.")
    sc.add_argument("name", metavar="NAME")
    what = sc.add_mutually_exclusive_group()
    what.add_argument("--edit", action="store_true", help="edit the host's own copy with $EDITOR")
    what.add_argument("--reset", action="store_true", help="drop the host's own copy")
    for verb in (st, rm, ex, sc):
        add_config_option(verb)
        verb.add_argument("--json", action="store_true", help="print JSON for scripts")


def _changes(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in ("mac", "ip", "image", "state", "transport", "profile", "kernel_args"):
        value = getattr(args, key)
        if value is not None:
            out[key] = value or None
    if args.no_profile:
        out["profile"] = None
    try:
        if args.version is not None:
            out["version"] = int(args.version) if args.version else None
        if out.get("ip"):
            out["ip"] = str(IPv4Address(out["ip"]))
    except ValueError as e:
        raise Invalid(str(e)) from None
    return out


def run(args: argparse.Namespace) -> int:
    """A refusal escapes as its error (domain, API or CommandFailed): appliance/cli/exitcodes.py maps it."""
    cfg = load(args)
    action = "rm" if args.action == "remove" else args.action
    try:
        if action in ("set", "rm"):
            return _set_or_rm(cfg, args, action)
    except BadNodes as e:
        return fail(str(e), USAGE)
    if action == "export":
        return _export(cfg, args)
    return _script(cfg, args)


def _set_or_rm(cfg: Any, args: argparse.Namespace, action: str) -> int:
    """set / rm NODES: each host through the API (or offline, the same use case), one host as it always was
    (a refusal escapes to exitcodes.py), several with a per-host result table (a host that fails does not stop
    the others; exit 1 when any failed)."""
    names = expand_nodes(args.nodes)
    if action == "set":
        changes = _changes(args)
        bmcs = _bmcverbs.bmc_bodies(args, names) if _bmcverbs.wanted(args) else None
        hints = args.root_device
        if not changes and bmcs is None and hints is None:
            return fail("nothing to change (give --mac, --ip, --image, --version, --transport, --state, --profile, "
                        "--no-profile, --kernel-args, --root-device or --bmc)", USAGE)

    def set_one(name: str) -> tuple[str, dict[str, Any]]:
        def offline_set(book: Any, now: float) -> tuple[dict[str, Any], list[Any]]:
            host, ops = hostadmin.change_host(book, name, changes, now)
            return hostadmin.host_json(host), ops

        said, host = [], {}
        if changes:
            host = via(cfg, lambda api: api.request("PATCH", f"/api/v1/hosts/{name}", changes)["host"], offline_set,
                       f"host {name}")
            said.append(_summary(host))
        if hints is not None:  # which disk its installs go to: its own route, its own table
            host = {**host, "root_device": _rootdevice.apply(cfg, "host", name, hints)}
            said.append(_rootdevice.describe(host["root_device"]))
        if bmcs is not None:  # the host's BMC (power control): its own route, its own table
            body = bmcs[name]
            host = {**host, "bmc": _bmcverbs.apply(cfg, name, body)}
            said.append(_bmcverbs.describe(host["bmc"], forgotten=body is None))
        return "; ".join(said), host

    def rm_one(name: str) -> tuple[str, dict[str, Any]]:
        def offline_rm(book: Any, now: float) -> tuple[dict[str, Any], list[Any]]:
            host, ops = hostadmin.remove_host(book, name)
            return hostadmin.host_json(host), ops

        return "removed", via(cfg, lambda api: api.delete(f"/api/v1/hosts/{name}")["host"], offline_rm,
                              f"host {name}")

    act = set_one if action == "set" else rm_one
    if len(names) == 1 and args.nodes == names[0]:
        detail, host = act(names[0])
        _say(args, host, f"host {names[0]}: {detail}" if action == "set" else f"host {host['name']} removed")
        return 0
    errors = (CommandFailed, DomainError, ApiError, ValueError)
    if action == "rm" or changes:
        # a range in one request (POST /api/v1/bulk/...); with the daemon down, host by host on the database
        body: dict[str, Any] = {"hosts": names, **({"changes": changes} if action == "set" else {})}
        outcomes = bulk_call(cfg, f"/api/v1/bulk/{'remove' if action == 'rm' else 'set'}", body)
        if outcomes is None:
            return print_outcomes(for_each(names, act, errors), as_json=args.json)
        for o in outcomes:
            if o.ok:
                o.detail = "removed" if action == "rm" else _summary(o.data)
        if action == "set" and bmcs is not None:  # each host's own BMC address: one call per host
            changes = {}
            for o in outcomes:
                if o.ok:
                    try:
                        detail, data = set_one(o.host)
                        o.detail, o.data = f"{o.detail}; {detail}", {**o.data, **data}
                    except errors as e:
                        o.ok, o.detail = False, getattr(e, "message", None) or str(e)
        return print_outcomes(outcomes, as_json=args.json)
    return print_outcomes(for_each(names, act, errors), as_json=args.json)


def _summary(host: dict[str, Any]) -> str:
    return (f"{host['state']}, {host.get('ip') or 'no address'}, {host.get('mac') or 'no MAC'}, "
            f"image {host.get('image') or '-'}" + (f", profile {host['profile']}" if host.get("profile") else ""))


def _say(args: argparse.Namespace, data: Any, text: str) -> None:
    if args.json:
        print_json(data)
    else:
        print(text)


def _export(cfg: Any, args: argparse.Namespace) -> int:
    text: str | None = None
    if cfg.http.enabled:
        try:
            api = ApiClient.from_config(cfg)

            with urllib.request.urlopen(api.base_url + "/hosts", timeout=api.timeout) as resp:
                text = resp.read().decode()
        except (ApiUnavailable, OSError):
            text = None
    if text is None:
        conn = open_offline(cfg.state_dir)
        try:
            text = hosts_file(list_hosts(conn), cfg.appliance.domain)
        finally:
            conn.close()
    if args.output:
        args.output.write_text(text)
        print(f"wrote {sum(1 for line in text.splitlines() if line and not line.startswith('#'))} hosts "
              f"to {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


def _script(cfg: Any, args: argparse.Namespace) -> int:
    api = ApiClient.from_config(cfg)
    try:
        current = api.get(f"/api/v1/hosts/{args.name}/script")
        live = True
    except ApiUnavailable as e:
        live = False
        if args.edit or args.reset:
            running = holder(cfg.state_dir)
            if running is not None:
                raise CommandFailed(daemon_busy(cfg, running, str(e)), code=UNREACHABLE) from None
        conn = open_offline(cfg.state_dir)
        try:
            current = view_json(hostadmin.host_script(conn, cfg.state_dir / "scripts", args.name))  # as the API
        finally:
            conn.close()

    def store(script: str | None) -> None:
        if live:
            api.request("PUT", f"/api/v1/hosts/{args.name}/script", {"script": script})
            return

        with offline_writer(cfg):  # the daemon started meanwhile: it owns the database now
            conn = open_offline(cfg.state_dir)
            try:
                with offline_transaction(conn):
                    hostadmin.set_script_op(conn, args.name, script, time.time())(conn)
            finally:
                conn.close()

    if args.reset:
        store(None)
        print(f"host {args.name} runs its image's autoinstall script again")
        return 0
    if not args.edit:
        if args.json:
            print_json(current)
        elif current.get("script") is None:
            return fail(f"host {args.name} has no script yet (no image, or its image has no NAME.master)")
        else:
            sys.stdout.write(current["script"])
        return 0
    text = current.get("script") or "#!/bin/sh\n# the autoinstall script of this host\n"
    edited = _edit(text)
    if edited is None or edited == text:
        print("no change", file=sys.stderr)
        return 0
    store(edited)
    print(f"host {args.name} has its own autoinstall script now (imageserver hosts script {args.name} --reset "
          "to go back)")
    return 0


def _edit(text: str) -> str | None:
    """$VISUAL / $EDITOR (else vi) on a temporary copy; None if the editor failed."""
    editor = os.environ.get("VISUAL") or os.environ.get("EDITOR") or "vi"
    with tempfile.NamedTemporaryFile("w", suffix=".sh", prefix="autoinstall-", delete=False) as f:
        f.write(text)
        path = f.name
    try:
        if subprocess.run([*shlex.split(editor), path]).returncode != 0:
            return None
        return Path(path).read_text()
    finally:
        os.unlink(path)


def list_row(host: dict[str, Any], progress: str) -> dict[str, Any]:
    """A `hosts list` row: the image with its pinned version (else the newest), when the host was last seen."""

    image, version = effective_image(host)
    return {**host, "progress": progress, "seen": when(host.get("last_seen"), time.time()),
            "image": f"{image} v{version}" if image and version else image, "power": power_text(host.get("power"))}

# --------------------------------------------------------------------------- hosts list/show offline


def get_or_offline(cfg: Any, api: Any, path: str) -> Any:
    """GET a hosts API path from the daemon, else build the same answer from the state database."""

    try:
        if path != "/api/v1/hosts":
            return api.get(path)
        listed: list[Any] = []  # every page: the API pages a big fleet
        while True:
            page = api.get(f"{path}?limit=1000&offset={len(listed)}")
            listed.extend(page["hosts"])
            if page.get("next_offset") is None:
                return {**page, "hosts": listed}
    except ApiUnavailable:
        pass
    print(f"imageserver: the daemon is not answering; using the state database in {cfg.state_dir} directly",
          file=sys.stderr)

    conn = open_offline(cfg.state_dir)
    try:
        src, now = Sources(conn), time.time()
        name = path.removeprefix("/api/v1/hosts").strip("/")
        if name:
            try:
                return view_json(hosts.show_host(src, name, now))
            except NotFound as e:
                raise ApiError(404, str(e)) from None
        return {"hosts": [view_json(h) for h in hosts.all_hosts(src, now)]}
    finally:
        conn.close()
