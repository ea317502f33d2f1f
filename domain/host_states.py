"""The host state machine: which state changes an operator (or an install) may make.

The state names are the table's (state.hosts.HOST_STATES); the rules about moving between them live here.
"""

from __future__ import annotations

from domain.host_errors import HostConflict
from state.hosts import HOST_STATES

# An installed host goes back to "assigned" to install again (reinstall), never straight to "installing":
# only its installer does that.
TRANSITIONS: dict[str, frozenset[str]] = {
    "new": frozenset({"assigned", "installing", "installed", "failed"}),
    "assigned": frozenset({"new", "installing", "installed", "failed"}),
    "installing": frozenset({"assigned", "installed", "failed"}),
    "installed": frozenset({"assigned", "failed"}),
    "failed": frozenset({"assigned", "installed"}),
}


def check_transition(old: str, new: str) -> None:
    if new not in HOST_STATES:
        raise HostConflict(f"state {new!r} is not one of {', '.join(HOST_STATES)}")
    if old != new and new not in TRANSITIONS.get(old, frozenset()):
        raise HostConflict(f"a host cannot go from {old} to {new} (allowed from {old}: "
                           f"{', '.join(sorted(TRANSITIONS.get(old, ()))) or 'nothing'})")
