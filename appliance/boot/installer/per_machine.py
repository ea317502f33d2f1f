"""The per-machine paths of a system (per-machine.paths beside this file): read here for getimage's capture
excludes and the tests; the installer's shell runtime reads the same file from its initrd."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

PATHS_FILE = Path(__file__).with_name("per-machine.paths")
Action = Literal["drop", "renew", "retie"]
_ACTIONS = ("drop", "renew", "retie")


@dataclass(frozen=True, slots=True)
class PerMachine:
    action: Action
    path: str  # anchored at the system's root; '*' matches within one name


def per_machine_paths(text: str | None = None) -> tuple[PerMachine, ...]:
    """The entries of per-machine.paths (or of `text`), in file order."""
    out: list[PerMachine] = []
    for n, line in enumerate((PATHS_FILE.read_text() if text is None else text).splitlines(), 1):
        fields = line.split()
        if not fields or fields[0].startswith("#"):
            continue
        action, path = fields[0], fields[1] if len(fields) > 1 else ""
        if len(fields) != 2 or action not in _ACTIONS or not path.startswith("/") or ".." in path.split("/"):
            raise ValueError(f"{PATHS_FILE.name}:{n}: not 'drop|renew|retie /absolute/path': {line!r}")
        out.append(PerMachine(action, path))  # type: ignore[arg-type]  # checked against _ACTIONS above
    return tuple(out)


def dropped() -> tuple[str, ...]:
    """The paths an image leaves out and a clone loses."""
    return tuple(p.path for p in per_machine_paths() if p.action == "drop")
