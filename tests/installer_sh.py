"""Shell text for tests of the installer's shell runtime (appliance/boot/installer: runtime.sh, lib/*.sh,
transports/*.sh): they source its files, as the installer does, instead of cutting functions out of them."""

from __future__ import annotations

from appliance.boot.installer.runtime import HERE as RUNTIME_DIR
from appliance.images.autoinstall import ScriptSettings, header

__all__ = ["LIBS", "RUNTIME_DIR", "RUNTIME_ENV", "prelude", "runtime_header"]

LIBS = ("common", "report", "disks", "filesystems", "image", "network", "system", "bootloader")
# What a test adds to a generated script's environment so it finds the runtime here, not in an initrd.
RUNTIME_ENV = {"INSTALLER_LIB": str(RUNTIME_DIR)}


def prelude(*libs: str, transport: str | None = None, prog: str = "autoinstall") -> str:
    """sh sourcing lib/NAME.sh for each of `libs` (all of them when none), in the runtime's order, and the
    given transport: the functions, none of runtime.sh's defaults or traps."""
    lines = [f"INSTALLER_LIB='{RUNTIME_DIR}'", f"PROG={prog}"]
    lines += [f'. "$INSTALLER_LIB/lib/{lib}.sh"' for lib in LIBS if not libs or lib in libs]
    if transport is not None:
        lines.append(f'. "$INSTALLER_LIB/transports/{transport}.sh"')
    return "\n".join(lines) + "\n"


def runtime_header(name: str = "web", version: int = 1, rsync_port: int = 873, server: str = "") -> str:
    """A plan's first lines (autoinstall.header) sourcing the runtime from this checkout: the installer's
    variables and functions, ready for the calls a test appends."""
    return header(name, version, ScriptSettings(rsync_port=rsync_port, imageserver=server or None),
                  lib=str(RUNTIME_DIR))
