"""NODES on the command line: one host name, or the hostlist syntax HPC sites use (`node[001-300]`,
`rack[1-2]-n[01-40]`, `node1,node5,gpu[1-4]`), expanded by ClusterShell's NodeSet; and the per-host
result table the commands that take NODES print."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ClusterShell.NodeSet import NodeSet, NodeSetException
from ClusterShell.NodeUtils import GroupResolver, GroupResolverError, GroupSourceError

from appliance.cli.commands._common import print_json, print_table

# `@group` names are not ours to resolve: without a resolver NodeSet would read /etc/clustershell/groups*.
_NO_GROUPS = GroupResolver()
NODES_HELP = "a host name or a range: node[001-300], rack[1-2]-n[01-40], node1,node7"


class BadNodes(ValueError):
    """NODES does not parse: the message says where."""


def add_nodes_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("nodes", metavar="NODES", help=NODES_HELP)


def expand_nodes(text: str) -> list[str]:
    """The host names NODES names, in NodeSet's order (by prefix, then number), each once."""
    try:
        names = list(NodeSet(text, resolver=_NO_GROUPS))
    except NodeSetException as e:
        raise BadNodes(f"cannot read the host range {text!r}: {e}") from None
    except (GroupResolverError, GroupSourceError):
        raise BadNodes(f"the host range {text!r} names a group (@...): node groups are not supported") from None
    if not names:
        raise BadNodes(f"the host range {text!r} names no host")
    return names


@dataclass(slots=True)
class Outcome:
    """What a command did to one host: `detail` for the table, `data` (the host's JSON) for --json."""

    host: str
    ok: bool
    detail: str
    data: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"host": self.host, "ok": self.ok}
        if self.ok:
            out["result"] = self.data
        else:
            out["error"] = self.detail
        return out


def for_each(names: Sequence[str], act: Callable[[str], tuple[str, dict[str, Any]]],
             errors: tuple[type[BaseException], ...]) -> list[Outcome]:
    """`act` on every host; an exception of `errors` is that host's failure, the others go on."""
    out: list[Outcome] = []
    for name in names:
        try:
            detail, data = act(name)
            out.append(Outcome(name, True, detail, data))
        except errors as e:
            out.append(Outcome(name, False, getattr(e, "message", None) or str(e)))
    return out


def print_outcomes(outcomes: Sequence[Outcome], *, as_json: bool) -> int:
    """The per-host result table (or JSON list); exit 1 when any host failed."""
    if as_json:
        print_json([o.as_json() for o in outcomes])
    else:
        print_table([{"host": o.host, "result": "ok" if o.ok else "FAILED", "detail": o.detail} for o in outcomes],
                    ["host", "result", "detail"])
    return 0 if all(o.ok for o in outcomes) else 1
