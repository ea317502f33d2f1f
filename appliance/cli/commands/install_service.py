"""`imageserver install-service`: put the systemd unit, its drop-in and a config skeleton in place.

The unit runs the imageserver of the install that runs this command (a venv's, the package's). Its
sandbox (ProtectSystem=strict, ProtectHome=yes) is then opened exactly where this install and its config
need it, in a drop-in written from the config: ReadWritePaths= for a state directory outside
/var/lib/imageserver (which StateDirectory= covers), ProtectHome=read-only when the command itself lives
under /home or /root (a checkout's venv). Where the Debian package's unit exists, only the drop-in is written.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path, PurePosixPath

from appliance import shipped
from appliance.config import ConfigError, load_config

UNIT_NAME = "imageserver.service"
CONFIG = PurePosixPath("/etc/imageserver/imageserver.toml")  # the path the unit passes to serve
DEFAULT_STATE_DIR = PurePosixPath("/var/lib/imageserver")  # StateDirectory=imageserver
PACKAGED_UNITS = ("lib/systemd/system", "usr/lib/systemd/system")
DROP_IN = f"etc/systemd/system/{UNIT_NAME}.d/install-service.conf"
HOMES = (PurePosixPath("/home"), PurePosixPath("/root"), PurePosixPath("/run/user"))  # what ProtectHome=yes hides


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "install-service",
        help="install the systemd unit, its drop-in and a commented config skeleton, then print the next step",
        description="Writes /etc/systemd/system/imageserver.service (running this install's imageserver; "
                    "skipped where the package's unit is in /lib/systemd/system), the drop-in "
                    "imageserver.service.d/install-service.conf (ReadWritePaths= for the config's state_dir "
                    "outside /var/lib/imageserver; ProtectHome=read-only if the command lives in a home) and, "
                    "unless one exists, /etc/imageserver/imageserver.toml from the annotated example. Run it "
                    "again after changing state_dir. It starts nothing: `systemctl enable --now imageserver`.",
    )
    p.add_argument("--root", default="/", metavar="DIR", help="install below DIR instead of / (for packaging)")
    p.add_argument("--executable", metavar="PATH", help="imageserver command the unit runs "
                   "(default: this install's, beside its Python, else this Python with -m appliance.cli)")
    p.set_defaults(func=run)


def render_unit(executable: str, man_page: bool = False) -> str:
    """The unit running `executable`; `man_page`: the install has imageserver(8) (the Debian package)."""
    text = shipped.unit_template().replace("@IMAGESERVER@", executable)
    return text.replace("\nDocumentation=", "\nDocumentation=man:imageserver(8) ", 1) if man_page else text


def running_executable() -> str:
    """This install's imageserver command: the script beside this Python (a venv's bin/, the package's
    /usr/lib/imageserver/bin), named by the PATH entry that leads to it if one does (/usr/bin/imageserver)."""
    beside = Path(sys.executable).parent / "imageserver"
    if not (beside.is_file() and os.access(beside, os.X_OK)):
        return f"{sys.executable} -m appliance.cli"
    on_path = shutil.which("imageserver")
    if on_path and Path(on_path).resolve() == beside.resolve():
        return on_path
    return str(beside)


def _under(path: PurePosixPath, parents: tuple[PurePosixPath, ...]) -> bool:
    return any(path == p or p in path.parents for p in parents)


def render_drop_in(executable: str, state_dir: PurePosixPath | None) -> str:
    """The unit's drop-in: the sandbox opened where this install and its config need it (nothing else)."""
    lines = [f"# Written by `imageserver install-service` from {CONFIG}; run it again after changing state_dir.",
             "[Service]"]
    if state_dir is not None and not _under(state_dir, (DEFAULT_STATE_DIR,)):
        lines += ["# state_dir is outside StateDirectory=; ProtectSystem=strict would leave it read-only.",
                  f"ReadWritePaths={state_dir}"]
    command = PurePosixPath(executable.split()[0])
    if _under(command, HOMES):
        lines += [f"# {command} lives in a home, which ProtectHome=yes would hide from the service.",
                  "ProtectHome=read-only"]
    return "\n".join(lines) + "\n"


def _state_dir(config: Path) -> PurePosixPath | None:
    try:
        state_dir = PurePosixPath(load_config(config).appliance.state_dir)
    except ConfigError as e:
        print(f"note: {config} does not load yet ({e}); the drop-in opens no state directory: "
              "run install-service again once it does", file=sys.stderr)
        return None
    # The unit runs in /, where a relative state_dir lands.
    return state_dir if state_dir.is_absolute() else PurePosixPath("/") / state_dir


def run(args: argparse.Namespace) -> int:
    root = Path(args.root)
    executable = args.executable or running_executable()
    packaged = next((root / d / UNIT_NAME for d in PACKAGED_UNITS if (root / d / UNIT_NAME).exists()), None)
    if packaged is not None and not args.executable:
        print(f"kept  {packaged} (the package's unit)")
    else:
        unit = root / "etc/systemd/system" / UNIT_NAME
        unit.parent.mkdir(parents=True, exist_ok=True)
        unit.write_text(render_unit(executable))
        print(f"wrote {unit}")
    config = root / CONFIG.relative_to("/")
    if config.exists():
        print(f"kept  {config} (exists)")
    else:
        config.parent.mkdir(parents=True, exist_ok=True)
        config.write_text(shipped.example_config())
        config.chmod(0o640)
        print(f"wrote {config} (the annotated example: set interface, address, subnet and pool)")
    state_dir = _state_dir(config)
    drop_in = root / DROP_IN
    drop_in.parent.mkdir(parents=True, exist_ok=True)
    drop_in.write_text(render_drop_in(executable, state_dir))
    print(f"wrote {drop_in}")
    if state_dir is not None and not _under(state_dir, (DEFAULT_STATE_DIR,)):
        # ReadWritePaths= of a missing directory fails the start (status 226/NAMESPACE): make it now.
        (root / state_dir.relative_to("/")).mkdir(mode=0o750, parents=True, exist_ok=True)
    print("next: edit the config, check it with `imageserver check-config`, then run:")
    print("      systemctl daemon-reload && systemctl enable --now imageserver")
    return 0
