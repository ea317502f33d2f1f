"""The installer's shell runtime: runtime.sh, lib/*.sh, transports/*.sh and per-machine.paths beside this file.

They go into the installer initrd under RUNTIME_PATH (part of its inputs, so of its cache digest), and
every generated NAME.master sources runtime.sh from there: the served script is the plan alone. A script
that runs elsewhere (updateclient on an installed machine) gets lib/common.sh inlined where its body
sources it (`inline`): the same files, never a second copy.
"""

from __future__ import annotations

import re
from pathlib import Path

from appliance.boot.installer.per_machine import per_machine_paths

HERE = Path(__file__).parent
RUNTIME_PATH = "/usr/lib/imageserver/installer"  # in the initrd; $INSTALLER_LIB of the plans


def runtime_files() -> dict[str, Path]:
    """The initrd's runtime files: path inside the initrd -> source file."""
    sources = [HERE / "runtime.sh", *sorted((HERE / "lib").glob("*.sh")), *sorted((HERE / "transports").glob("*.sh")),
               HERE / "per-machine.paths"]
    return {f"{RUNTIME_PATH.lstrip('/')}/{p.relative_to(HERE)}": p for p in sources}


# `. "$INSTALLER_LIB/lib/NAME.sh"` on a line of its own, with the shellcheck directive naming it above.
_INCLUDE = re.compile(r'^(?:# shellcheck source=[^\n]*\n)?\. "\$INSTALLER_LIB/(lib/[a-z]+\.sh)"[^\n]*\n', re.M)
_SHELL_DIRECTIVE = re.compile(r"^# shellcheck shell=sh\b[^\n]*\n")
# A line of its own where a client script lists what is per-machine (updateclient's excludes): the paths
# of per-machine.paths, one a line (an rsync exclude file reads the marker itself as a comment).
_PER_MACHINE = re.compile(r"^# @per-machine\.paths@\n", re.M)


def inline(text: str) -> str:
    """`text` with every `. "$INSTALLER_LIB/lib/NAME.sh"` line replaced by that file's text (less its
    first-line `shellcheck shell=sh`, which only the file on its own needs)."""
    return _INCLUDE.sub(lambda m: _SHELL_DIRECTIVE.sub("", (HERE / m.group(1)).read_text()), text)


def client_script(path: Path) -> bytes:
    """A script for other machines (appliance/data: prepareclient, updateclient) as served: self-contained,
    with the per-machine paths in place of their marker line."""
    paths = "".join(f"{p.path}\n" for p in per_machine_paths(HERE.joinpath("per-machine.paths").read_text()))
    return _PER_MACHINE.sub(lambda _: paths, inline(path.read_text())).encode()
