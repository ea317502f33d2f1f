"""`imageserver` — the command line. Each subcommand lives in its own module under appliance/cli/commands/.

A command module defines `register(subparsers)`, which adds its parser and sets `func=run` where
`run(args) -> int`. A refusal escapes the command as an exception and becomes its exit code here, by
appliance/cli/exitcodes.py (0 success, 1 failed, 2 usage or configuration, 3 not found, 4 refused,
5 daemon not answering).
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from appliance.cli import commands, exitcodes, offline_audit, remote
from appliance.cli.apiclient import ApiError, ApiUnavailable, CertificateRefused, RemoteUnavailable
from appliance.config import ConfigError
from appliance.daemon.runtime import VERSION
from domain.errors import DomainError

EPILOG = """\
The walk of a machine: a bare machine PXE-boots, gets an address and iPXE from the imageserver,
is told what to boot (the installer, its own disk, or wait for an operator), installs its image
over rsync, and reports each stage. Start with `imageserver serve --config FILE`; an annotated
example config is appliance/data/imageserver.toml
(/usr/share/doc/imageserver/imageserver.toml from the package); `imageserver init` writes one.

Configuration file: --config FILE, else $IMAGESERVER_CONFIG, else /etc/imageserver/imageserver.toml.

From a workstation: --server https://HOST[:PORT] (or $IMAGESERVER_URL) with a token in $IMAGESERVER_TOKEN
or ~/.config/imageserver/token (mode 0600); the server's certificate is pinned on first use in
~/.config/imageserver/known_servers (or checked with --ca FILE). Commands that work remotely:
""" + ", ".join(sorted(remote.REMOTE_COMMANDS)) + """.

""" + exitcodes.epilog()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="imageserver",
        description="Network provisioning appliance: DHCP, TFTP, HTTP, DNS and rsync in one process; "
                    "capture images from master clients and install them on bare machines over PXE.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"imageserver {VERSION}")
    parser.add_argument("-c", "--config", metavar="FILE", help="configuration file (TOML)")
    parser.add_argument("--server", metavar="URL", help="the imageserver to ask, from another machine: "
                                                       "https://HOST[:PORT] (default: $IMAGESERVER_URL, else this box)")
    parser.add_argument("--ca", metavar="FILE", help="with --server: trust the server's certificate if this CA "
                                                     "(PEM) signed it, instead of pinning it on first use")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{commands.__name__}.{info.name}")
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    with offline_audit.run_scope() as writes:
        try:
            remote.select(args.server, args.ca, getattr(args, "command", None))
            code = int(args.func(args) or 0)
        except (ConfigError, DomainError, ApiError, ApiUnavailable, RemoteUnavailable, CertificateRefused,
                exitcodes.CommandFailed) as e:
            print(f"imageserver: {exitcodes.message(e)}", file=sys.stderr)
            code = exitcodes.exit_code(e)
        except KeyboardInterrupt:
            code = 130
        except BrokenPipeError:
            return 0
        offline_audit.record(writes, args, sys.argv[1:] if argv is None else argv, code)
    return code


if __name__ == "__main__":
    sys.exit(main())
