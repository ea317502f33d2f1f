"""Bulk host operations: one request names many hosts (a list, or a range such as node[001-200]) and the answer
says per host what happened. The request and answer types the bulk routes (services/api_bulk.py) and the CLI
share, and which hosts a request names.

The answer's shape: HTTP 200 whenever the request itself is well formed, with `results` holding, per host in
the order named, `ok`, the `status` the one-host route would have answered (200, 400, 404, 409) and the
`error` where it failed; `ok` and `failed` count them. A malformed request (no hosts, a bad range, too many)
is a 400 for the whole. Not 207 Multi-Status: that is WebDAV's, and a plain 200 with per-host statuses is
what a client reads the same way for one host or ten thousand.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from domain.errors import Invalid
from domain.hostadmin import HostRecord
from domain.nodesets import MAX_HOSTS, BadRange, expand
from domain.power import PowerResult
from domain.requests import HostChange
from domain.views import doc


@dataclass(frozen=True, slots=True)
class HostSelection:
    """The hosts a bulk request names: a list, a range, or both (each host once, the list's first)."""

    hosts: list[str] | None = field(default=None, metadata=doc("host names", omit_none=True))
    range: str | None = field(default=None, metadata=doc("a host range: node[001-200], rack[1-2]-n[01-40], "
                                                         "node1,node7", omit_none=True))


@dataclass(frozen=True, slots=True)
class BulkReinstall(HostSelection):
    """POST /api/v1/bulk/reinstall."""

    power_cycle: bool = field(default=False, metadata=doc(
        "then, through each host's BMC, boot it from the network once and power cycle it"))


@dataclass(frozen=True, slots=True)
class BulkSet(HostSelection):
    """POST /api/v1/bulk/set: the same change on every host (the keys of PATCH /api/v1/hosts/{name})."""

    changes: HostChange = field(default_factory=HostChange, metadata=doc(
        'the keys given change on every host (null or "" clears)'))


@dataclass(frozen=True, slots=True)
class BulkRemove(HostSelection):
    """POST /api/v1/bulk/remove."""


@dataclass(frozen=True, slots=True)
class BulkResult:
    host: str
    ok: bool
    status: int = field(metadata=doc("what the one-host route would have answered: 200, 400, 404 or 409"))
    error: str | None = field(default=None, metadata=doc("why it failed", omit_none=True))
    record: HostRecord | None = field(default=None, metadata=doc("the host after the change (or as removed)",
                                                                  omit_none=True))
    power: PowerResult | None = field(default=None, metadata=doc("reinstall with power_cycle: the BMC's result",
                                                                 omit_none=True))


@dataclass(frozen=True, slots=True)
class BulkAnswer:
    """Per host its result; HTTP 200 whenever the request was well formed (see the module's doc)."""

    results: list[BulkResult]
    ok: int = field(metadata=doc("how many hosts succeeded"))
    failed: int = field(metadata=doc("how many failed"))
    seconds: float = field(metadata=doc("the whole call"))

    @classmethod
    def of(cls, results: list[BulkResult], seconds: float) -> BulkAnswer:
        good = sum(1 for r in results if r.ok)
        return cls(results, good, len(results) - good, round(seconds, 3))


def selected(sel: HostSelection) -> list[str]:
    """The host names, each once: the list's, then the range's; Invalid for none, a bad range or too many."""
    names: list[str] = [n for n in (sel.hosts or []) if isinstance(n, str)]
    if sel.range:
        try:
            names += expand(sel.range)
        except BadRange as e:
            raise Invalid(str(e)) from None
    names = list(dict.fromkeys(n.strip().lower() for n in names if n.strip()))
    if not names:
        raise Invalid('no hosts given: "hosts": [NAME, ...] or "range": "node[001-200]"')
    if len(names) > MAX_HOSTS:
        raise Invalid(f"at most {MAX_HOSTS} hosts per call")
    return names


def changes_given(raw: dict[str, Any]) -> dict[str, Any]:
    """The keys of "changes" as sent (PATCH semantics: the keys given change); Invalid when there are none."""
    changes = raw.get("changes")
    if not isinstance(changes, dict) or not changes:
        raise Invalid('"changes": the keys to change on every host, e.g. {"profile": "compute"}')
    return dict(changes)
