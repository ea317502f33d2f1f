"""Host administration: the use cases the admin API (services/api_hostadmin.py) and the offline CLI
(appliance/cli/commands: hosts set/rm, machines assign, addclients) share, and their response views.

Each use case takes a `HostStore` (the port: domain.hostbook.HostBook over the daemon's live lease book,
or over one the CLI loads from the state database when no daemon runs), checks the change, and returns
what it did with the journal operations that write the host rows; the caller runs them (the journal live,
one transaction offline) inside `writing(...)`. They raise only domain errors.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any, Protocol

from domain.addclients import AddclientsRequest, Plan, PlanError, PlannedHost
from domain.errors import Conflict, DomainError, Invalid, NotFound
from domain.host_errors import HostError, HostNotFound
from domain.views import doc, view_json
from protocols.names import InvalidName, image_name_problem
from state.db import Connection
from state.hosts import HOST_STATES, Host, HostClash, Op, host_by_name, update_host_op


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
    transport: str | None = field(metadata=doc("the host's own choice (null: its profile's, else its image's "
                                               "default)"))
    profile: str | None = field(metadata=doc("the profile it inherits from (null: none)"))
    kernel_args: str | None = field(metadata=doc("its own kernel arguments (null: its profile's)"))

    @classmethod
    def of(cls, h: Host) -> HostRecord:
        return cls(name=h.name, mac=h.mac, ip=str(h.ip) if h.ip is not None else None, image=h.image,
                   version=h.version, state=h.state, created=h.created, updated=h.updated, last_seen=h.last_seen,
                   running_version=h.running_version, transport=h.transport, profile=h.profile,
                   kernel_args=h.kernel_args)


def host_json(host: Host) -> dict[str, Any]:
    """The host as the API shows it after a change (the offline CLI prints the same)."""
    return view_json(HostRecord.of(host))


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


def plan_json(plan: Plan) -> dict[str, Any]:
    """The plan as the API answers it (AddclientsAnswer.plan; the offline CLI prints the same)."""
    return view_json(AddclientsAnswer.of(plan, False).plan)


@dataclass(frozen=True, slots=True)
class AddclientsClash:
    error: str
    problems: list[str] = field(metadata=doc("each clash, naming both sides"))


# --------------------------------------------------------------------------- the use cases


class HostStore(Protocol):
    """What host administration reads and changes (domain.hostbook.HostBook implements it). A change returns
    the host as it will be and the operation that writes its row; the lease book is changed already."""

    def update(self, name: str, changes: Mapping[str, Any], now: float, *,
               source: str = "manual") -> tuple[Host, Op]: ...

    def remove(self, name: str) -> tuple[Host, Op]: ...

    def assign(self, mac: str, name: str | None, now: float) -> tuple[Host, Op]: ...

    def addclients(self, req: AddclientsRequest, now: float, *, dry_run: bool = False,
                   own: Iterable[IPv4Address] = ()) -> tuple[Plan, list[Op]]: ...


class Clashes(Conflict):
    """An addclients plan refused: `problems` names every clash, both sides of each."""

    def __init__(self, message: str, problems: list[str]) -> None:
        super().__init__(message)
        self.problems = problems


@contextmanager
def _refusals() -> Iterator[None]:
    """A host change refused: a HostError is a domain error of its kind already; any other malformed value
    (a MAC, name, address) is Invalid."""
    try:
        yield
    except DomainError:
        raise
    except ValueError as e:
        raise Invalid(str(e)) from None


@contextmanager
def writing(what: str) -> Iterator[None]:
    """Around running a use case's operations: a unique name, MAC or address taken by a change committed after
    the checks (state.hosts.HostClash) is a Conflict naming `what`."""
    try:
        yield
    except HostClash as e:
        raise Conflict(f"{what}: {e}") from None


def change_host(store: HostStore, name: str, changes: Mapping[str, Any], now: float) -> tuple[Host, list[Op]]:
    """hosts set / PATCH /api/v1/hosts/{name}: MAC, address, image, version, state, transport, profile,
    kernel_args (None clears)."""
    with _refusals():
        host, op = store.update(name, changes, now)
    return host, [op]


def remove_host(store: HostStore, name: str) -> tuple[Host, list[Op]]:
    """hosts rm / DELETE /api/v1/hosts/{name}: the host goes, and its reservation."""
    with _refusals():
        host, op = store.remove(name)
    return host, [op]


def assign_machine(store: HostStore, mac: str, name: str | None, now: float) -> tuple[Host, list[Op]]:
    """machines assign / POST /api/v1/machines/{mac}/assign: machine `mac` becomes host `name` (None: the
    next host of an addclients range that has no MAC)."""
    with _refusals():
        host, op = store.assign(mac, name, now)
    return host, [op]


def addclients_request(body: Mapping[str, Any]) -> AddclientsRequest:
    """The range asked for, checked: Invalid for a name that is not one, Clashes for a malformed field."""
    try:
        return AddclientsRequest.from_dict(dict(body))
    except InvalidName as e:
        raise Invalid(str(e)) from None
    except PlanError as e:
        raise Clashes(str(e), list(e.problems)) from None


def add_clients(store: HostStore, req: AddclientsRequest, now: float, *, dry_run: bool = False,
                own: Iterable[IPv4Address] = ()) -> tuple[Plan, list[Op]]:
    """addclients: hosts BASE+n for n in the range; the plan (every host: create, update or keep) and, unless
    dry_run, the writes. Clashes lists every clash; nothing is changed then."""
    try:
        return store.addclients(req, now, dry_run=dry_run, own=own)
    except InvalidName as e:
        raise Invalid(str(e)) from None
    except PlanError as e:
        raise Clashes(str(e), list(e.problems)) from None
    except HostNotFound:
        raise  # no profile of that name: a NotFound, not a clash
    except HostError as e:
        raise Conflict(str(e)) from None


def host_script(reader: Connection, scripts: Path, name: str) -> HostScript | OwnScript:
    """GET /api/v1/hosts/{name}/script and `hosts script NAME`: the host's own copy (inline, or a file name under
    `scripts`), else its image's NAME.master. NotFound: no such host; Conflict: a file name that is not a plain
    name under scripts/ (a row written before image names were checked must not read a file outside it)."""
    host = host_by_name(reader, name)
    if host is None:
        raise NotFound(f"no host named {name!r}")
    own = host.script
    if own and "\n" in own:
        return OwnScript(own, True)
    if not own and host.image is None:  # no image, no script (not a file named "None.master")
        return HostScript(None, False, None)
    file_name = own or f"{host.image}.master"
    if "/" in file_name or file_name.startswith(".") or (not own and image_name_problem(host.image)):
        raise Conflict(f"host {name}: script file {file_name!r} is not a plain name under scripts/")
    master = scripts / file_name
    text = master.read_text(errors="replace") if host.image and master.is_file() else None
    return HostScript(text, bool(own), str(master))


def set_script_op(reader: Connection, name: str, script: str | None, now: float) -> Op:
    """PUT /api/v1/hosts/{name}/script and `hosts script --edit/--reset`: the host's own copy (None: its image's
    again). Invalid: not a script; NotFound: no such host."""
    if script is not None and "\n" not in script.strip("\n") + "\n":
        raise Invalid('"script" must be the script text or null')
    if host_by_name(reader, name) is None:
        raise NotFound(f"no host named {name!r}")
    return update_host_op(name, {"script": script or None}, now)
