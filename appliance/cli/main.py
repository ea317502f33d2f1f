"""`imageserver` — the command line. Each subcommand lives in its own module under appliance/cli/commands/.

A command module defines `register(subparsers)`, which adds its parser and sets `func=run` where
`run(args) -> int`. Exit codes: 0 success, 1 the operation failed, 2 bad usage or bad configuration.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from appliance.cli import commands
from appliance.config import ConfigError
from appliance.daemon.runtime import VERSION

EPILOG = """\
The walk of a machine: a bare machine PXE-boots, gets an address and iPXE from the imageserver,
is told what to boot (the installer, its own disk, or wait for an operator), installs its image
over rsync, and reports each stage. Start with `imageserver serve --config FILE`; an annotated
example config is appliance/data/imageserver.toml
(/usr/share/doc/imageserver/imageserver.toml from the package); `imageserver init` writes one.

Configuration file: --config FILE, else $IMAGESERVER_CONFIG, else /etc/imageserver/imageserver.toml.
"""


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
    try:
        return int(args.func(args) or 0)
    except ConfigError as e:
        print(f"imageserver: configuration error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
