"""Satellites on the primary: adding and removing one (the use cases the API and the offline CLI share), and
what the satellite routes answer (services/api_satellite.py) as response views: the config document a
satellite mirrors, a report batch's receipt, and the admin's add/remove answers."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field

from domain import install_events
from domain.errors import Conflict, Invalid, NotFound, valid_names
from domain.requests import SatelliteEvent
from domain.views import doc
from protocols.install_report import InvalidReport, check_stage
from protocols.names import satellite_name
from state import satellites
from state.db import Connection
from state.hosts import host_count
from state.images import ImageVersion, list_versions


def add_op(name: str, now: float) -> Callable[[Connection], str]:
    """Add satellite `name`; the op returns its token (shown once). Invalid name, Conflict when it exists or
    the table is full."""
    with valid_names():
        satellite_name(name)
    store = satellites.add_op(name, now)

    def op(conn: Connection) -> str:
        try:
            return str(store(conn))
        except satellites.SatelliteError as e:  # exists, or the table is at its cap
            raise Conflict(str(e)) from None

    return op


def remove_op(name: str) -> Callable[[Connection], None]:
    """Remove satellite `name` (its token stops working); NotFound when there is none."""
    store = satellites.remove_op(name)

    def op(conn: Connection) -> None:
        if not store(conn):
            raise NotFound(f"no satellite named {name}")

    return op


def reports_op(name: str, events: list[SatelliteEvent]) -> Callable[[Connection], tuple[int, int, int]]:
    """Apply satellite `name`'s relayed install reports (state/satellites.apply_reports_op: in order, each
    once); the op returns (applied, dropped, last id). Their shape was parsed (domain/requests.SatelliteEvent);
    a stage or detail that is not an installer's refuses the whole batch as Invalid, naming the event."""
    checked = []
    for i, e in enumerate(events):
        try:
            check_stage(e.stage)
        except InvalidReport as err:
            raise Invalid(f"events[{i}]: {err}") from None
        detail = e.detail if e.detail is None or isinstance(e.detail, str) else json.dumps(e.detail)
        if detail is not None and len(detail) > install_events.MAX_DETAIL:
            raise Invalid(f'"events[{i}].detail" is longer than {install_events.MAX_DETAIL} characters')
        checked.append(satellites.Report(e.id, e.host, e.mac, float(e.time), e.stage, detail))
    store = satellites.apply_reports_op(name, checked, install_events.record_op)

    def op(conn: Connection) -> tuple[int, int, int]:
        try:
            return store(conn)
        except satellites.SatelliteError as err:  # removed since its token was checked
            raise Invalid(str(err)) from None

    return op


@dataclass(frozen=True, slots=True)
class MirroredImage:
    name: str
    version: int
    module: str = field(metadata=doc("the rsync module serving exactly this version on the primary"))
    created: float
    files: int | None
    bytes: int | None
    layout: str | None = field(metadata=doc("JSON: the master client's disk layout"))
    note: str | None
    tree: str = field(metadata=doc("where the tree is inside the satellite module (NAME/vN)"))

    @classmethod
    def of(cls, v: ImageVersion) -> MirroredImage:
        return cls(name=v.name, version=v.version, module=v.module, created=v.created, files=v.files,
                   bytes=v.bytes, layout=v.layout, note=v.note, tree=f"{v.name}/v{v.version}")


@dataclass(frozen=True, slots=True)
class MirroredHost:
    name: str
    mac: str | None
    ip: str | None
    image: str | None
    version: int | None
    state: str
    updated: float


@dataclass(frozen=True, slots=True)
class RsyncSource:
    module: str
    user: str
    port: int


@dataclass(frozen=True, slots=True)
class SatelliteConfig:
    """GET /satellite/v1/config: image versions, hosts and the rsync module to mirror from; no secrets."""

    satellite: str
    images: list[MirroredImage]
    hosts: list[MirroredHost]
    rsync: RsyncSource
    hosts_complete: bool = field(default=True, metadata=doc(
        "hosts lists every host (not cut at the cap): a satellite removes the mirrored hosts it leaves out"))


def satellite_config(reader: Connection, name: str, max_hosts: int, rsync_port: int) -> SatelliteConfig:
    hosts = [MirroredHost(**h) for h in satellites.mirrored_hosts(reader, max_hosts)]
    return SatelliteConfig(
        satellite=name, images=[MirroredImage.of(v) for v in list_versions(reader)], hosts=hosts,
        rsync=RsyncSource(module=satellites.RSYNC_MODULE, user=satellites.rsync_user(name), port=rsync_port),
        hosts_complete=len(hosts) < max_hosts or host_count(reader) == len(hosts))


@dataclass(frozen=True, slots=True)
class ReportsReceipt:
    """POST /satellite/v1/reports."""

    delivered: int = field(metadata=doc("the last applied report id (the satellite drops its buffer up to it)"))
    applied: int
    dropped: int = field(metadata=doc("reports for hosts the primary does not know"))


@dataclass(frozen=True, slots=True)
class SatelliteAdded:
    name: str
    token: str = field(metadata=doc("shown in this answer only (the primary keeps its hash)"))


@dataclass(frozen=True, slots=True)
class SatelliteRemoved:
    removed: str
