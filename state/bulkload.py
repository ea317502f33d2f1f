"""Many rows at once into a migrated store (bench/fleet.py's big store: what years of operation leave).

One transaction, one executemany per table; the same columns the model's own writers use.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable

from state.db import transaction
from state.hosts import Host, insert_hosts
from state.lease_rows import Lease, lease_row
from state.sightings import _COLUMNS as MACHINE_COLUMNS
from state.sightings import Machine


def bulk_load(conn: sqlite3.Connection, *, hosts: Iterable[Host] = (), leases: Iterable[Lease] = (),
              machines: Iterable[Machine] = (), events: Iterable[tuple[str, str | None, float, str]] = ()) -> None:
    """hosts, leases, machines seen and install events (host, mac, time, stage) in one transaction."""
    with transaction(conn):
        insert_hosts(conn, hosts)
        conn.executemany("INSERT INTO leases(mac, ip, subnet, starts, expires, client_id, hostname) "
                         "VALUES (?,?,?,?,?,?,?)", (lease_row(x) for x in leases))
        conn.executemany(f"INSERT INTO machines({', '.join(MACHINE_COLUMNS)}) "
                         f"VALUES ({', '.join('?' * len(MACHINE_COLUMNS))})",
                         (tuple(getattr(m, c) for c in MACHINE_COLUMNS) for m in machines))
        conn.executemany("INSERT INTO install_events(host, mac, time, stage) VALUES (?,?,?,?)", events)
