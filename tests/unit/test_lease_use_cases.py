"""domain/leases.py: the reservation rules, over a store that checks nothing (the LeaseStore port), so the
rules are seen to live in the use cases; the same use cases over the real book are in test_leases.py."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network

import pytest

from domain import leases
from domain.errors import Conflict, Invalid, NotFound
from state.lease_rows import Lease, Reservation

NET = IPv4Network("10.9.0.0/24")
T0 = 5_000.0


def ip(last: int) -> IPv4Address:
    return IPv4Address(f"10.9.0.{last}")


@dataclass
class Store:
    """A LeaseStore that stores whatever it is given: the use cases must refuse what is not allowed."""

    lease_rows: list[Lease] = field(default_factory=list)
    reserved: dict[str, Reservation] = field(default_factory=dict)
    excluded: set[IPv4Address] = field(default_factory=lambda: {ip(1)})
    converted: list[Lease] = field(default_factory=list)

    def leases(self, now: float, *, include_expired: bool = False) -> list[Lease]:
        return sorted((x for x in self.lease_rows if include_expired or x.active(now)), key=lambda x: x.ip)

    def reservations(self) -> list[Reservation]:
        return sorted(self.reserved.values(), key=lambda r: r.ip)

    def reservation(self, mac: str) -> Reservation | None:
        return self.reserved.get(mac)

    def reserved_at(self, at: IPv4Address) -> Reservation | None:
        return next((r for r in self.reserved.values() if r.ip == at), None)

    def lease_at(self, at: IPv4Address) -> Lease | None:
        return next((x for x in self.lease_rows if x.ip == at), None)

    def networks(self) -> list[IPv4Network]:
        return [NET]

    def is_excluded(self, at: IPv4Address) -> bool:
        return at in self.excluded

    def put_reservation(self, mac: str, at: IPv4Address, now: float, *, hostname: str | None = None,
                        source: str = "manual") -> Reservation:
        self.reserved[mac] = Reservation(mac, at, hostname, source, now)
        return self.reserved[mac]

    def remove_reservation(self, mac: str) -> Reservation | None:
        return self.reserved.pop(mac, None)

    def leases_to_reservations(self, chosen: Iterable[Lease], now: float, source: str) -> list[Reservation]:
        made = []
        for lease in chosen:
            self.converted.append(lease)
            made.append(self.put_reservation(lease.mac, lease.ip, now, hostname=lease.hostname, source=source))
        return made


A, B, C = "52:54:00:00:00:0a", "52:54:00:00:00:0b", "52:54:00:00:00:0c"


def test_reserve_refuses_what_the_rules_forbid_whatever_the_store_would_take() -> None:
    store = Store(lease_rows=[Lease(B, ip(50), "10.9.0.0/24", T0 - 10, T0 + 100),
                              Lease(C, ip(60), "10.9.0.0/24", T0 - 900, T0 - 1)])  # C's has ended
    leases.reserve(store, A, ip(10), T0, hostname="node10")
    refusals = [
        (ip(10), r"already reserved for 52:54:00:00:00:0a \(node10\)"),
        (ip(50), "leased to 52:54:00:00:00:0b for another 100 s"),
        (IPv4Address("192.168.1.5"), r"outside every DHCP subnet \(10.9.0.0/24\)"),
        (ip(0), "network or broadcast address of 10.9.0.0/24"),
        (ip(255), "network or broadcast"),
        (ip(1), "imageserver's own address"),
    ]
    for at, why in refusals:
        with pytest.raises(Conflict, match=why):
            leases.reserve(store, C, at, T0)
    assert list(store.reserved) == [A]  # nothing refused reached the store
    with pytest.raises(Invalid, match="not a MAC address"):
        leases.reserve(store, "52:54:00:zz:00:01", ip(11), T0)
    with pytest.raises(Invalid, match="not a valid host name"):
        leases.reserve(store, C, ip(11), T0, hostname="bad_name!")
    # The holder of a lease may reserve its own address; an ended lease of another blocks nothing.
    assert leases.reserve(store, B, ip(50), T0).ip == ip(50)
    made = leases.reserve(store, "52-54-00-00-00-0A", ip(60), T0, hostname="Node60", source="on-assign")
    assert made == Reservation(A, ip(60), "node60", "on-assign", T0)  # MAC and name in their one spelling


def test_add_and_remove_take_the_requests_text() -> None:
    store = Store()
    with pytest.raises(Invalid, match="not an IPv4 address"):
        leases.add_reservation(store, A, "10.9.0.300", None, T0)
    assert leases.add_reservation(store, A.upper(), " 10.9.0.20 ", None, T0).ip == ip(20)
    with pytest.raises(Invalid):
        leases.remove_reservation(store, "nonsense")
    assert leases.remove_reservation(store, A.replace(":", "-")).ip == ip(20)
    with pytest.raises(NotFound, match=f"no reservation for {A}"):
        leases.remove_reservation(store, A)


def test_make_static_chooses_active_unreserved_leases_lowest_address_first() -> None:
    store = Store(lease_rows=[
        Lease(C, ip(70), "10.9.0.0/24", T0 - 10, T0 + 100, hostname="web"),
        Lease(A, ip(40), "10.9.0.0/24", T0 - 10, T0 + 100),  # its MAC has a reservation: keeps it
        Lease(B, ip(30), "10.9.0.0/24", T0 - 900, T0 - 1),  # ended: stays a lease
        Lease("52:54:00:00:00:0d", ip(20), "10.9.0.0/24", T0 - 10, T0 + 100),
    ])
    store.put_reservation(A, ip(15), T0 - 50)
    made = leases.make_static(store, T0)
    assert [(r.mac, r.ip, r.hostname, r.source) for r in made] == [
        ("52:54:00:00:00:0d", ip(20), None, "makedhcpstatic"), (C, ip(70), "web", "makedhcpstatic")]
    assert [x.ip for x in store.converted] == [ip(20), ip(70)]
    assert leases.make_static(store, T0) == []  # what is reserved is not converted again


def test_the_lists_are_the_views_the_api_and_the_cli_print() -> None:
    store = Store(lease_rows=[Lease(A, ip(40), "10.9.0.0/24", T0 - 10, T0 + 100),
                              Lease(B, ip(30), "10.9.0.0/24", T0 - 900, T0 - 1)])
    store.put_reservation(C, ip(9), T0, hostname="pr")
    assert [v.ip for v in leases.list_leases(store, T0).leases] == ["10.9.0.40"]
    listed = leases.list_leases(store, T0, include_expired=True)
    assert listed.now == T0 and [(v.ip, v.active) for v in listed.leases] == [("10.9.0.30", False),
                                                                              ("10.9.0.40", True)]
    assert leases.list_reservations(store) == leases.ReservationList(
        [leases.ReservationView(C, "10.9.0.9", "pr", "manual", T0)])
