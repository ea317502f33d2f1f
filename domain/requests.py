"""Request bodies, one dataclass each: handlers parse the JSON into them (domain/bodies.parse_body: the shape,
each key's type, unknown keys), and services/openapi_schema.py generates their schemas from the same fields.
What a value means (a MAC's spelling, a stage, a range) is then the use case's check.

PATCH /api/v1/hosts/{name} is parsed for its shape too, but the keys it carries are what changes (a key set
to null clears), so its handler hands the book the checked mapping rather than the instance.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any

import msgspec

from domain.updates import STAGES as UPDATE_STAGES
from domain.views import doc
from state.hosts import HOST_STATES
from state.satellites import MAX_EVENTS_PER_REPORT


@dataclass(frozen=True, slots=True)
class NewReservation:
    """POST /api/v1/reservations."""

    mac: str
    ip: str
    hostname: str | None = field(default=None, metadata=doc(omit_none=True))


@dataclass(frozen=True, slots=True)
class HostChange:
    """PATCH /api/v1/hosts/{name}: the keys given change (null or "" clears)."""

    mac: str | None = None
    ip: str | None = None
    image: str | None = None
    version: int | None = None
    state: str | None = field(default=None, metadata=doc(omit_none=True, enum=list(HOST_STATES)))
    transport: str | None = field(default=None, metadata=doc(
        "rsync, bittorrent or multicast; null or \"\": the image's default"))
    profile: str | None = field(default=None, metadata=doc(
        "the profile it inherits image, version, transport, kernel arguments and BMC from; null or \"\": none"))
    kernel_args: str | None = field(default=None, metadata=doc(
        "added to the installer's kernel command line; null or \"\": its profile's"))


@dataclass(frozen=True, slots=True)
class ScriptBody:
    """PUT /api/v1/hosts/{name}/script."""

    script: str | None = None


@dataclass(frozen=True, slots=True)
class AddclientsBody:
    """POST /api/v1/addclients."""

    base: str
    range: str = field(metadata=doc(example="1-300"))
    image: str | None = field(default=None, metadata=doc(omit_none=True))
    version: int | None = field(default=None, metadata=doc(omit_none=True))
    pad: int | None = field(default=None, metadata=doc(omit_none=True))
    first_ip: str | None = field(default=None, metadata=doc(omit_none=True))
    dry_run: bool | None = field(default=None, metadata=doc(omit_none=True))
    macs: list[list[str | None]] | None = field(default=None, metadata=doc(
        "[MAC, HOSTNAME or null] per machine", omit_none=True))
    profile: str | None = field(default=None, metadata=doc(
        "the profile the new hosts inherit from (404 if there is none of that name)", omit_none=True))


@dataclass(frozen=True, slots=True)
class AssignBody:
    """POST /api/v1/machines/{mac}/assign: {"host": NAME} or {"next": true}."""

    host: str | None = field(default=None, metadata=doc(omit_none=True))
    next: bool | None = field(default=None, metadata=doc(omit_none=True))


@dataclass(frozen=True, slots=True)
class InstallEvent:
    """POST /install/{mac}/events: one installer report."""

    stage: str = field(metadata=doc("a short lower-case word: installer, partition, rsync, ..., done, failed, "
                                    "progress"))
    detail: Any = field(default=None, metadata=doc("text, or an object (failed: {stage, reason})"))
    bytes: int | None = field(default=None, metadata=doc("bytes copied so far (needed by progress)",
                                                         omit_none=True))
    total: int | None = field(default=None, metadata=doc("bytes to copy, where known", omit_none=True))


@dataclass(frozen=True, slots=True)
class UpdateEvent:
    """POST /api/v1/hosts/{name}/update-events: one updateclient report."""

    stage: str = field(metadata=doc(enum=[s for s in UPDATE_STAGES if s != "autoinstall"]))
    image: str | None = None
    version: int | str | None = field(default=None, metadata=doc("N or \"vN\""))
    detail: str | None = None


@dataclass(frozen=True, slots=True)
class SatelliteEvent:
    """One install report a satellite took from an installer, numbered in the satellite's own order."""

    id: Annotated[int, msgspec.Meta(ge=1)] = field(metadata=doc(
        "the satellite's sequence number: replays at or below the last applied are skipped"))
    host: Annotated[str, msgspec.Meta(max_length=64)]
    stage: str
    time: float
    mac: str | None = None
    detail: Any = None


@dataclass(frozen=True, slots=True)
class SatelliteReports:
    """POST /api/v1/satellite/reports: install reports a satellite buffered, and how it is doing."""

    events: list[SatelliteEvent] = field(default_factory=list, metadata=doc(
        "install reports in the order they happened, each with its sequence number",
        maxItems=MAX_EVENTS_PER_REPORT))
    versions: list[str] | None = field(default=None, metadata=doc("the image modules it serves", omit_none=True))
    backlog: int | None = field(default=None, metadata=doc("reports still buffered", omit_none=True, minimum=0))


@dataclass(frozen=True, slots=True)
class NewSatellite:
    """POST /api/v1/satellites."""

    name: str
