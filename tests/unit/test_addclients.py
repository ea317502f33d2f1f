"""addclients planning and applying: names, padding, addresses outside the pools, MAC files, clashes
named on both sides, idempotence; and HostBook keeping reservations in step with hosts (on a real store)."""

from __future__ import annotations

import re
import sqlite3
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import pytest

from domain.addclients import AddclientsRequest, Existing, PlanError, parse_macs, parse_range, plan_addclients
from domain.host_errors import HostError
from domain.hostbook import HostBook, addclients, make_lease_static
from domain.hostsfile import hosts_file
from protocols.names import InvalidName
from state.db import connect
from state.hosts import list_hosts
from state.lease_pools import PoolSpec
from state.lease_rows import offline_transaction
from state.leases import LeaseModel

NET = IPv4Network("10.20.0.0/24")
POOL = PoolSpec(NET, IPv4Address("10.20.0.100"), IPv4Address("10.20.0.150"), lease_time=600)
T0 = 1_000_000.0
SERVER = IPv4Address("10.20.0.1")


def req(**kw: object) -> AddclientsRequest:
    base = {"base": "www", "first": 1, "last": 3, "image": "web", "first_ip": IPv4Address("10.20.0.11")}
    base.update(kw)
    return AddclientsRequest(**base)  # type: ignore[arg-type]


def world(**kw: object) -> Existing:
    return Existing(subnets=(POOL,), own_addresses=(SERVER,), **kw)  # type: ignore[arg-type]


def test_names_addresses_and_padding() -> None:
    plan = plan_addclients(req(first=1, last=300, pad=3, first_ip=None), world())
    assert len(plan.hosts) == 300
    assert [h.name for h in plan.hosts[:2]] == ["www001", "www002"] and plan.hosts[-1].name == "www300"
    # From .151 the range runs over the broadcast address and out of the /24: each is a named problem.
    with pytest.raises(PlanError) as e:
        plan_addclients(req(first=1, last=300, pad=3, first_ip=IPv4Address("10.20.0.151")), world())
    assert "www001: 10.20.0.151" not in str(e.value)
    assert e.value.problems[:2] == ["www105: 10.20.0.255 is the network or broadcast address of 10.20.0.0/24",
                                    "www106: 10.20.1.0 is outside every DHCP subnet (10.20.0.0/24)"]
    assert "... and 176 more" in str(e.value)
    unpadded = plan_addclients(req(first=9, last=10, first_ip=None), world())
    assert [(h.name, h.ip) for h in unpadded.hosts] == [("www9", None), ("www10", None)]


def test_addresses_inside_the_pool_or_taken_are_refused_naming_both_sides() -> None:
    with pytest.raises(PlanError) as e:
        plan_addclients(req(first_ip=IPv4Address("10.20.0.99")), world())
    assert e.value.problems == [
        "www2: 10.20.0.100 is inside the DHCP pool 10.20.0.100-10.20.0.150 (choose --first-ip outside it)",
        "www3: 10.20.0.101 is inside the DHCP pool 10.20.0.100-10.20.0.150 (choose --first-ip outside it)",
    ]
    from state.hosts import Host

    db1 = Host("db1", "52:54:00:00:00:aa", IPv4Address("10.20.0.12"), None, None, "new", 0, 0)
    taken = world(hosts=(db1,), reservations=(("52:54:00:00:00:bb", IPv4Address("10.20.0.13"), "mail"),))
    with pytest.raises(PlanError) as e:
        plan_addclients(req(), taken)
    assert e.value.problems == ["www2: 10.20.0.12 is host db1's address",
                                "www3: 10.20.0.13 is reserved for 52:54:00:00:00:bb (mail)"]
    with pytest.raises(PlanError, match=re.escape("www1: 10.20.0.1 is the imageserver's own address")):
        plan_addclients(req(first_ip=SERVER), world())
    leased = world(active_leases=(("52:54:00:00:00:cc", IPv4Address("10.20.0.11")),))
    with pytest.raises(PlanError, match=re.escape("www1: 10.20.0.11 is leased to 52:54:00:00:00:cc")):
        plan_addclients(req(), leased)


def test_mac_file_named_lines_bind_by_name_the_rest_in_order() -> None:
    macs = parse_macs("# rack 1\n52:54:00:00:00:01\n\n52-54-00-00-00-03 www1\n525400000002  # spare\n")
    assert macs == (("52:54:00:00:00:01", None), ("52:54:00:00:00:03", "www1"), ("52:54:00:00:00:02", None))
    plan = plan_addclients(req(macs=macs), world())
    assert [(h.name, h.mac) for h in plan.hosts] == [
        ("www1", "52:54:00:00:00:03"), ("www2", "52:54:00:00:00:01"), ("www3", "52:54:00:00:00:02")]
    with pytest.raises(PlanError) as e:
        parse_macs("52:54:00:00:00:01\nnot-a-mac\n1 2 3\n", "macs.txt")
    assert [p.split(":")[0] for p in e.value.problems] == ["macs.txt line 2", "macs.txt line 3"]
    with pytest.raises(PlanError, match=re.escape("more MACs than names in www1..www3: 52:54:00:00:00:09 has no host")):
        plan_addclients(req(macs=tuple((f"52:54:00:00:00:0{i}", None) for i in range(6, 10))), world())
    with pytest.raises(PlanError, match=re.escape("names db7, which is not in www1..www3")):
        plan_addclients(req(macs=(("52:54:00:00:00:01", "db7"),)), world())


def test_range_parsing() -> None:
    assert parse_range("1-300") == (1, 300) and parse_range("7") == (7, 7)
    for bad in ("", "3-1", "a-b", "-1-2"):
        with pytest.raises(PlanError):
            parse_range(bad)


# ---------------------------------------------------------------------- applying, on a real store


@pytest.fixture
def conn(tmp_path: Path) -> sqlite3.Connection:
    return connect(tmp_path / "s.db")


def book(conn: sqlite3.Connection, auto_static: str = "on-install") -> HostBook:
    model = LeaseModel.offline(conn, [POOL], now=T0, excluded=[SERVER])
    return HostBook(conn, model, pools=(POOL,), auto_static=auto_static)


def apply(conn: sqlite3.Connection, r: AddclientsRequest, **kw: object):
    with offline_transaction(conn):
        plan, ops = addclients(book(conn), r, T0, own=(SERVER,), **kw)  # type: ignore[arg-type]
        for op in ops:
            op(conn)
    return plan


def test_addclients_makes_hosts_and_reservations_and_a_rerun_changes_nothing(conn: sqlite3.Connection) -> None:
    r = req(macs=parse_macs("52:54:00:00:00:01\n52:54:00:00:00:02\n"))
    assert apply(conn, r, dry_run=True).counts() == {"create": 3, "update": 0, "keep": 0}
    assert list_hosts(conn) == []  # a dry run writes nothing
    assert apply(conn, r).counts() == {"create": 3, "update": 0, "keep": 0}
    hosts = list_hosts(conn)
    assert [(h.name, h.mac, str(h.ip), h.state) for h in hosts] == [
        ("www1", "52:54:00:00:00:01", "10.20.0.11", "assigned"),
        ("www2", "52:54:00:00:00:02", "10.20.0.12", "assigned"),
        ("www3", None, "10.20.0.13", "new")]
    reservations = [tuple(r) for r in conn.execute("SELECT mac, ip, hostname, source FROM reservations ORDER BY ip")]
    assert reservations == [("52:54:00:00:00:01", int(IPv4Address("10.20.0.11")), "www1", "addclients"),
                            ("52:54:00:00:00:02", int(IPv4Address("10.20.0.12")), "www2", "addclients")]
    before = [tuple(r) for r in conn.execute("SELECT * FROM hosts ORDER BY name")]
    assert apply(conn, r).counts() == {"create": 0, "update": 0, "keep": 3}
    assert [tuple(r) for r in conn.execute("SELECT * FROM hosts ORDER BY name")] == before
    # Growing the range adds only the new one; the third MAC later goes to www3 as an update.
    assert apply(conn, req(last=4)).counts() == {"create": 1, "update": 0, "keep": 3}
    grown = apply(conn, req(last=4, macs=parse_macs("52:54:00:00:00:03 www3")))
    assert grown.counts() == {"create": 0, "update": 1, "keep": 3}
    assert conn.execute("SELECT hostname FROM reservations WHERE mac = '52:54:00:00:00:03'").fetchone()[0] == "www3"
    assert hosts_file(list_hosts(conn), "lab.test").splitlines()[1:3] == [
        "10.20.0.11\twww1.lab.test www1", "10.20.0.12\twww2.lab.test www2"]


def test_assign_next_and_removal_and_on_assign_conversion(conn: sqlite3.Connection) -> None:
    apply(conn, req(first=1, last=2))
    b = book(conn)
    host, op = b.assign("52:54:00:00:00:07", None, T0)
    with offline_transaction(conn):
        op(conn)
    assert (host.name, host.state, str(host.ip)) == ("www1", "assigned", "10.20.0.11")
    assert b.leases.reservation("52:54:00:00:00:07") is not None
    with pytest.raises(HostError, match="machine 52:54:00:00:00:07 is host www1 already"):
        book(conn).assign("52:54:00:00:00:07", "www2", T0)
    # on-assign: a host without an address takes its machine's lease as its reservation.
    b = book(conn, auto_static="on-assign")
    lease = b.leases.commit("52:54:00:00:00:08", IPv4Address("10.20.0.120"), POOL, T0, None, None)
    assert lease is not None
    host, op = b.create("db1", now=T0, image="db")
    with offline_transaction(conn):
        op(conn)
    host, op = b.assign("52:54:00:00:00:08", "db1", T0 + 1)
    with offline_transaction(conn):
        op(conn)
    assert str(host.ip) == "10.20.0.120"
    assert b.leases.reservation("52:54:00:00:00:08").source == "on-assign"  # type: ignore[union-attr]
    # Removing a host frees its reservation.
    b = book(conn)
    _, op = b.remove("www1")
    with offline_transaction(conn):
        op(conn)
    assert b.leases.reservation("52:54:00:00:00:07") is None


def test_on_install_turns_the_lease_into_a_reservation_with_the_same_address(conn: sqlite3.Connection) -> None:
    b = book(conn)
    mac = "52:54:00:00:00:09"
    b.leases.commit(mac, IPv4Address("10.20.0.101"), POOL, T0, None, None)
    host, op = b.create("node1", now=T0, mac=mac, image="demo")
    with offline_transaction(conn):
        op(conn)
    assert host.ip is None  # on-install: nothing yet
    b = book(conn)
    host, op = b.update("node1", {"state": "installed"}, T0 + 5)
    with offline_transaction(conn):
        op(conn)
    assert str(host.ip) == "10.20.0.101" and host.state == "installed"
    res = b.leases.reservation(mac)
    assert res is not None and str(res.ip) == "10.20.0.101" and res.source == "on-install"
    # The address has left the pool: nobody else is offered it.
    other = LeaseModel.offline(conn, [POOL], now=T0 + 6, excluded=[SERVER])
    offered = {other.offer(f"52:54:00:00:01:{i:02x}", POOL, None, T0 + 6) for i in range(51)}
    assert IPv4Address("10.20.0.101") not in offered
    assert make_lease_static(other, mac, "node1", T0 + 7, "on-install") == other.reservation(mac)
    with pytest.raises(HostError, match="cannot go from installed to installing"):
        book(conn).update("node1", {"state": "installing"}, T0 + 8)


def test_host_checks(conn: sqlite3.Connection) -> None:
    b = book(conn)
    with pytest.raises(HostError, match="inside the DHCP pool"):
        b.create("x1", now=T0, ip=IPv4Address("10.20.0.120"))
    with pytest.raises(InvalidName, match="not a host name"):  # the one error of the name rules
        b.create("bad_name", now=T0)
    _, op = b.create("x1", now=T0, mac="52:54:00:00:00:01", ip=IPv4Address("10.20.0.30"))
    with offline_transaction(conn):
        op(conn)
    with pytest.raises(HostError, match=re.escape("10.20.0.30 is host x1's address")):
        book(conn).create("x2", now=T0, mac="52:54:00:00:00:02", ip=IPv4Address("10.20.0.30"))
    with pytest.raises(HostError, match="MAC 52:54:00:00:00:01 is host x1's"):
        book(conn).create("x2", now=T0, mac="52:54:00:00:00:01")
    with pytest.raises(HostError, match="no image"):
        book(conn).update("x1", {"state": "assigned"}, T0)


def test_address_op_names_an_installed_hosts_new_reservation_once(conn: sqlite3.Connection) -> None:
    from state.hosts import address_op

    b = book(conn)
    for name, mac in (("n1", "52:54:00:00:00:01"), ("n2", "52:54:00:00:00:02")):
        _, op = b.create(name, now=T0, mac=mac, image="demo")
        with offline_transaction(conn):
            op(conn)
    ip = IPv4Address("10.20.0.120")
    with offline_transaction(conn):
        assert address_op("n1", ip, T0)(conn) is True
        assert address_op("n2", ip, T0)(conn) is False  # another host's address: left out, no error
        assert address_op("n1", IPv4Address("10.20.0.121"), T0)(conn) is False  # it has one already
    assert [(h.name, str(h.ip) if h.ip else None) for h in list_hosts(conn)] == [("n1", "10.20.0.120"), ("n2", None)]
