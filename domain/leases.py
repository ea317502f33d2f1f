"""Leases and reservations: the use cases the admin API (services/api_leases.py), the offline CLI (`imageserver
leases`, `reservations`, `makedhcpstatic`) and the host rules (domain/hostbook.py) share over a `LeaseStore`
port (state.leases.LeaseModel: the daemon's live lease book, or one the CLI loads from the state database),
and what the lease routes answer, as views. The rules of reservations live here: which address may be
reserved for a MAC, and which leases makedhcpstatic turns into reservations; the book only stores.

The lease book (state.leases) renders a lease or reservation as `as_dict` for the CLI as well; a view
is built from that dict (`LeaseView(**lease.as_dict(now))`), so a field added there and not declared
here fails loudly instead of going undocumented.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network
from typing import Protocol

from domain.errors import Conflict, Invalid, NotFound, valid_names
from domain.views import doc
from protocols.mac import normalize_mac
from protocols.names import dns_name
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
    """The reservation side of the lease book (state.leases.LeaseModel implements it): reads, and changes
    written through the book's own writer (the journal live, the caller's transaction offline). It stores
    what the use cases below allow; it checks nothing itself."""

    def leases(self, now: float, *, include_expired: bool = False) -> list[Lease]: ...

    def reservations(self) -> list[Reservation]: ...

    def reservation(self, mac: str) -> Reservation | None: ...

    def reserved_at(self, ip: IPv4Address) -> Reservation | None: ...

    def lease_at(self, ip: IPv4Address) -> Lease | None: ...

    def networks(self) -> list[IPv4Network]: ...

    def is_excluded(self, ip: IPv4Address) -> bool: ...

    def put_reservation(self, mac: str, ip: IPv4Address, now: float, *, hostname: str | None = None,
                        source: str = "manual") -> Reservation: ...

    def remove_reservation(self, mac: str) -> Reservation | None: ...

    def leases_to_reservations(self, leases: Iterable[Lease], now: float, source: str) -> list[Reservation]: ...


def list_leases(book: LeaseStore, now: float, *, include_expired: bool = False) -> LeaseList:
    """GET /api/v1/leases and `imageserver leases`: active leases (and ended ones with include_expired)."""
    return lease_list(book.leases(now, include_expired=include_expired), now)


def list_reservations(book: LeaseStore) -> ReservationList:
    """GET /api/v1/reservations and `imageserver reservations`: lowest address first."""
    return reservation_list(book.reservations())


def check_reservable(book: LeaseStore, mac: str, ip: IPv4Address, now: float) -> None:
    """Conflict unless `ip` may be reserved for `mac`: it lies in a DHCP subnet (inside a pool or not), is not
    the subnet's network or broadcast address, nor the imageserver's own (or an announced router or DNS
    server), nor reserved for another MAC, nor actively leased to another machine (an expired lease of
    another is simply taken over)."""
    net = next((net for net in book.networks() if ip in net), None)
    if net is None:
        where = ", ".join(map(str, book.networks())) or "none configured"
        raise Conflict(f"{ip} is outside every DHCP subnet ({where})")
    if ip in (net.network_address, net.broadcast_address):
        raise Conflict(f"{ip} is the network or broadcast address of {net}")
    if book.is_excluded(ip):
        raise Conflict(f"{ip} is the imageserver's own address or an announced router or DNS server")
    owner = book.reserved_at(ip)
    if owner is not None and owner.mac != mac:
        raise Conflict(f"{ip} is already reserved for {owner.mac}" + (f" ({owner.hostname})" if owner.hostname else ""))
    lease = book.lease_at(ip)
    if lease is not None and lease.mac != mac and lease.active(now):
        raise Conflict(f"{ip} is leased to {lease.mac} for another {int(lease.expires - now)} s; "
                       f"choose another address or wait until the lease ends")


def reserve(book: LeaseStore, mac: str, ip: IPv4Address, now: float, *, hostname: str | None = None,
            source: str = "manual") -> Reservation:
    """Reserve `ip` for `mac` (moving the MAC's reservation), for every caller: the API, the CLI, host
    changes and auto_static. Invalid for a malformed MAC or host name, Conflict (check_reservable) if the
    address may not be reserved."""
    with valid_names():
        mac, name = normalize_mac(mac), dns_name(hostname) if hostname else None
    check_reservable(book, mac, ip, now)
    return book.put_reservation(mac, ip, now, hostname=name, source=source)


def add_reservation(book: LeaseStore, mac: str, ip: str, hostname: str | None, now: float) -> Reservation:
    """POST /api/v1/reservations and `reservations add`: reserve() from the request's text."""
    try:
        address = IPv4Address(ip.strip())
    except ValueError:
        raise Invalid(f"{ip!r} is not an IPv4 address") from None
    return reserve(book, mac, address, now, hostname=hostname)


def remove_reservation(book: LeaseStore, mac: str) -> Reservation:
    """Remove the MAC's reservation (its address goes back to its pool); NotFound if it has none."""
    with valid_names():
        mac = normalize_mac(mac)
    res = book.remove_reservation(mac)
    if res is None:
        raise NotFound(f"no reservation for {mac}")
    return res


def make_static(book: LeaseStore, now: float, source: str = "makedhcpstatic") -> list[Reservation]:
    """makedhcpstatic: every active lease becomes a reservation of the same address (its lease row goes),
    lowest address first. A MAC that has a reservation keeps it (its lease, if any, is left alone)."""
    chosen = [lease for lease in book.leases(now)
              if book.reservation(lease.mac) is None and book.reserved_at(lease.ip) is None]
    return book.leases_to_reservations(chosen, now, source)
