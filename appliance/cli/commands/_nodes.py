"""NODES on the command line: one host name, or the hostlist syntax HPC sites use (`node[001-300]`,
`rack[1-2]-n[01-40]`, `node1,node5,gpu[1-4]`), expanded by ClusterShell's NodeSet; and the per-host
result table the commands that take NODES print."""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from appliance.cli.apiclient import ApiClient
from appliance.cli.commands._common import ask_daemon, print_json, print_table
from appliance.config import Config
from domain.nodesets import BadRange, expand

NODES_HELP = "a host name or a range: node[001-300], rack[1-2]-n[01-40], node1,node7"


class BadNodes(ValueError):
    """NODES does not parse: the message says where."""


def add_nodes_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("nodes", metavar="NODES", help=NODES_HELP)


def expand_nodes(text: str) -> list[str]:
    """The host names NODES names, in NodeSet's order (by prefix, then number), each once (domain.nodesets)."""
    try:
        return expand(text)
    except BadRange as e:
        raise BadNodes(str(e)) from None


@dataclass(slots=True)
class Outcome:
    """What a command did to one host: `detail` for the table, `data` (the host's JSON) for --json."""

    host: str
    ok: bool
    detail: str
    data: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"host": self.host, "ok": self.ok}
        if self.ok or self.data:  # a failure may have a part done (marked for reinstall, its BMC failed)
            out["result"] = self.data
        if not self.ok:
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


def bulk_call(cfg: Config, path: str, body: dict[str, Any], *, wait: float | None = None) -> list[Outcome] | None:
    """One request for many hosts (POST /api/v1/bulk/...): each host's outcome, or None when no daemon runs
    (the caller then goes host by host on the state database). `wait`: seconds the daemon may take."""

    def online(api: ApiClient) -> list[dict[str, Any]]:
        client = dataclasses.replace(api, timeout=wait) if wait else api
        return list(client.post(path, body)["results"])

    answered, results = ask_daemon(cfg, online, writes=True)
    if not answered:
        return None
    # a host's data as the one-host commands print it: its record (and the BMC's answer, where one was called)
    return [Outcome(r["host"], r["ok"], r.get("error") or "",
                    {**(r.get("record") or {}), **({"power": r["power"]} if r.get("power") else {})})
            for r in results or []]


def print_outcomes(outcomes: Sequence[Outcome], *, as_json: bool) -> int:
    """The per-host result table (or JSON list); exit 1 when any host failed."""
    if as_json:
        print_json([o.as_json() for o in outcomes])
    else:
        print_table([{"host": o.host, "result": "ok" if o.ok else "FAILED", "detail": o.detail} for o in outcomes],
                    ["host", "result", "detail"])
    return 0 if all(o.ok for o in outcomes) else 1
