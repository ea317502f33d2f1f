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

Capped: at most MAX_HOSTS hosts are taken from one config document.
"""

from __future__ import annotations

import sqlite3
from ipaddress import IPv4Address
from typing import Any

from state.credentials import new_token
from state.hosts import Host, delete_holders, delete_host, host_by_name, insert_host, update_host_op
from state.installs import last_event_time, reinstall_op

MAX_HOSTS = 100_000
_STATES = ("new", "assigned", "installing", "installed", "failed")


class MirrorError(ValueError):
    """The primary's document is not what a primary sends; nothing was applied."""


def _checked(hosts: object) -> list[tuple[str, str | None, int | None, str | None, int | None, str, float]]:
    if not isinstance(hosts, list) or len(hosts) > MAX_HOSTS:
        raise MirrorError(f"hosts must be a list of at most {MAX_HOSTS}")
    out = []
    for i, h in enumerate(hosts):
        if not isinstance(h, dict):
            raise MirrorError(f"hosts[{i}] is not an object")
        name, mac, ip, image, version, state = (h.get(k) for k in ("name", "mac", "ip", "image", "version", "state"))
        updated = h.get("updated") or 0.0
        if not isinstance(name, str) or not name or len(name) > 64:
            raise MirrorError(f"hosts[{i}].name must be a host name")
        if state not in _STATES:
            raise MirrorError(f"hosts[{i}].state {state!r} is not a host state")
        try:
            address = int(IPv4Address(ip)) if ip is not None else None
        except ValueError:
            raise MirrorError(f"hosts[{i}].ip {ip!r} is not an IPv4 address") from None
        if version is not None and (not isinstance(version, int) or isinstance(version, bool)):
            raise MirrorError(f"hosts[{i}].version must be a number")
        if not isinstance(updated, (int, float)):
            raise MirrorError(f"hosts[{i}].updated must be a time")
        out.append((name, mac if isinstance(mac, str) else None, address,
                    image if isinstance(image, str) else None, version, str(state), float(updated)))
    return out


def mirror_hosts_op(hosts: object, now: float, *, complete: bool = False) -> Any:
    """Apply the primary's host list; returns (added, updated, reinstalled, removed)."""
    rows = _checked(hosts)

    def op(conn: sqlite3.Connection) -> tuple[int, int, int, int]:
        added = changed = again = removed = 0
        listed = {row[0] for row in rows}
        if complete:
            for (name,) in conn.execute("SELECT name FROM mirrored_hosts").fetchall():
                if name not in listed:
                    removed += delete_host(conn, name)
                    conn.execute("DELETE FROM mirrored_hosts WHERE name = ?", (name,))
        conn.executemany("INSERT OR IGNORE INTO mirrored_hosts(name) VALUES (?)", [(n,) for n in listed])
        for name, mac, ip, image, version, state, updated in rows:
            mine = host_by_name(conn, name)
            address = IPv4Address(ip) if ip is not None else None
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
