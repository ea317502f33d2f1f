"""The satellite's copy of the primary's hosts: what the primary says, applied to the local store.

The primary owns which hosts exist and what they run (name, MAC, address, image, pinned version); the
satellite owns its installs. So:
- a host new to the satellite is added (its own install token: tokens never leave the primary) in the
  primary's state: assigned/installing hosts install here at their next PXE boot, installed ones boot
  their disk;
- a known host takes the primary's MAC, address, image and version; its state is left alone, except
  that a host the primary wants (re)installed ("assigned", changed there after the satellite's last
  report about it) becomes assigned again with a fresh token: the operator ran reinstall on the primary;
- a host the primary no longer has is removed (its row and install token: a machine the primary's
  operator took out does not install here any more), if it came from the primary (mirrored_hosts) and
  the primary's list is whole (`complete`: not cut at its cap, and a primary that says so). Hosts the
  satellite's own operator added stay, and a satellite cut off from its primary removes nothing: it
  keeps serving what it knew. A reservation the satellite made for a removed host on its install stays
  with its lease book (`imageserver reservations rm` there).

The document's shape and values are checked (and capped) by domain/mirror.py; this applies checked rows.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address

from state.credentials import new_token
from state.hosts import Host, delete_holders, delete_host, host_by_name, insert_host, update_host_op
from state.installs import last_event_time, reinstall_op


@dataclass(frozen=True, slots=True)
class PrimaryHost:
    """One host of the primary's list, as checked by domain/mirror.py."""

    name: str
    mac: str | None
    ip: IPv4Address | None
    image: str | None
    version: int | None
    state: str  # one of state.hosts.HOST_STATES
    updated: float  # when the primary last changed it (0: not said)


def mirror_hosts_op(rows: Sequence[PrimaryHost], now: float, *, complete: bool = False
                    ) -> Callable[[sqlite3.Connection], tuple[int, int, int, int]]:
    """Apply the primary's host list; returns (added, updated, reinstalled, removed)."""

    def op(conn: sqlite3.Connection) -> tuple[int, int, int, int]:
        added = changed = again = removed = 0
        listed = {row.name for row in rows}
        if complete:
            for (name,) in conn.execute("SELECT name FROM mirrored_hosts").fetchall():
                if name not in listed:
                    removed += delete_host(conn, name)
                    conn.execute("DELETE FROM mirrored_hosts WHERE name = ?", (name,))
        conn.executemany("INSERT OR IGNORE INTO mirrored_hosts(name) VALUES (?)", [(n,) for n in listed])
        for r in rows:
            name, mac, address, image, version, state, updated = (r.name, r.mac, r.ip, r.image, r.version,
                                                                   r.state, r.updated)
            mine = host_by_name(conn, name)
            ip = int(address) if address is not None else None  # as stored
            if mine is None:
                # Another host here holding this MAC or address (a local leftover) would make the insert fail.
                delete_holders(conn, name, mac, ip)
                local_state = "assigned" if state in ("assigned", "installing") and image else state
                insert_host(conn, Host(name, mac, address, image, version, local_state, now, now,
                                       install_token=new_token() if local_state == "assigned" else None,
                                       token_issued=now))
                added += 1
                continue
            if (mine.mac, mine.ip, mine.image, mine.version) != (mac, address, image, version):
                delete_holders(conn, name, mac, ip)
                update_host_op(name, {"mac": mac, "ip": address, "image": image, "version": version}, now)(conn)
                changed += 1
            if state == "assigned" and image and mine.state in ("installed", "failed"):
                last = last_event_time(conn, name)
                if last is None or updated > last:
                    reinstall_op(name, new_token(), now)(conn)
                    again += 1
        return added, changed, again, removed

    return op
