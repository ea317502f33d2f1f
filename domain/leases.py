"""What the lease and reservation routes answer (services/api_leases.py), as response views.

The lease book (state.leases) renders a lease or reservation as `as_dict` for the CLI as well; a view
is built from that dict (`LeaseView(**lease.as_dict(now))`), so a field added there and not declared
here fails loudly instead of going undocumented.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from domain.views import doc, view_json
from state.lease_rows import Lease, Reservation


@dataclass(frozen=True, slots=True)
class LeaseView:
    mac: str
    ip: str
    subnet: str
    hostname: str | None = field(metadata=doc("DHCP option 12, cleaned"))
    starts: float
    expires: float
    active: bool
    client_id: str | None = field(metadata=doc("DHCP option 61, hex"))

    @classmethod
    def of(cls, lease: Lease, now: float) -> LeaseView:
        return cls(**lease.as_dict(now))


@dataclass(frozen=True, slots=True)
class ReservationView:
    mac: str
    ip: str
    hostname: str | None
    source: str = field(metadata=doc("manual | makedhcpstatic | on-install | ..."))
    created: float

    @classmethod
    def of(cls, reservation: Reservation) -> ReservationView:
        return cls(**reservation.as_dict())


@dataclass(frozen=True, slots=True)
class LeaseList:
    """GET /api/v1/leases: lowest address first."""

    now: float
    leases: list[LeaseView]

    def as_json(self) -> dict[str, object]:
        return view_json(self)


@dataclass(frozen=True, slots=True)
class ReservationList:
    """GET /api/v1/reservations and POST /api/v1/makedhcpstatic (the reservations made)."""

    reservations: list[ReservationView]

    def as_json(self) -> dict[str, object]:
        return view_json(self)


@dataclass(frozen=True, slots=True)
class OneReservation:
    """POST /api/v1/reservations (made) and DELETE /api/v1/reservations/{mac} (removed)."""

    reservation: ReservationView

    def as_json(self) -> dict[str, object]:
        return view_json(self)


def lease_list(leases: list[Lease], now: float) -> LeaseList:
    return LeaseList(now, [LeaseView.of(x, now) for x in leases])


def reservation_list(reservations: list[Reservation]) -> ReservationList:
    return ReservationList([ReservationView.of(r) for r in reservations])
