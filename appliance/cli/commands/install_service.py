"""`imageserver install-service`: put the systemd unit and a config skeleton in place."""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from appliance import shipped

UNIT_NAME = "imageserver.service"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "install-service",
        help="install the systemd unit and a commented config skeleton, then print the next step",
        description="Writes /etc/systemd/system/imageserver.service (pointing at this imageserver executable) "
                    "and, unless one exists, /etc/imageserver/imageserver.toml from the annotated example. "
                    "It does not start anything: edit the config, then `systemctl enable --now imageserver`.",
    )
    p.add_argument("--root", default="/", metavar="DIR", help="install below DIR instead of / (for packaging)")
    p.add_argument("--executable", metavar="PATH", help="imageserver command the unit runs "
                   "(default: the one on PATH, else this Python with -m appliance.cli)")
    p.set_defaults(func=run)


def render_unit(executable: str) -> str:
    return shipped.unit_template().replace("@IMAGESERVER@", executable)


def run(args: argparse.Namespace) -> int:
    root = Path(args.root)
    executable = args.executable or shutil.which("imageserver") or f"{sys.executable} -m appliance.cli"
    unit = root / "etc/systemd/system" / UNIT_NAME
    unit.parent.mkdir(parents=True, exist_ok=True)
    unit.write_text(render_unit(executable))
    print(f"wrote {unit}")
    config = root / "etc/imageserver/imageserver.toml"
    if config.exists():
        print(f"kept  {config} (exists)")
    else:
        config.parent.mkdir(parents=True, exist_ok=True)
        config.write_text(shipped.example_config())
        config.chmod(0o640)
        print(f"wrote {config} (the annotated example: set interface, address, subnet and pool)")
    print("next: edit the config, check it with `imageserver check-config`, then run:")
    print("      systemctl daemon-reload && systemctl enable --now imageserver")
    return 0
