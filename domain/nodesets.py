"""Host ranges: the hostlist syntax HPC sites use (`node[001-300]`, `rack[1-2]-n[01-40]`, `node1,node7`),
expanded by ClusterShell's NodeSet. The one home of the rule: the CLI's NODES argument and the bulk API's
"range" both come here."""

from __future__ import annotations

from ClusterShell.NodeSet import NodeSet, NodeSetException
from ClusterShell.NodeUtils import GroupResolver, GroupResolverError, GroupSourceError

# `@group` names are not ours to resolve: without a resolver NodeSet would read /etc/clustershell/groups*.
_NO_GROUPS = GroupResolver()
MAX_HOSTS = 10_000  # one request, one command: a bound on the work (and the answer) it makes


class BadRange(ValueError):
    """A range that does not parse, names no host or too many: the message says why."""


def expand(text: str, *, limit: int = MAX_HOSTS) -> list[str]:
    """The host names `text` names, in NodeSet's order (by prefix, then number), each once."""
    try:
        nodes = NodeSet(text, resolver=_NO_GROUPS)
        if len(nodes) > limit:
            raise BadRange(f"the host range {text!r} names {len(nodes)} hosts: at most {limit} at once")
        names = list(nodes)
    except NodeSetException as e:
        raise BadRange(f"cannot read the host range {text!r}: {e}") from None
    except (GroupResolverError, GroupSourceError):
        raise BadRange(f"the host range {text!r} names a group (@...): node groups are not supported") from None
    if not names:
        raise BadRange(f"the host range {text!r} names no host")
    return names
