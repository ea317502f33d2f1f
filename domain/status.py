"""GET /api/v1/status as response views: the daemon's status document (appliance/daemon/daemon.py builds it,
services/api_status.py adds the transports), declared once for the answer and its OpenAPI schema.

Each service's own status stays a plain object (Service, generated from services/base.ServiceStatus): the
common fields, and fields every server adds of its own (dhcp: mode, subnets, leases; rsyncd: pid, modules...).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from domain.views import doc
from state.satellites import Satellite

_SERVICE = {"$ref": "#/components/schemas/Service"}


@dataclass(frozen=True, slots=True)
class StoreHealth:
    """Whether leases can be committed now (ok false: the state dir is full or failing, new leases are refused)."""

    ok: bool
    commits: int
    last_error: str | None


@dataclass(frozen=True, slots=True)
class SatelliteView:
    name: str
    created: float
    last_contact: float | None
    seconds_since_contact: float | None
    address: str | None
    versions: list[str] = field(metadata=doc("the image versions (rsync modules) it holds"))
    backlog: int | None = field(metadata=doc("install reports it buffers"))
    delivered: int | None

    @classmethod
    def of(cls, satellite: Satellite, now: float) -> SatelliteView:
        return cls(**satellite.as_dict(now))


@dataclass(frozen=True, slots=True)
class Seeder:
    pid: int
    port: int
    running: bool


@dataclass(frozen=True, slots=True)
class BittorrentStatus:
    seeders: dict[str, Seeder] = field(metadata=doc("by rsync module (NAME_vN)"))
    swarms: dict[str, int] = field(metadata=doc("peers per swarm, by rsync module"))


@dataclass(frozen=True, slots=True)
class Transports:
    available: list[str] = field(metadata=doc("the install transports this imageserver can serve"))
    bittorrent: BittorrentStatus | None = field(default=None, metadata=doc(omit_none=True))


@dataclass(frozen=True, slots=True)
class Status:
    version: str
    started: float | None
    uptime: float
    config: str | None = field(metadata=doc("the config file read"))
    state_dir: str
    services: dict[str, dict[str, Any]] = field(metadata=doc(additionalProperties=_SERVICE))
    counts: dict[str, int] = field(metadata=doc("leases, reservations, hosts, machines and images"))
    satellites: list[SatelliteView] = field(metadata=doc("this primary's satellites"))
    store: StoreHealth | None
    transports: Transports | None = field(default=None, metadata=doc(
        "install transports: those this imageserver can serve, and the BitTorrent side's seeders and swarm sizes",
        omit_none=True))
