"""LeaseModel: allocation order, MAC keying, holds, reservations, quarantine, persistence, makedhcpstatic."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import pytest

from domain.errors import Conflict, Invalid
from domain.leases import make_static, reserve
from state.db import connect
from state.journal import Journal
from state.lease_pools import PoolSpec, decline_cap
from state.lease_rows import journal_writer, offline_transaction
from state.leases import LeaseModel
from state.sightings import MachineLog

NET = IPv4Network("10.20.0.0/24")
POOL = PoolSpec(NET, IPv4Address("10.20.0.100"), IPv4Address("10.20.0.109"), lease_time=600)
OTHER = PoolSpec(IPv4Network("10.30.0.0/24"), IPv4Address("10.30.0.10"), IPv4Address("10.30.0.20"), 600)
T0 = 1_000_000.0


def ip(last: int, net: str = "10.20.0") -> IPv4Address:
    return IPv4Address(f"{net}.{last}")


def mac(n: int) -> str:
    return f"52:54:00:00:{n >> 8:02x}:{n & 0xFF:02x}"


@dataclass
class Offline:
    conn: sqlite3.Connection
    model: LeaseModel

    def reload(self, now: float = T0) -> LeaseModel:
        return LeaseModel.offline(
            self.conn, [POOL, OTHER], now=now, offer_hold=30, decline_probation=600, excluded=[ip(1)]
        )


@pytest.fixture
def book(tmp_path: Path) -> Offline:
    conn = connect(tmp_path / "s.db")
    model = LeaseModel.offline(conn, [POOL, OTHER], now=T0, offer_hold=30, decline_probation=600, excluded=[ip(1)])
    return Offline(conn, model)


def dora(m: LeaseModel, who: str, now: float = T0, pool: PoolSpec = POOL, requested: IPv4Address | None = None):
    offered = m.offer(who, pool, requested, now)
    assert offered is not None
    binding = m.commit(who, offered, pool, now, None, None)
    assert binding is not None and binding.ip == offered
    return binding


def rows(conn: sqlite3.Connection, sql: str) -> list[tuple]:
    return [tuple(r) for r in conn.execute(sql)]


# ---------------------------------------------------------------- allocation


def test_addresses_come_from_the_pool_lowest_first_and_are_written_through(book: Offline) -> None:
    got = [dora(book.model, mac(i)).ip for i in range(3)]
    assert got == [ip(100), ip(101), ip(102)]
    assert rows(book.conn, "SELECT mac, ip, expires FROM leases ORDER BY ip") == [
        (mac(i), int(ip(100 + i)), T0 + 600) for i in range(3)
    ]


def test_the_same_mac_gets_the_same_address_whatever_its_client_id(book: Offline) -> None:
    m = book.model
    first = m.commit(mac(1), m.offer(mac(1), POOL, None, T0), POOL, T0, b"\x01rom", None)
    # iPXE, then the installer, then the installed OS: new client-ids, new DISCOVERs, same NIC.
    for n, cid in enumerate((b"\x00ipxe", None, b"\xffos-duid"), start=1):
        now = T0 + 10 * n
        offered = m.offer(mac(1), POOL, None, now)
        assert offered == first.ip
        assert m.commit(mac(1), offered, POOL, now, cid, None).ip == first.ip
    assert len(m.leases(T0 + 40)) == 1


def test_an_offer_is_held_for_its_client_then_released(book: Offline) -> None:
    m = book.model
    a = m.offer(mac(1), POOL, None, T0)
    assert m.offer(mac(1), POOL, None, T0 + 1) == a  # a repeated DISCOVER sees the same offer
    assert m.offer(mac(2), POOL, a, T0 + 2) != a  # even when asked for by name
    assert m.commit(mac(2), a, POOL, T0 + 3, None, None) is None  # nor acknowledged to another
    # After offer_hold (30 s) the address is free again: the next newcomer gets the lowest free one.
    assert m.offer(mac(3), POOL, None, T0 + 31) == a


def test_a_client_that_asks_for_a_free_address_gets_it(book: Offline) -> None:
    assert book.model.offer(mac(1), POOL, ip(105), T0) == ip(105)
    assert book.model.offer(mac(2), POOL, ip(250), T0) == ip(100)  # outside the pool: ignored


def test_an_exhausted_pool_offers_nothing_and_a_commit_outside_the_pool_is_refused(book: Offline) -> None:
    m = book.model
    for i in range(10):
        dora(m, mac(i))
    assert m.offer(mac(99), POOL, None, T0) is None
    assert m.commit(mac(99), ip(50), POOL, T0, None, None) is None  # in the subnet, not in the pool
    assert m.commit(mac(99), ip(10, "10.30.0"), POOL, T0, None, None) is None  # not in the subnet at all


def test_pools_are_separate_per_subnet(book: Offline) -> None:
    assert dora(book.model, mac(1), pool=OTHER).ip == ip(10, "10.30.0")
    assert dora(book.model, mac(2)).ip == ip(100)


# ---------------------------------------------------------------- expiry, release, reuse order


def test_never_used_addresses_go_first_then_the_oldest_expired(book: Offline) -> None:
    m = book.model
    for i in range(10):  # fill the pool; mac(i) expires at T0 + i + 600
        dora(m, mac(i), now=T0 + i)
    later = T0 + 2000  # every lease has expired
    assert m.offer(mac(50), POOL, None, later) == ip(100)  # the oldest expired (mac(0)'s)
    assert m.offer(mac(51), POOL, None, later) == ip(101)


def test_a_fresh_address_is_preferred_to_an_expired_one(book: Offline) -> None:
    m = book.model
    dora(m, mac(1))  # 10.20.0.100, expires T0 + 600
    assert m.offer(mac(2), POOL, None, T0 + 1000) == ip(101)


def test_a_returning_client_gets_its_expired_address_back(book: Offline) -> None:
    m = book.model
    old = dora(m, mac(1)).ip
    dora(m, mac(2))
    assert m.offer(mac(1), POOL, None, T0 + 5000) == old


def test_an_expired_address_taken_over_by_another_machine_is_gone_for_the_old_one(book: Offline) -> None:
    m = book.model
    for i in range(10):
        dora(m, mac(i))
    later = T0 + 5000
    taken = dora(m, mac(77), now=later).ip
    assert taken == ip(100)
    assert m.lease(mac(0)) is None
    assert m.offer(mac(0), POOL, None, later) == ip(101)
    assert rows(book.conn, f"SELECT mac FROM leases WHERE ip = {int(taken)}") == [(mac(77),)]


def test_release_ends_the_lease_but_keeps_the_address_for_its_client(book: Offline) -> None:
    m = book.model
    a = dora(m, mac(1)).ip
    m.release(mac(1), a, T0 + 5)
    assert m.leases(T0 + 6) == []
    assert rows(book.conn, "SELECT expires FROM leases") == [(T0 + 5,)]
    assert m.offer(mac(2), POOL, None, T0 + 6) == ip(101)  # fresh before the released one
    assert m.offer(mac(1), POOL, None, T0 + 7) == a


def test_renewal_extends_the_lease_and_keeps_its_start(book: Offline) -> None:
    m = book.model
    a = dora(m, mac(1)).ip
    renewed = m.commit(mac(1), a, POOL, T0 + 300, None, "Node-7.example")
    assert renewed.expires == T0 + 900 and renewed.starts == T0 and renewed.hostname == "node-7"


def test_a_renewal_for_an_address_leased_to_another_machine_is_refused(book: Offline) -> None:
    m = book.model
    a = dora(m, mac(1)).ip
    assert m.commit(mac(2), a, POOL, T0 + 1, None, None) is None


# ---------------------------------------------------------------- reservations


def test_a_reservation_wins_over_the_pool_and_is_never_given_to_another(book: Offline) -> None:
    m = book.model
    with offline_transaction(book.conn):
        reserve(m, mac(1), ip(10), T0, hostname="node1")  # outside the pool
        reserve(m, mac(2), ip(100), T0)  # inside the pool, the lowest address
    assert m.offer(mac(1), POOL, None, T0) == ip(10)
    binding = m.commit(mac(1), ip(10), POOL, T0, None, None)
    assert binding.expires is None and binding.hostname == "node1"
    assert m.offer(mac(3), POOL, ip(100), T0) == ip(101)
    assert m.commit(mac(3), ip(100), POOL, T0, None, None) is None
    assert m.commit(mac(1), ip(101), POOL, T0, None, None) is None  # a reserved MAC gets only its address
    assert rows(book.conn, "SELECT mac, ip, hostname FROM reservations ORDER BY ip") == [
        (mac(1), int(ip(10)), "node1"),
        (mac(2), int(ip(100)), None),
    ]


def test_a_reservation_added_for_a_leased_machine_takes_effect_on_its_next_request(book: Offline) -> None:
    m = book.model
    old = dora(m, mac(1)).ip
    reserve(m, mac(1), ip(20), T0 + 1)
    assert m.commit(mac(1), old, POOL, T0 + 2, None, None) is None  # its renewal is NAKed ...
    assert m.offer(mac(1), POOL, None, T0 + 3) == ip(20)  # ... and it starts over to its fixed address
    assert m.commit(mac(1), ip(20), POOL, T0 + 3, None, None).expires is None
    assert m.lease(mac(1)) is None and rows(book.conn, "SELECT count(*) FROM leases") == [(0,)]
    assert m.offer(mac(2), POOL, None, T0 + 4) == old  # the old address went back to the pool


def test_overlapping_reservations_are_refused_with_reasons(book: Offline) -> None:
    m = book.model
    reserve(m, mac(1), ip(10), T0)
    leased = dora(m, mac(2)).ip
    with pytest.raises(Conflict, match="already reserved for 52:54:00:00:00:01"):
        reserve(m, mac(3), ip(10), T0)
    with pytest.raises(Conflict, match="leased to 52:54:00:00:00:02"):
        reserve(m, mac(3), leased, T0)
    with pytest.raises(Conflict, match="outside every DHCP subnet"):
        reserve(m, mac(3), IPv4Address("192.168.1.5"), T0)
    with pytest.raises(Conflict, match="network or broadcast"):
        reserve(m, mac(3), ip(255), T0)
    with pytest.raises(Conflict, match="own address"):
        reserve(m, mac(3), ip(1), T0)
    with pytest.raises(Invalid, match="not a MAC address"):
        reserve(m, "52:54:00:zz:00:01", ip(11), T0)
    with pytest.raises(Invalid, match="not a valid host name"):
        reserve(m, mac(3), ip(11), T0, hostname="bad_name!")
    # The machine that holds the lease may reserve its own address: the lease becomes static on use.
    assert reserve(m, mac(2), leased, T0).ip == leased


def test_an_expired_lease_of_another_machine_does_not_block_a_reservation(book: Offline) -> None:
    m = book.model
    a = dora(m, mac(1)).ip
    reserve(m, mac(2), a, T0 + 5000)
    assert m.lease(mac(1)) is None
    assert rows(book.conn, "SELECT count(*) FROM leases") == [(0,)]


def test_adding_a_reservation_for_a_reserved_mac_moves_it_and_frees_the_old_address(book: Offline) -> None:
    m = book.model
    reserve(m, mac(1), ip(100), T0)
    reserve(m, "52-54-00-00-00-01", ip(12), T0 + 1)
    assert [r.ip for r in m.reservations()] == [ip(12)]
    assert m.offer(mac(2), POOL, None, T0 + 2) == ip(100)


def test_removing_a_reservation_returns_its_pool_address(book: Offline) -> None:
    m = book.model
    reserve(m, mac(1), ip(100), T0)
    assert m.offer(mac(2), POOL, None, T0) == ip(101)
    assert m.remove_reservation(mac(1)).ip == ip(100)
    assert m.remove_reservation(mac(1)) is None
    assert m.offer(mac(3), POOL, None, T0) == ip(100)
    assert rows(book.conn, "SELECT count(*) FROM reservations") == [(0,)]


# ---------------------------------------------------------------- decline


def test_a_declined_address_is_quarantined_for_the_probation(book: Offline) -> None:
    m = book.model
    a = m.offer(mac(1), POOL, None, T0)
    m.decline(mac(1), a, T0 + 1)
    assert rows(book.conn, "SELECT ip, mac, until FROM quarantine") == [(int(a), mac(1), T0 + 601)]
    assert m.offer(mac(1), POOL, None, T0 + 2) != a
    assert m.offer(mac(2), POOL, a, T0 + 2) != a
    assert m.commit(mac(3), a, POOL, T0 + 3, None, None) is None
    # Quarantine survives a restart ...
    assert book.reload(now=T0 + 10).offer(mac(4), POOL, a, T0 + 10) != a
    # ... and ends after decline_probation.
    assert m.offer(mac(5), POOL, a, T0 + 602) == a
    assert rows(book.conn, "SELECT count(*) FROM quarantine") == [(0,)]


def test_a_decline_for_someone_elses_address_is_ignored(book: Offline) -> None:
    m = book.model
    a = dora(m, mac(1)).ip
    m.decline(mac(2), a, T0 + 1)
    assert m.lease(mac(1)).ip == a
    assert rows(book.conn, "SELECT count(*) FROM quarantine") == [(0,)]


def test_declines_quarantine_at_most_the_pools_cap(book: Offline, caplog: pytest.LogCaptureFixture) -> None:
    m = book.model
    m.decline_max_share = 0.2  # of the test pool's 10 addresses: 2
    cap = decline_cap(10, 0.2)
    for i in range(1, cap + 6):  # the spoofed DISCOVER+DECLINE cycle of a flood
        m.decline(mac(i), m.offer(mac(i), POOL, None, T0 + i), T0 + i)
    assert rows(book.conn, "SELECT count(*) FROM quarantine") == [(cap,)]
    assert m.declines_refused == 5
    assert len([r for r in caplog.records if "event=decline-refused" in r.getMessage()]) == 1  # rate-limited
    assert m.offer(mac(500), POOL, None, T0 + 100) is not None  # a real client still gets an address


def test_decline_cap_is_a_share_but_at_least_one_address() -> None:
    assert decline_cap(100, 0.1) == 10
    assert decline_cap(3, 0.1) == 1
    assert decline_cap(100, 0.0) == 0


def test_declining_a_leased_address_removes_the_lease(book: Offline) -> None:
    m = book.model
    a = dora(m, mac(1)).ip
    m.decline(mac(1), a, T0 + 1)
    assert m.lease(mac(1)) is None
    assert m.offer(mac(1), POOL, None, T0 + 2) != a


# ---------------------------------------------------------------- makedhcpstatic


def test_makedhcpstatic_turns_active_leases_into_reservations(book: Offline) -> None:
    m = book.model
    a = m.commit(mac(1), m.offer(mac(1), POOL, None, T0), POOL, T0, None, "web1").ip
    b = dora(m, mac(2), now=T0 - 5000).ip  # expired long ago: stays a lease
    with offline_transaction(book.conn):
        made = make_static(m, T0 + 1)
    assert [(r.mac, r.ip, r.hostname, r.source) for r in made] == [(mac(1), a, "web1", "makedhcpstatic")]
    assert rows(book.conn, "SELECT mac FROM leases") == [(mac(2),)]
    assert rows(book.conn, "SELECT mac, ip FROM reservations") == [(mac(1), int(a))]
    reloaded = book.reload(T0 + 2)
    assert reloaded.current(mac(1)).expires is None
    assert reloaded.commit(mac(1), a, POOL, T0 + 3, None, None).ip == a
    assert reloaded.lease(mac(2)).ip == b
    assert make_static(m, T0 + 2) == []  # idempotent


# ---------------------------------------------------------------- persistence through the journal


async def test_state_written_through_the_journal_survives_a_restart(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    conn = connect(db)
    journal = Journal(db)
    m = LeaseModel.load(conn, [POOL], journal_writer(journal.submit), now=T0)
    a = dora(m, mac(1)).ip
    reserve(m, mac(2), ip(30), T0, hostname="pinned")
    b = m.offer(mac(3), POOL, None, T0)
    m.decline(mac(3), b, T0)
    await journal.flush()
    assert journal.commits == 1  # every write of this loop turn shared one commit
    await journal.close()

    again = LeaseModel.offline(conn, [POOL], now=T0 + 60)
    assert again.current(mac(1)).ip == a
    assert again.offer(mac(1), POOL, None, T0 + 60) == a
    assert again.commit(mac(1), a, POOL, T0 + 60, None, None).expires == T0 + 660
    assert again.current(mac(2)).ip == ip(30)
    fresh = again.offer(mac(4), POOL, None, T0 + 60)
    assert fresh not in (a, b)


def test_subnets_can_change_live_without_losing_leases(book: Offline) -> None:
    m = book.model
    a = dora(m, mac(1)).ip
    wider = PoolSpec(NET, IPv4Address("10.20.0.100"), IPv4Address("10.20.0.200"), 600)
    m.set_subnets([wider])
    assert m.offer(mac(1), wider, None, T0 + 1) == a
    assert m.offer(mac(2), wider, None, T0 + 1) == ip(101)


def test_a_pool_moved_by_a_reload_on_the_same_network_object_is_the_one_used(book: Offline) -> None:
    # Pools are found by the network object's identity first (a per-packet shortcut): a reload that keeps
    # the very same IPv4Network but moves the pool must not leave the old pool answering.
    m = book.model
    dora(m, mac(1))
    moved = PoolSpec(NET, IPv4Address("10.20.0.150"), IPv4Address("10.20.0.160"), 600)
    m.set_subnets([moved])
    assert m.offer(mac(2), moved, None, T0 + 1) == ip(150)
    assert m.offer(mac(3), POOL, None, T0 + 1) == ip(151)  # another Subnet object, same network: same pool


def test_a_hundred_thousand_leases_load_and_allocate(tmp_path: Path) -> None:
    # A sanity check of the indexes at the scale target (timing is measured in bench/, not asserted).
    big = PoolSpec(IPv4Network("10.64.0.0/14"), IPv4Address("10.64.0.10"), IPv4Address("10.67.255.250"), 3600)
    conn = connect(tmp_path / "big.db")
    first = int(big.pool_first)
    with offline_transaction(conn):
        conn.executemany(
            "INSERT INTO leases(mac, ip, subnet, starts, expires) VALUES (?,?,?,?,?)",
            (
                (
                    f"02:00:{i >> 24 & 255:02x}:{i >> 16 & 255:02x}:{i >> 8 & 255:02x}:{i & 255:02x}",
                    first + i,
                    str(big.network),
                    T0,
                    T0 + 3600 + i,
                )
                for i in range(100_000)
            ),
        )
    m = LeaseModel.offline(conn, [big], now=T0)
    assert len(m.leases(T0)) == 100_000
    newcomer = m.offer("02:ff:00:00:00:01", big, None, T0)
    assert newcomer == IPv4Address(first + 100_000)
    assert m.offer("02:00:00:00:00:05", big, None, T0) == IPv4Address(first + 5)
    with offline_transaction(conn):
        assert m.commit("02:ff:00:00:00:01", newcomer, big, T0, None, None) is not None
    assert conn.execute("SELECT count(*) FROM leases").fetchone()[0] == 100_001


# ---------------------------------------------------------------- machines


def test_machines_are_written_when_new_or_changed_and_otherwise_every_refresh(tmp_path: Path) -> None:
    conn = connect(tmp_path / "s.db")
    log = MachineLog(lambda op: op(conn), refresh=60)
    log.seen(mac(1), T0, arch=7, vendor_class="PXEClient:Arch:00007:UNDI:003016", relay=None)
    for k in range(1, 20):  # a booting ROM retrying: nothing new to write
        log.seen(mac(1), T0 + k, arch=7)
    assert log.writes == 1
    log.seen(mac(1), T0 + 21, user_class="iPXE")  # iPXE took over: changed
    log.seen(mac(1), T0 + 90)  # quiet, but last_seen is stale in the database
    assert log.writes == 3
    row = conn.execute("SELECT first_seen, last_seen, arch, user_class FROM machines").fetchone()
    assert tuple(row) == (T0, T0 + 90, 7, "iPXE")
    assert MachineLog.load(conn, lambda op: op(conn)).get(mac(1)).arch == 7


def test_a_full_pool_takes_back_the_oldest_outstanding_offer(book: Offline) -> None:
    m = book.model
    for i in range(10):  # a DISCOVER flood from ten random MACs holds every address
        m.offer(mac(100 + i), POOL, None, T0 + i)
    assert m.offer(mac(1), POOL, None, T0 + 10) == ip(100)  # the oldest offer (mac 100's) is taken back
    assert m.commit(mac(100), ip(100), POOL, T0 + 11, None, None) is None  # its REQUEST is NAKed
    assert m.commit(mac(1), ip(100), POOL, T0 + 11, None, None) is not None
    dora(m, mac(2), now=T0 + 12)  # next-oldest offer goes to the next newcomer
    assert m.lease(mac(2)).ip == ip(101)
    for i in range(8):  # committed leases are never taken back: only offers
        dora(m, mac(3 + i), now=T0 + 13)
    assert m.offer(mac(50), POOL, None, T0 + 14) is None


def test_held_offers_survive_a_pool_change_and_still_expire(book: Offline) -> None:
    m = book.model
    a = m.offer(mac(1), POOL, None, T0)
    m.set_subnets([POOL, OTHER])
    assert m.offer(mac(2), POOL, a, T0 + 1) != a
    assert m.offer(mac(3), POOL, None, T0 + 31) == a  # handed back to the pool when its hold ended


def test_infrastructure_addresses_inside_the_pool_are_never_handed_out(tmp_path: Path) -> None:
    conn = connect(tmp_path / "s.db")
    m = LeaseModel.offline(conn, [POOL], now=T0, excluded=[ip(100), ip(102)])  # e.g. a router in the pool
    got = [dora(m, mac(i)).ip for i in range(3)]
    assert got == [ip(101), ip(103), ip(104)]
    assert m.commit(mac(9), ip(100), POOL, T0, None, None) is None
