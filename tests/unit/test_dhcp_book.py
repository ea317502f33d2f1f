"""A small in-memory LeaseBook: the reference the DHCP reply tests run against (and its own checks).

It implements the LeaseBook protocol of protocols.dhcp.reply the simple way (linear scans), so the
reply logic is exercised against real allocation behaviour rather than canned answers.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network

from protocols.dhcp.reply import Binding, LeaseBook, Subnet


@dataclass
class MemoryLeaseBook:
    offer_hold: float = 30.0
    decline_hold: float = 600.0
    now: float = 0.0  # current() has no time argument: the book remembers the last time it was told
    reservations: dict[str, tuple[IPv4Address, str | None]] = field(default_factory=dict)
    leases: dict[str, tuple[IPv4Address, float, str | None]] = field(default_factory=dict)
    holds: dict[IPv4Address, tuple[str, float]] = field(default_factory=dict)
    declined: dict[IPv4Address, float] = field(default_factory=dict)
    calls: list[tuple[str, str]] = field(default_factory=list)

    def reserve(self, mac: str, ip: IPv4Address, hostname: str | None = None) -> None:
        self.reservations[mac] = (ip, hostname)

    def _owner(self, ip: IPv4Address, now: float) -> str | None:
        for mac, (rip, _) in self.reservations.items():
            if rip == ip:
                return mac
        for mac, (lip, expires, _) in self.leases.items():
            if lip == ip and expires > now:
                return mac
        hold = self.holds.get(ip)
        if hold is not None and hold[1] > now:
            return hold[0]
        if self.declined.get(ip, float("-inf")) > now:
            return "<declined>"
        return None

    def _free_for(self, mac: str, ip: IPv4Address, subnet: Subnet, now: float) -> bool:
        in_pool = int(subnet.pool_first) <= int(ip) <= int(subnet.pool_last)
        return in_pool and self._owner(ip, now) in (None, mac)

    def current(self, mac: str) -> Binding | None:
        self.calls.append(("current", mac))
        if mac in self.reservations:
            ip, name = self.reservations[mac]
            return Binding(mac, ip, None, name)
        lease = self.leases.get(mac)
        if lease is not None and lease[1] > self.now:
            return Binding(mac, lease[0], lease[1], lease[2])
        return None

    def offer(self, mac: str, subnet: Subnet, requested: IPv4Address | None, now: float) -> IPv4Address | None:
        self.calls.append(("offer", mac))
        self.now = now
        ip = self._choose(mac, subnet, requested, now)
        if ip is not None and mac not in self.reservations:
            self.holds[ip] = (mac, now + self.offer_hold)
        return ip

    def _choose(self, mac: str, subnet: Subnet, requested: IPv4Address | None, now: float) -> IPv4Address | None:
        if mac in self.reservations:
            ip = self.reservations[mac][0]
            return ip if ip in subnet.network else None
        lease = self.leases.get(mac)
        if lease is not None and lease[0] in subnet.network and self._free_for(mac, lease[0], subnet, now):
            return lease[0]
        if requested is not None and self._free_for(mac, requested, subnet, now):
            return requested
        for n in range(int(subnet.pool_first), int(subnet.pool_last) + 1):
            if self._free_for(mac, IPv4Address(n), subnet, now):
                return IPv4Address(n)
        return None

    def commit(
        self, mac: str, ip: IPv4Address, subnet: Subnet, now: float, client_id: bytes | None, hostname: str | None
    ) -> Binding | None:
        self.calls.append(("commit", mac))
        self.now = now
        if mac in self.reservations:
            rip, name = self.reservations[mac]
            return Binding(mac, rip, None, name) if rip == ip else None
        if ip not in subnet.network or not self._free_for(mac, ip, subnet, now):
            return None
        self.holds.pop(ip, None)
        expires = now + subnet.lease_time
        self.leases[mac] = (ip, expires, hostname)
        return Binding(mac, ip, expires, hostname)

    def release(self, mac: str, ip: IPv4Address, now: float) -> None:
        self.calls.append(("release", mac))
        self.now = now
        lease = self.leases.get(mac)
        if lease is not None and lease[0] == ip:
            self.leases[mac] = (ip, now, lease[2])

    def decline(self, mac: str, ip: IPv4Address, now: float) -> None:
        self.calls.append(("decline", mac))
        self.now = now
        self.declined[ip] = now + self.decline_hold
        lease = self.leases.get(mac)
        if lease is not None and lease[0] == ip:
            del self.leases[mac]


SUBNET = Subnet(
    network=IPv4Network("10.99.0.0/24"),
    pool_first=IPv4Address("10.99.0.100"),
    pool_last=IPv4Address("10.99.0.102"),
    router=IPv4Address("10.99.0.1"),
    dns=(IPv4Address("10.99.0.1"),),
    domain="lab.example",
    lease_time=3600,
)
A, B, C, D = "52:54:00:00:00:0a", "52:54:00:00:00:0b", "52:54:00:00:00:0c", "52:54:00:00:00:0d"


def test_reference_book_has_the_lease_book_protocol_signatures() -> None:
    for name in ("current", "offer", "commit", "release", "decline"):
        ours = inspect.signature(getattr(MemoryLeaseBook, name)).parameters
        protocol = inspect.signature(getattr(LeaseBook, name)).parameters
        assert list(ours) == list(protocol), name


def test_offers_are_held_so_two_clients_never_get_the_same_address() -> None:
    book = MemoryLeaseBook()
    assert book.offer(A, SUBNET, None, 0) == IPv4Address("10.99.0.100")
    assert book.offer(B, SUBNET, None, 0) == IPv4Address("10.99.0.101")
    assert book.offer(A, SUBNET, None, 1) == IPv4Address("10.99.0.100")  # same client, same offer
    assert book.commit(B, IPv4Address("10.99.0.100"), SUBNET, 1, None, None) is None


def test_pool_exhaustion_and_expiry() -> None:
    book = MemoryLeaseBook()
    for mac in (A, B, C):
        ip = book.offer(mac, SUBNET, None, 0)
        assert ip is not None and book.commit(mac, ip, SUBNET, 0, None, None) is not None
    assert book.offer(D, SUBNET, None, 0) is None
    assert book.offer(D, SUBNET, None, 3601) is not None  # leases of A..C expired


def test_reservation_wins_and_decline_quarantines() -> None:
    book = MemoryLeaseBook()
    book.reserve(A, IPv4Address("10.99.0.50"), "node-a")
    assert book.offer(A, SUBNET, IPv4Address("10.99.0.101"), 0) == IPv4Address("10.99.0.50")
    assert book.commit(A, IPv4Address("10.99.0.50"), SUBNET, 0, None, None) == Binding(
        A, IPv4Address("10.99.0.50"), None, "node-a"
    )
    book.decline(B, IPv4Address("10.99.0.100"), 0)
    assert book.offer(B, SUBNET, IPv4Address("10.99.0.100"), 1) == IPv4Address("10.99.0.101")
