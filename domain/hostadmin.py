"""Response views of host editing, scripts, addclients and assignment (services/api_hostadmin.py), declared
once for the answer and its OpenAPI schema."""

from __future__ import annotations

from dataclasses import dataclass, field

from domain.views import doc
from state.addclients import Plan, PlannedHost
from state.hosts import HOST_STATES, Host


@dataclass(frozen=True, slots=True)
class HostRecord:
    """The stored host after a change (state.hosts.Host without its install token)."""

    name: str
    mac: str | None
    ip: str | None
    image: str | None
    version: int | None = field(metadata=doc("null: the image's newest version"))
    state: str = field(metadata=doc(enum=list(HOST_STATES)))
    created: float
    updated: float
    last_seen: float | None
    running_version: int | None
    transport: str | None = field(metadata=doc("the host's own choice (null: its image's default)"))

    @classmethod
    def of(cls, h: Host) -> HostRecord:
        return cls(name=h.name, mac=h.mac, ip=str(h.ip) if h.ip is not None else None, image=h.image,
                   version=h.version, state=h.state, created=h.created, updated=h.updated, last_seen=h.last_seen,
                   running_version=h.running_version, transport=h.transport)


@dataclass(frozen=True, slots=True)
class HostChanged:
    host: HostRecord


@dataclass(frozen=True, slots=True)
class HostScript:
    """The script read from a file: the image's NAME.master, or a host's copy stored by file name."""

    script: str | None = field(metadata=doc("null: the file is missing"))
    override: bool = field(metadata=doc("the host has its own copy"))
    source: str | None = field(metadata=doc("the file it is read from (null: the host has no image)"))


@dataclass(frozen=True, slots=True)
class OwnScript:
    """The host's own copy of its script, stored inline (no file to name)."""

    script: str
    override: bool


@dataclass(frozen=True, slots=True)
class ScriptStored:
    host: str
    override: bool = field(metadata=doc("false: the host uses its image's script again"))


@dataclass(frozen=True, slots=True)
class PlannedHostView:
    name: str
    mac: str | None
    ip: str | None
    image: str | None
    version: int | None
    action: str = field(metadata=doc(enum=["create", "update", "keep"]))
    changes: list[str] = field(metadata=doc("for update: the fields that change"))

    @classmethod
    def of(cls, h: PlannedHost) -> PlannedHostView:
        return cls(name=h.name, mac=h.mac, ip=str(h.ip) if h.ip else None, image=h.image, version=h.version,
                   action=h.action, changes=list(h.changes))


@dataclass(frozen=True, slots=True)
class PlanCounts:
    create: int
    update: int
    keep: int


@dataclass(frozen=True, slots=True)
class AddclientsPlan:
    hosts: list[PlannedHostView]
    counts: PlanCounts


@dataclass(frozen=True, slots=True)
class AddclientsAnswer:
    plan: AddclientsPlan
    dry_run: bool = field(metadata=doc("true: nothing was written"))

    @classmethod
    def of(cls, plan: Plan, dry_run: bool) -> AddclientsAnswer:
        return cls(AddclientsPlan([PlannedHostView.of(h) for h in plan.hosts], PlanCounts(**plan.counts())),
                   dry_run)


@dataclass(frozen=True, slots=True)
class AddclientsClash:
    error: str
    problems: list[str] = field(metadata=doc("each clash, naming both sides"))
