"""Request bodies of the admin routes whose handlers check the JSON themselves (services/api_hostadmin.py,
services/api_leases.py), declared as dataclasses so their OpenAPI schemas are generated like the answers'.

The handlers still read the body as a mapping (their checks and error messages are the contract the CLI
and tests rely on); these types are the documented shape of that mapping, one field per accepted key.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from domain.views import doc
from state.hosts import HOST_STATES


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


@dataclass(frozen=True, slots=True)
class AssignBody:
    """POST /api/v1/machines/{mac}/assign: {"host": NAME} or {"next": true}."""

    host: str | None = field(default=None, metadata=doc(omit_none=True))
    next: bool | None = field(default=None, metadata=doc(omit_none=True))
