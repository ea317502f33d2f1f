"""The autoinstall script a host is served: which file it runs and the shell variables put on top of it.

Values go into single quotes; a value is refused rather than escaped if it is odd, so no quoting rule of
the shell is ever relied on.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from state.hosts import Host

_SCRIPT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_SAFE_VALUE = re.compile(r"^[A-Za-z0-9 ._:/,+@=-]*$")


class ScriptError(ValueError):
    """A script that cannot be served as asked (a value the shell cannot take, an odd file name)."""


def script_variables(values: Mapping[str, object]) -> str:
    """`KEY='value'` lines (exported) for the top of an autoinstall script; None values are left out."""
    lines = ["# --- set by the imageserver for this host (GET /install/<mac>/script)"]
    for key, value in values.items():
        if value is None:
            continue
        text = str(value)
        if not _SAFE_VALUE.match(text):
            raise ScriptError(f"{key} {text!r} cannot be put into a shell script")
        lines.append(f"{key}='{text}'; export {key}")
    return "\n".join(lines) + "\n# ---\n"


def with_variables(script: str, values: Mapping[str, object]) -> str:
    """The script with the variables block inserted after its #! line (kept first, so it still runs)."""
    block = script_variables(values)
    if script.startswith("#!"):
        first, _, rest = script.partition("\n")
        return f"{first}\n{block}{rest}"
    return "#!/bin/sh\n" + block + script


def inline_script(host: Host) -> str | None:
    """The host's override in hosts.script when it is the script itself (several lines), else None."""
    return host.script if host.script and "\n" in host.script else None


def script_file_name(host: Host) -> str:
    """The file under <state_dir>/scripts/ this host runs: its override name, else `<image>.master`."""
    override = host.script
    name = override if override and "\n" not in override else f"{host.image}.master"
    if not _SCRIPT_NAME.match(name):
        raise ScriptError(f"script name {name!r} is not a plain file name")
    return name
