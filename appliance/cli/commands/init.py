"""`imageserver init`: write a first config by asking a few questions (the seed's makedhcpserver).

Lists the box's interfaces, asks which one faces the machines to be installed, reads its address and
subnet, proposes a pool, probes that segment for another DHCP server (proposing proxy mode if one
answers) and writes the annotated config. Every question has a flag, and `--yes` takes every proposal,
so it also runs unattended (provisioning scripts, tests).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from ipaddress import IPv4Address, IPv4Interface
from pathlib import Path

from appliance import shipped, tls
from appliance.cli import initwizard as w
from appliance.cli.commands._common import add_config_option, config_path, fail
from appliance.config import ConfigError, load_config
from services.dhcp_server_probe import probe, probe_mac

PROBE_SECONDS = 2.0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "init",
        help="write a first configuration by asking a few questions (interface, pool, DHCP mode)",
        description="Lists this box's interfaces, asks for the provisioning interface, proposes a DHCP pool that "
                    "avoids this box's and the router's addresses, probes the segment for another DHCP server "
                    "(proxy mode if one answers) and writes an annotated config. Each question has a flag; "
                    "--yes accepts every proposal without asking. An existing file is kept unless --force.",
    )
    add_config_option(p)
    p.add_argument("--interface", metavar="NAME", help="the provisioning interface (faces the machines to install)")
    p.add_argument("--address", metavar="IP/PREFIX",
                   help="this box's address there (default: the interface's first IPv4 address)")
    p.add_argument("--pool", metavar="FIRST-LAST", help="dynamic addresses (default: upper half of the subnet)")
    p.add_argument("--router", metavar="IP", help="router to hand out (default: the interface's default gateway, "
                                                  "else none: an isolated segment)")
    p.add_argument("--mode", choices=("auto", "authoritative", "proxy"), default="auto",
                   help="DHCP mode; auto (default): proxy if another DHCP server answers the probe")
    p.add_argument("--state-dir", metavar="DIR", help="state directory (default: /var/lib/imageserver)")
    p.add_argument("--output", metavar="FILE", help="where to write (default: --config, $IMAGESERVER_CONFIG, "
                                                    "or /etc/imageserver/imageserver.toml)")
    p.add_argument("--probe-timeout", type=float, default=PROBE_SECONDS, metavar="SECONDS",
                   help=f"how long to listen for other DHCP servers' offers (default {PROBE_SECONDS:g})")
    p.add_argument("--no-probe", action="store_true", help="do not send a DHCPDISCOVER (the mode is then "
                                                          "authoritative unless --mode proxy)")
    p.add_argument("-y", "--yes", action="store_true", help="accept every proposal; ask nothing")
    p.add_argument("--force", action="store_true", help="overwrite an existing config file")
    p.set_defaults(func=run)


class _Prompter:
    """Questions on stdin with a proposed answer in brackets; with --yes, or at end of input, the proposal."""

    def __init__(self, unattended: bool) -> None:
        self.unattended = unattended

    def ask(self, question: str, proposal: str) -> str:
        if self.unattended:
            return proposal
        try:
            answer = input(f"{question} [{proposal}]: ").strip()
        except EOFError:
            self.unattended = True  # nobody is typing: take the proposals from here on
            print()
            return proposal
        return answer or proposal


def run(args: argparse.Namespace) -> int:
    output = Path(args.output) if args.output else config_path(args)
    if output.exists() and not args.force:
        return fail(f"{output} exists already; pass --force to overwrite it (or --output another file)", 2)
    prompt = _Prompter(args.yes)

    try:
        interfaces, gateways = w.read_interfaces()
    except w.WizardError as e:
        if not (args.interface and args.address):
            return fail(str(e), 2)
        interfaces, gateways = [], {}
    print("Interfaces on this box:")
    for iface in interfaces:
        if not iface.loopback:
            print("  " + iface.describe())
    by_name = {i.name: i for i in interfaces}
    proposal = w.default_interface(interfaces, gateways)
    name = args.interface or prompt.ask("Provisioning interface (faces the machines to install)",
                                        proposal.name if proposal else "")
    if not name:
        return fail("no interface with an IPv4 address is up; pass --interface and --address", 2)
    iface = by_name.get(name)
    if iface is None and not args.address:
        return fail(f"no interface named {name!r} (see the list above)", 2)

    try:
        if args.address:
            address = IPv4Interface(args.address if "/" in args.address else f"{args.address}/24")
        elif iface is not None and iface.addresses:
            address = iface.addresses[0] if len(iface.addresses) == 1 else IPv4Interface(prompt.ask(
                f"{name} has several addresses; which one do machines reach this box at",
                str(iface.addresses[0])))
        else:
            return fail(f"{name} has no IPv4 address: give it one (the machines reach the box there) "
                        "or pass --address IP/PREFIX", 2)
        router = IPv4Address(args.router) if args.router else gateways.get(name)
    except ValueError as e:
        return fail(f"bad address: {e}", 2)
    if router is not None and router not in address.network:
        router = None
    print(f"Address {address.ip}, subnet {address.network}, router {router or 'none (isolated segment)'}")

    note = ""
    mode = args.mode
    if args.no_probe:
        note = "No DHCP probe was made."
        if mode == "auto":
            mode = "authoritative"
    else:
        print(f"Looking for another DHCP server on {name} ({args.probe_timeout:g} s) ...", flush=True)
        own = [a.ip for i in interfaces for a in i.addresses] or [address.ip]
        mac = iface.mac if iface is not None and iface.mac else probe_mac()
        result = asyncio.run(probe(name, mac, own, args.probe_timeout))
        if result.error:
            note = f"The DHCP probe failed ({result.error}); the mode was not checked."
            print(f"  {result.error}")
        elif result.dhcp_servers:
            servers = ", ".join(map(str, result.dhcp_servers))
            note = f"The DHCP probe found another DHCP server on this segment: {servers} (proxy mode proposed)."
            print(f"  another DHCP server answers here: {servers}\n"
                  "  -> proxy mode: it keeps handing out addresses, the imageserver adds only the PXE boot answers")
        else:
            proxies = sorted({x.server for x in result.offers})
            note = "The DHCP probe found no other DHCP server on this segment."
            print("  none answered -> authoritative: the imageserver hands out addresses from its pool"
                  + (f" (PXE-only answers came from {', '.join(map(str, proxies))})" if proxies else ""))
        if mode == "auto":
            mode = "proxy" if result.dhcp_servers else "authoritative"
    mode = args.mode if args.mode != "auto" else prompt.ask("DHCP mode (authoritative | proxy)", mode)
    if mode not in ("authoritative", "proxy"):
        return fail(f"mode {mode!r} is neither authoritative nor proxy", 2)

    if mode == "authoritative" and name in gateways:
        print(f"  note: {name} carries this box's default route; authoritative DHCP there answers every machine "
              "on that LAN, not only the ones to install")
    pool = None
    if mode == "authoritative":
        try:
            if args.pool:
                pool = w.parse_pool(args.pool, address)
            else:
                first, last = w.propose_pool(address, [router] if router else [])
                pool = w.parse_pool(prompt.ask("Dynamic pool", f"{first}-{last}"), address)
        except w.WizardError as e:
            return fail(str(e), 2)
    state_dir = Path(args.state_dir or prompt.ask("State directory", "/var/lib/imageserver"))

    # The HTTPS certificate beside the config (the site's TLS settings live there; the daemon reads it).
    answers = w.Answers(interface=name, address=address, mode=mode, pool=pool, router=router,
                        state_dir=state_dir, note=note, tls_dir=output.parent.absolute() / "tls")
    text = w.render_config(shipped.example_config(), answers, written_at=time.strftime("%Y-%m-%d %H:%M"))
    print(f"\nDHCP {mode} on {name}" + (f", pool {pool[0]}-{pool[1]}" if pool else "") + f"; state in {state_dir}")
    if prompt.ask(f"Write {output}? (yes/no)", "yes").lower() not in ("y", "yes"):
        print("nothing written")
        return 1
    output.parent.mkdir(parents=True, exist_ok=True)
    # Written beside the target and checked by the real config loader before it takes the name.
    fd, tmp = tempfile.mkstemp(prefix=f".{output.name}.", dir=output.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, 0o640)
        try:
            load_config(Path(tmp))
        except ConfigError as e:
            return fail(f"the proposed config does not validate ({e}); nothing written", 1)
        os.replace(tmp, output)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    try:
        certificate = tls.ensure(load_config(output), make=True)
    except (ConfigError, OSError) as e:
        return fail(f"wrote {output}, but the HTTPS certificate could not be made: {e}", 1)
    print(f"HTTPS certificate {certificate.cert} ({'made now, self-signed' if certificate.made else 'kept'}; key "
          f"{certificate.key}, mode 0600)\n  SHA-256 fingerprint {certificate.fingerprint}\n"
          "  (workstations check it on their first `imageserver --server https://...`; satellites pin it)")
    print(f"wrote {output}\nnext: imageserver check-config --config {output}; then start the service "
          "(imageserver install-service, systemctl enable --now imageserver)")
    sys.stdout.flush()
    return 0
