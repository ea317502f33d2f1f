"""Many rows at once into a migrated store (bench/fleet.py's big store: what years of operation leave).

One transaction, one executemany per table; the same columns the model's own writers use.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable

from state.db import transaction
from state.hosts import Host, insert_hosts
from state.installs import insert_events
from state.lease_rows import Lease, insert_leases
from state.sightings import Machine, insert_machines


def bulk_load(conn: sqlite3.Connection, *, hosts: Iterable[Host] = (), leases: Iterable[Lease] = (),
              machines: Iterable[Machine] = (), events: Iterable[tuple[str, str | None, float, str]] = ()) -> None:
    """hosts, leases, machines seen and install events (host, mac, time, stage) in one transaction."""
    with transaction(conn):
        insert_hosts(conn, hosts)
        insert_leases(conn, leases)
        insert_machines(conn, machines)
        insert_events(conn, events)
