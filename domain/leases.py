"""Reservations: the use cases the admin API (services/api_leases.py) and the offline CLI (`imageserver
reservations`, `makedhcpstatic`) share over a `LeaseStore` port (state.leases.LeaseModel: the daemon's live
lease book, or one the CLI loads from the state database), and what the lease routes answer, as views.

The lease book (state.leases) renders a lease or reservation as `as_dict` for the CLI as well; a view
is built from that dict (`LeaseView(**lease.as_dict(now))`), so a field added there and not declared
here fails loudly instead of going undocumented.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from ipaddress import IPv4Address
from typing import Protocol

from domain.errors import Conflict, Invalid, NotFound
from domain.views import doc
from state.lease_rows import Lease, Reservation
from state.lease_validators import LeaseError, normalize_mac, valid_hostname


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


@dataclass(frozen=True, slots=True)
class ReservationList:
    """GET /api/v1/reservations and POST /api/v1/makedhcpstatic (the reservations made)."""

    reservations: list[ReservationView]


@dataclass(frozen=True, slots=True)
class OneReservation:
    """POST /api/v1/reservations (made) and DELETE /api/v1/reservations/{mac} (removed)."""

    reservation: ReservationView


def lease_list(leases: list[Lease], now: float) -> LeaseList:
    return LeaseList(now, [LeaseView.of(x, now) for x in leases])


def reservation_list(reservations: list[Reservation]) -> ReservationList:
    return ReservationList([ReservationView.of(r) for r in reservations])


# --------------------------------------------------------------------------- the use cases


class LeaseStore(Protocol):
    """The reservation side of the lease book (state.leases.LeaseModel implements it); a change is written
    through the book's own writer (the journal live, the caller's transaction offline)."""

    def reservations(self) -> list[Reservation]: ...

    def add_reservation(self, mac: str, ip: IPv4Address, now: float, *, hostname: str | None = None,
                        source: str = "manual") -> Reservation: ...

    def remove_reservation(self, mac: str) -> Reservation | None: ...

    def make_static(self, now: float, source: str = "makedhcpstatic") -> list[Reservation]: ...


def add_reservation(book: LeaseStore, mac: str, ip: str, hostname: str | None, now: float) -> Reservation:
    """Reserve `ip` for `mac` (moving the MAC's reservation): Invalid for a malformed MAC, address or name,
    Conflict if the address is another's, leased, outside every subnet or the imageserver's own."""
    try:
        address = IPv4Address(ip.strip())
    except ValueError:
        raise Invalid(f"{ip!r} is not an IPv4 address") from None
    try:
        mac, name = normalize_mac(mac), valid_hostname(hostname) if hostname else None
    except LeaseError as e:
        raise Invalid(str(e)) from None
    try:
        return book.add_reservation(mac, address, now, hostname=name)
    except LeaseError as e:
        raise Conflict(str(e)) from None


def remove_reservation(book: LeaseStore, mac: str) -> Reservation:
    """Remove the MAC's reservation (its address goes back to its pool); NotFound if it has none."""
    try:
        mac = normalize_mac(mac)
    except LeaseError as e:
        raise Invalid(str(e)) from None
    res = book.remove_reservation(mac)
    if res is None:
        raise NotFound(f"no reservation for {mac}")
    return res
