"""Leases and reservations: the DHCP server's address book, in memory, written through to SQLite.

The in-memory indexes are the truth while the daemon runs (the DHCP server consults them per packet);
every change is also handed to a *writer* — `journal.submit` inside the daemon (group commit: the
server awaits `journal.flush()` before it sends an ACK), or a plain connection for CLI commands run
while the daemon is down. At start the model is loaded from the database.

Allocation rules (all per subnet pool):
- Keyed by MAC, never by client-id: the PXE ROM, iPXE, the installer and the installed OS of one
  machine all send different client-ids (or none) but share the NIC, so they share one address.
- A reservation for the MAC wins (on its own subnet); an address reserved for another MAC is never
  offered nor acknowledged.
- A client gets its previous address back if nobody else holds it (its lease row stays after
  expiry or release until the address is reused).
- New addresses come from never-used addresses first (lowest first), then from expired leases,
  oldest expiry first — so a machine that is switched off for a while usually finds its address again.
- An OFFER holds the address for `offer_hold` seconds, in memory only (an OFFER promises nothing
  durable; losing holds on restart only makes a client start over). When a pool has nothing else
  left, the oldest outstanding offer is taken back, so a flood of DISCOVERs cannot lock the pool.
- A DECLINEd address (someone else answers ARP for it) is quarantined for `decline_probation` seconds,
  honoured only from the MAC holding its offer or lease, and only while the pool's quarantined share is
  under `decline_max_share` (spoofed DISCOVER+DECLINE cycles must not take the whole pool out).

Reservations may lie inside or outside a pool; which address may be reserved, and which leases makedhcpstatic
turns into reservations, are the rules of domain/leases.py (the book stores what they allow). One MAC has at
most one reservation: putting another for the same MAC moves it.

Free addresses are found without scanning the pool per packet: per pool, a cursor over never-seen
addresses, a heap of handed-back addresses without a lease row, and a heap of lease expiries. Heap
entries are validated when popped (lazy deletion), and whatever blocks an address (a hold, a
reservation, a quarantine) hands it back to its pool when it ends.

Beside this file: the records and their SQL (lease_rows.py), the pools (lease_pools.py), and what the
book accepts from clients (lease_validators.py).
"""

from __future__ import annotations

import heapq
import logging
import sqlite3
from bisect import bisect_right
from collections.abc import Iterable
from ipaddress import IPv4Address, IPv4Network
from typing import Any

from state.eventlog import EventLog
from state.lease_pools import Hold, Pool, SubnetLike, check_pools, decline_cap
from state.lease_rows import (
    LEASE_ROWS,
    Lease,
    Reservation,
    delete_lease,
    delete_quarantine,
    delete_reservation,
    end_lease,
    lease_row,
    lease_to_reservation,
    put_quarantine,
    read_leases,
    read_quarantine,
    read_reservations,
    upsert_reservation,
)
from state.lease_validators import client_hostname
from state.ratelimit import LimitedLog
from state.writeback import WriteBack

log = EventLog("imageserver.leases")

DECLINE_LOG_INTERVAL = 60.0  # seconds between two decline-refused lines


class LeaseModel:
    """The LeaseBook of the DHCP reply logic, plus the reservations' storage (domain/leases.LeaseStore)."""

    def __init__(self, subnets: Iterable[SubnetLike], writer: WriteBack, *, offer_hold: float = 30.0,
                 decline_probation: float = 600.0, excluded: Iterable[IPv4Address] = (),
                 decline_max_share: float = 0.1) -> None:
        self._wb = writer
        self._write = writer  # ordered single operations
        self.offer_hold = offer_hold
        self.decline_probation = decline_probation
        self.decline_max_share = decline_max_share
        self._declines_refused = 0  # since the last log line about them
        self._declines_logged_at: float | None = None
        self.declines_refused = 0
        # A full pool under a DISCOVER flood reclaims an offer per packet: a few lines, then a count.
        self._limited = LimitedLog(log)
        self._excluded = {int(ip) for ip in excluded}
        self._by_mac: dict[str, Lease] = {}
        self._by_ip: dict[int, Lease] = {}
        self._res_by_mac: dict[str, Reservation] = {}
        self._res_by_ip: dict[int, Reservation] = {}
        self._quarantine: dict[int, float] = {}
        self._quarantine_heap: list[tuple[float, int]] = []
        self._held: dict[int, Hold] = {}
        self._offered: dict[str, int] = {}  # mac -> held ip
        self._pools: dict[IPv4Network, Pool] = {}
        # id(network) -> (network, its pool): see _pool_for. The network is kept so its id stays its own.
        self._pool_by_id: dict[int, tuple[IPv4Network, Pool | None]] = {}
        self._pool_starts: list[int] = []
        self._pool_list: list[Pool] = []
        self._networks: list[IPv4Network] = []
        self.set_subnets(subnets)

    # ---------------------------------------------------------------- loading

    @classmethod
    def load(cls, conn: sqlite3.Connection, subnets: Iterable[SubnetLike], writer: WriteBack, *,
             now: float, offer_hold: float = 30.0, decline_probation: float = 600.0, decline_max_share: float = 0.1,
             excluded: Iterable[IPv4Address] = ()) -> LeaseModel:
        """Build the model from the database (leases, reservations, quarantine still in force)."""
        model = cls((), writer, offer_hold=offer_hold, decline_probation=decline_probation, excluded=excluded,
                    decline_max_share=decline_max_share)
        for n, lease in read_leases(conn):
            model._by_mac[lease.mac] = lease
            model._by_ip[n] = lease
        for n, res in read_reservations(conn):
            model._res_by_mac[res.mac] = res
            model._res_by_ip[n] = res
        for ip, until in read_quarantine(conn, now):
            model._quarantine[ip] = until
            model._quarantine_heap.append((until, ip))
        heapq.heapify(model._quarantine_heap)
        model.set_subnets(subnets)
        return model

    @classmethod
    def offline(cls, conn: sqlite3.Connection, subnets: Iterable[SubnetLike], *, now: float,
                **kwargs: Any) -> LeaseModel:
        """A model whose writes go straight to `conn` (wrap changes in `offline_transaction(conn)`)."""
        return cls.load(conn, subnets, WriteBack(conn=conn), now=now, **kwargs)

    def set_subnets(self, subnets: Iterable[SubnetLike]) -> None:
        """(Re)build the pools, e.g. after SIGHUP; leases, reservations and holds are kept."""
        subnets_list = list(subnets)
        pools: dict[IPv4Network, Pool] = {}
        for s in subnets_list:
            first, last = int(s.pool_first), int(s.pool_last)
            pools[s.network] = Pool(s.network, first, last, cursor=first)
        ordered = sorted(pools.values(), key=lambda p: p.first)
        check_pools(subnets_list)
        self._pools = pools
        self._pool_by_id = {}
        self._pool_list = ordered
        self._pool_starts = [p.first for p in ordered]
        self._networks = list(pools)
        for lease in self._by_ip.values():
            pool = self._pool_of(int(lease.ip))
            if pool is not None:
                pool.expired.append((lease.expires, int(lease.ip), lease.mac))
        for lease in self._by_ip.values():
            self._track(int(lease.ip), lease.expires)
        for pool in ordered:
            heapq.heapify(pool.expired)
        for n, hold in sorted(self._held.items(), key=lambda item: item[1].until):
            pool = self._pool_of(n)
            if pool is not None:
                pool.holds.append((hold.until, n, hold.mac))

    # ---------------------------------------------------------------- LeaseBook (called per packet)

    def current(self, mac: str) -> Reservation | Lease | None:
        """The MAC's reservation, else its lease (which may have expired), else None."""
        return self._res_by_mac.get(mac) or self._by_mac.get(mac)

    def offer(self, mac: str, subnet: SubnetLike, requested: IPv4Address | None, now: float) -> IPv4Address | None:
        """An address for `mac` on `subnet`, held for offer_hold seconds; None if the pool is exhausted."""
        self._expire(now)
        self._limited.flush(now)  # the count of lines held back, once their interval is over
        res = self._res_by_mac.get(mac)
        if res is not None and res.ip in subnet.network:
            return res.ip
        pool = self._pool_for(subnet.network)
        if pool is None:
            return None
        ip = self._choose(pool, mac, requested, now)
        if ip is None:
            return None
        self._hold(ip, mac, now)
        return IPv4Address(ip)

    def commit(self, mac: str, ip: IPv4Address, subnet: SubnetLike, now: float,
               client_id: bytes | None, hostname: str | None) -> Reservation | Lease | None:
        """Bind `ip` to `mac` for the subnet's lease time (written through); None means NAK."""
        self._expire(now)
        n = int(ip)
        pool = self._pool_for(subnet.network)
        if (n & pool.mask != pool.net) if pool is not None else ip not in subnet.network:
            return None
        res = self._res_by_mac.get(mac)
        if res is not None and res.ip in subnet.network:
            if res.ip != ip:
                return None
            self._drop_hold(mac)
            old = self._by_mac.get(mac)
            if old is not None:  # the reservation supersedes whatever the MAC leased before
                self._remove_lease(old)
                self._write(delete_lease(mac))
            return res
        if pool is None or not pool.first <= n <= pool.last or not self._usable(n, mac, now):
            return None
        self._drop_hold(mac, binding=n)
        old = self._by_mac.get(mac)
        starts = old.starts if old is not None and old.ip == ip and old.active(now) else now
        lease = Lease(mac, ip, pool.text, starts, now + subnet.lease_time,
                      client_id, client_hostname(hostname) or (old.hostname if old is not None else None))
        other = self._by_ip.get(n)
        if other is not None and other.mac != mac:
            self._remove_lease(other, hand_back=False)  # an expired lease of another machine, taken over
        if old is not None and old.ip != ip:
            self._remove_lease(old)
        self._by_mac[mac] = lease
        self._by_ip[n] = lease
        self._track(n, lease.expires)
        heapq.heappush(pool.expired, (lease.expires, n, mac))
        if len(pool.expired) > 2 * len(self._by_ip) + 1024:
            self._compact(pool)  # renewals leave stale entries behind; keep the heap proportional
        self._wb.row(LEASE_ROWS, lease_row(lease))
        return lease

    def release(self, mac: str, ip: IPv4Address, now: float) -> None:
        """The client gives the address up: the lease ends now but stays its own until reused."""
        self._drop_hold(mac)
        lease = self._by_mac.get(mac)
        if lease is None or lease.ip != ip or not lease.active(now):
            return
        ended = Lease(lease.mac, lease.ip, lease.subnet, lease.starts, now, lease.client_id, lease.hostname)
        self._by_mac[mac] = ended
        self._by_ip[int(ip)] = ended
        self._track(int(ip), now)
        pool = self._pool_of(int(ip))
        if pool is not None:
            heapq.heappush(pool.expired, (now, int(ip), mac))
        self._write(end_lease(mac, now))

    def decline(self, mac: str, ip: IPv4Address, now: float) -> None:
        """The client found `ip` in use: quarantine it (only if it was this MAC's offer or lease)."""
        n = int(ip)
        lease = self._by_mac.get(mac)
        hold = self._held.get(n)
        mine = (lease is not None and lease.ip == ip) or (hold is not None and hold.mac == mac)
        if not mine or n in self._res_by_ip:
            return
        pool = self._pool_of(n)
        if pool is not None and self.quarantined_in(pool.first, pool.last, now) >= decline_cap(
                pool.last - pool.first + 1, self.decline_max_share):
            self._refuse_decline(mac, ip, pool.text, now)
            return
        self._drop_hold(mac)
        if lease is not None and lease.ip == ip:
            self._remove_lease(lease, hand_back=False)
            self._write(delete_lease(mac))
        self.quarantine(ip, now, mac=mac)

    def quarantined_in(self, first: int, last: int, now: float) -> int:
        """Addresses from `first` to `last` (integers) in quarantine now."""
        return sum(1 for n, until in self._quarantine.items() if first <= n <= last and until > now)

    def _refuse_decline(self, mac: str, ip: IPv4Address, pool: str, now: float) -> None:
        # At most one line a minute, with how many were refused since the last one: a flood is one line.
        self.declines_refused += 1
        self._declines_refused += 1
        if self._declines_logged_at is None or now - self._declines_logged_at >= DECLINE_LOG_INTERVAL:
            log.warning("decline-refused", ip=ip, mac=mac, pool=pool, reason="quarantine-cap",
                        max_share=f"{self.decline_max_share:g}", refused=self._declines_refused)
            self._declines_logged_at = now
            self._declines_refused = 0

    def quarantine(self, ip: IPv4Address, now: float, *, mac: str | None = None,
                   seconds: float | None = None) -> None:
        """Keep `ip` out of offers for a while (a DECLINE, or a conflict probe that got an answer)."""
        n = int(ip)
        until = now + (self.decline_probation if seconds is None else seconds)
        held = self._held.pop(n, None)
        if held is not None and self._offered.get(held.mac) == n:
            del self._offered[held.mac]
        self._quarantine[n] = until
        heapq.heappush(self._quarantine_heap, (until, n))
        self._write(put_quarantine(n, mac, until))
        log.info("quarantined", ip=ip, mac=mac or "-", until=f"{until:.0f}")

    # ---------------------------------------------------------------- reservations

    def holds_address(self, ip: IPv4Address, now: float) -> bool:
        """Whether `ip` is reserved or actively leased: a machine this server gave the address to."""
        n = int(ip)
        lease = self._by_ip.get(n)
        return n in self._res_by_ip or (lease is not None and lease.active(now))

    def reservation(self, mac: str) -> Reservation | None:
        return self._res_by_mac.get(mac)

    def reserved_at(self, ip: IPv4Address) -> Reservation | None:
        return self._res_by_ip.get(int(ip))

    def lease_at(self, ip: IPv4Address) -> Lease | None:
        return self._by_ip.get(int(ip))

    def networks(self) -> list[IPv4Network]:
        """The configured DHCP subnets."""
        return list(self._networks)

    def is_excluded(self, ip: IPv4Address) -> bool:
        """Whether `ip` is the imageserver's own address or an announced router or DNS server."""
        return int(ip) in self._excluded

    def put_reservation(self, mac: str, ip: IPv4Address, now: float, *, hostname: str | None = None,
                        source: str = "manual") -> Reservation:
        """Store `ip` as reserved for `mac` (normalised), moving the MAC's reservation; another machine's offer
        hold or lease on `ip` ends. Whether the reservation may be made is domain/leases.reserve's to decide."""
        n = int(ip)
        holder = self._held.get(n)
        if holder is not None and holder.mac != mac:
            self._drop_hold(holder.mac)  # an offer promises nothing; its client will be NAKed on REQUEST
        previous = self._res_by_mac.get(mac)
        if previous is not None:
            del self._res_by_ip[int(previous.ip)]
        other = self._by_ip.get(n)
        if other is not None and other.mac != mac:
            self._remove_lease(other, hand_back=False)
            self._write(delete_lease(other.mac))
        res = Reservation(mac, ip, hostname, source, previous.created if previous is not None else now)
        self._res_by_mac[mac] = res
        self._res_by_ip[n] = res
        self._write(upsert_reservation(res))
        if previous is not None and previous.ip != ip:
            self._hand_back(int(previous.ip))
        log.info("reservation-added", mac=mac, ip=ip, hostname=hostname or "-", source=source)
        return res

    def remove_reservation(self, mac: str) -> Reservation | None:
        """Remove the MAC's (normalised) reservation; its address goes back to its pool (if inside one)."""
        res = self._res_by_mac.pop(mac, None)
        if res is None:
            return None
        del self._res_by_ip[int(res.ip)]
        self._write(delete_reservation(mac))
        self._hand_back(int(res.ip))
        log.info("reservation-removed", mac=mac, ip=res.ip)
        return res

    def leases_to_reservations(self, leases: Iterable[Lease], now: float, source: str) -> list[Reservation]:
        """Each lease becomes a reservation of its address (same MAC and host name); its lease row goes.
        Which leases may is domain/leases.make_static's to decide."""
        made: list[Reservation] = []
        for lease in leases:
            res = Reservation(lease.mac, lease.ip, lease.hostname, source, now)
            self._remove_lease(lease, hand_back=False)
            self._res_by_mac[res.mac] = res
            self._res_by_ip[int(res.ip)] = res
            self._write(lease_to_reservation(res))
            made.append(res)
        if made:
            log.info("makedhcpstatic", reservations=len(made))
        return made

    # ---------------------------------------------------------------- listing

    def leases(self, now: float, *, include_expired: bool = False) -> list[Lease]:
        return sorted((x for x in self._by_ip.values() if include_expired or x.active(now)), key=lambda x: int(x.ip))

    def reservations(self) -> list[Reservation]:
        return sorted(self._res_by_ip.values(), key=lambda r: int(r.ip))

    def lease(self, mac: str) -> Lease | None:
        return self._by_mac.get(mac)

    def pool_usage(self, pools: Iterable[SubnetLike], now: float) -> list[tuple[int, int, int]]:
        """(active leases in its range, reservations in its subnet, quarantined in its range) per pool.

        Active leases are counted incrementally per pool (_track): /metrics and /api/v1/pools ask at every
        scrape, and a pass over 100,000 leases would hold the event loop for tens of milliseconds."""
        out = []
        for p in pools:
            first, last = int(p.pool_first), int(p.pool_last)
            mine = self._pools.get(p.network)
            if mine is not None and (mine.first, mine.last) == (first, last):
                active = mine.active_count(now)
            else:  # a pool the book does not manage (a config just re-read): count it the slow way
                active = sum(1 for n, lease in self._by_ip.items() if first <= n <= last and lease.expires > now)
            net = p.network
            lo, hi = int(net.network_address), int(net.broadcast_address)
            reserved = sum(1 for n in self._res_by_ip if lo <= n <= hi)
            out.append((active, reserved, self.quarantined_in(first, last, now)))
        return out

    def stats(self) -> dict[str, int]:
        """Cheap counts for the status document (no per-lease work)."""
        return {"leases": len(self._by_ip), "reservations": len(self._res_by_ip), "offers_held": len(self._held),
                "quarantined": len(self._quarantine), "pool_size": sum(p.size for p in self._pool_list)}

    # ---------------------------------------------------------------- internals

    def _usable(self, n: int, mac: str, now: float) -> bool:
        """May `mac` be given address `n` now? (Pool range is checked by the caller.)"""
        if n in self._excluded:
            return False
        res = self._res_by_ip.get(n)
        if res is not None and res.mac != mac:
            return False
        until = self._quarantine.get(n)
        if until is not None and until > now:
            return False
        hold = self._held.get(n)
        if hold is not None and hold.mac != mac and hold.until > now:
            return False
        lease = self._by_ip.get(n)
        return lease is None or lease.mac == mac or not lease.active(now)

    def _choose(self, pool: Pool, mac: str, requested: IPv4Address | None, now: float) -> int | None:
        held = self._offered.get(mac)
        if held is not None and pool.first <= held <= pool.last:
            return held
        lease = self._by_mac.get(mac)
        if lease is not None:
            n = int(lease.ip)
            if pool.first <= n <= pool.last and self._usable(n, mac, now):
                return n
        if requested is not None:
            n = int(requested)
            # A requested address that is another machine's expired lease is left to the ordering below.
            if pool.first <= n <= pool.last and self._usable(n, mac, now) and n not in self._by_ip:
                return n
        for take in (self._take_fresh, self._take_expired, self._steal_hold):
            taken = take(pool, mac, now)
            if taken is not None:
                return taken
        return None

    def _take_fresh(self, pool: Pool, mac: str, now: float) -> int | None:
        # Blocked addresses are dropped here: whatever blocks them hands them back when it ends.
        while pool.returned:
            n = heapq.heappop(pool.returned)
            if n not in self._by_ip and pool.first <= n <= pool.last and self._usable(n, mac, now):
                return n
        while pool.cursor <= pool.last:
            n = pool.cursor
            pool.cursor += 1
            if n not in self._by_ip and self._usable(n, mac, now):
                return n
        return None

    def _take_expired(self, pool: Pool, mac: str, now: float) -> int | None:
        heap = pool.expired
        while heap:
            expires, n, owner = heap[0]
            lease = self._by_ip.get(n)
            if lease is None or lease.mac != owner or lease.expires != expires:
                heapq.heappop(heap)  # stale: renewed, moved or removed since
                continue
            if expires > now:
                break  # the oldest lease is still running: the pool is full
            heapq.heappop(heap)
            if self._usable(n, mac, now):
                return n
        return None

    def _compact(self, pool: Pool) -> None:
        pool.expired = [(x.expires, int(x.ip), x.mac) for x in self._by_ip.values()
                        if pool.first <= int(x.ip) <= pool.last]
        heapq.heapify(pool.expired)

    def _steal_hold(self, pool: Pool, mac: str, now: float) -> int | None:
        """The pool is full: take the oldest outstanding offer. An OFFER promises nothing, and without
        this a burst of DISCOVERs from random MACs would lock every address for offer_hold seconds."""
        while pool.holds:
            until, n, owner = pool.holds.popleft()
            hold = self._held.get(n)
            if hold is None or hold.mac != owner or hold.until != until or owner == mac:
                continue
            del self._held[n]
            if self._offered.get(owner) == n:
                del self._offered[owner]
            if self._usable(n, mac, now):
                # "from" and "for" are keywords: the fields go as a dict.
                fields: dict[str, object] = {"ip": IPv4Address(n), "from": owner, "for": mac, "reason": "pool-full"}
                self._limited.log("offer-reclaimed", now, logging.INFO, "offer-reclaimed", exc_info=None, **fields)
                return n
            self._hand_back(n)
        return None

    def _hold(self, n: int, mac: str, now: float) -> None:
        until = now + self.offer_hold
        previous = self._offered.get(mac)
        if previous is not None and previous != n:
            self._drop_hold(mac)
        self._held[n] = Hold(mac, until)
        self._offered[mac] = n
        pool = self._pool_of(n)
        if pool is not None:
            pool.holds.append((until, n, mac))

    def _drop_hold(self, mac: str, binding: int | None = None) -> None:
        """End the MAC's offer hold; its address goes back to the pool unless it is the one being bound
        (the usual REQUEST: handing it back would only leave a stale entry for the pool to skip)."""
        n = self._offered.pop(mac, None)
        if n is None:
            return
        hold = self._held.get(n)
        if hold is not None and hold.mac == mac:
            del self._held[n]
            if n != binding:
                self._hand_back(n)

    def _expire(self, now: float) -> None:
        """End offer holds and quarantines whose time is up (amortized: each entry is popped once)."""
        for pool in self._pool_list:
            # Offers are queued in the order made, so the ones whose time is up are at the front.
            while pool.holds and pool.holds[0][0] <= now:
                until, n, mac = pool.holds.popleft()
                hold = self._held.get(n)
                if hold is not None and hold.mac == mac and hold.until == until:
                    del self._held[n]
                    if self._offered.get(mac) == n:
                        del self._offered[mac]
                    self._hand_back(n)
        while self._quarantine_heap and self._quarantine_heap[0][0] <= now:
            until, n = heapq.heappop(self._quarantine_heap)
            if self._quarantine.get(n) == until:
                del self._quarantine[n]
                self._write(delete_quarantine(n, until))
                self._hand_back(n)

    def _hand_back(self, n: int) -> None:
        """An address stopped being blocked: make it findable in its pool again."""
        pool = self._pool_of(n)
        if pool is None:
            return
        lease = self._by_ip.get(n)
        if lease is not None:
            heapq.heappush(pool.expired, (lease.expires, n, lease.mac))
        elif n < pool.cursor:
            heapq.heappush(pool.returned, n)

    def _remove_lease(self, lease: Lease, *, hand_back: bool = True) -> None:
        n = int(lease.ip)
        if self._by_mac.get(lease.mac) is lease:
            del self._by_mac[lease.mac]
        if self._by_ip.get(n) is lease:
            del self._by_ip[n]
            self._track(n, None)
            if hand_back:
                self._hand_back(n)

    def _track(self, n: int, expires: float | None) -> None:
        """Keep the pool's active-lease count in step: address n now has a lease until `expires` (None: none)."""
        pool = self._pool_of(n)
        if pool is None:
            return
        if expires is None:
            pool.live.pop(n, None)
            return
        pool.live[n] = expires
        heapq.heappush(pool.live_heap, (expires, n))
        if len(pool.live_heap) > 2 * len(pool.live) + 1024:  # renewals leave stale entries: keep it proportional
            pool.live_heap = [(e, a) for a, e in pool.live.items()]
            heapq.heapify(pool.live_heap)

    def _pool_for(self, network: IPv4Network) -> Pool | None:
        """self._pools.get(network), by the network object's identity first: IPv4Network hashes in
        Python on every lookup, and the reply logic passes the same few Subnet objects with every packet."""
        hit = self._pool_by_id.get(id(network))
        if hit is not None and hit[0] is network:
            return hit[1]
        pool = self._pools.get(network)
        if len(self._pool_by_id) >= 4 * len(self._pools) + 16:  # subnets replaced by SIGHUPs: start over
            self._pool_by_id.clear()
        self._pool_by_id[id(network)] = (network, pool)
        return pool

    def _pool_of(self, n: int) -> Pool | None:
        i = bisect_right(self._pool_starts, n) - 1
        if i < 0:
            return None
        pool = self._pool_list[i]
        return pool if n <= pool.last else None
