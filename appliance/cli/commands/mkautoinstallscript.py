"""`imageserver mkautoinstallscript`: (re)write an image's autoinstall script, scripts/NAME.master."""

from __future__ import annotations

import argparse

from appliance.cli.commands._common import add_config_option, fail, load
from appliance.cli.exitcodes import exit_code
from appliance.images.autoinstall import generate, script_settings, write_script
from appliance.images.catalog import Catalog, ImageError, parse_version


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "mkautoinstallscript", help="write the autoinstall script of an image (scripts/NAME.master)",
        description="Make scripts/NAME.master from a version's disk layout (recorded by prepareclient) and "
                    "its /etc/fstab: partition, mkfs, mount, rsync the image, fstab with new UUIDs, hostname, "
                    "network, boot loader, post-install hooks. getimage runs this after every capture. "
                    "--print writes the script to stdout instead.")
    add_config_option(p)
    p.add_argument("--image", required=True, metavar="NAME")
    p.add_argument("--version", metavar="N", help="the version to make it from (default: the newest)")
    p.add_argument("--print", action="store_true", help="print the script instead of writing it")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    cfg = load(args)
    catalog = Catalog(cfg.state_dir)
    try:
        iv = catalog.get(args.image, parse_version(args.version) if args.version else None)
        if args.print:
            text, _ = generate(iv, script_settings(cfg))
            print(text, end="")
            return 0
        path = write_script(catalog, iv, script_settings(cfg))
    except ImageError as e:
        return fail(str(e), exit_code(e))
    finally:
        catalog.close()
    print(f"{path} (from {iv.name} v{iv.version})")
    return 0
