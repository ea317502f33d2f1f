"""The `profiles` table: named settings (image, version, transport, kernel arguments, BMC defaults; root-device
hints in state/root_hints.py, kind "profile") that hosts naming the profile inherit unless they set their own.

Which value a host ends up with is the `hosts_effective` view (state/schema.py, migration 9) for what a
boot and an install read, and `Profile.FIELDS` for what the host view says of each value's source. The
BMC password is a secret like the bmcs table's: `Profile` has no field for it; `profile_bmc_secrets` is for
the power drivers only.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from state.bmcs import BmcSecret, forget_power_of
from state.hosts import bmc_sources, names_with_profile, profile_counts, profiles_of
from state.root_hints import hints_of_kind, set_hints_op

Op = Callable[[sqlite3.Connection], Any]


@dataclass(frozen=True, slots=True)
class Profile:
    """A stored profile as it may be shown (no BMC password)."""

    # The settings a host inherits field by field (the host's own value of the same name wins).
    FIELDS: ClassVar[tuple[str, ...]] = ("image", "version", "transport", "kernel_args")

    name: str
    image: str | None = None
    version: int | None = None  # None: the image's newest (inherited only with this profile's image)
    transport: str | None = None
    kernel_args: str | None = None
    bmc_address: str | None = None  # a template: {host} is the host's name
    bmc_username: str | None = None
    bmc_password_set: bool = False
    created: float = 0.0
    updated: float = 0.0


_SHOWN = ("name, image, version, transport, kernel_args, bmc_address, bmc_username, bmc_password IS NOT NULL, "
          "created, updated")
# What `set_profile_op` may change (bmc_password is written but never read back here).
SETTABLE = ("image", "version", "transport", "kernel_args", "bmc_address", "bmc_username", "bmc_password")


def _profile(row: Sequence[Any]) -> Profile:
    return Profile(row[0], row[1], row[2], row[3], row[4], row[5], row[6], bool(row[7]), row[8], row[9])


def profile_by_name(conn: sqlite3.Connection, name: str) -> Profile | None:
    row = conn.execute(f"SELECT {_SHOWN} FROM profiles WHERE name = ?", (name,)).fetchone()
    return _profile(row) if row is not None else None


def list_profiles(conn: sqlite3.Connection) -> list[Profile]:
    return [_profile(r) for r in conn.execute(f"SELECT {_SHOWN} FROM profiles ORDER BY name")]


def profiles_named(conn: sqlite3.Connection, names: set[str]) -> dict[str, Profile]:
    if not names:
        return {}
    chunk = sorted(names)
    rows = conn.execute(f"SELECT {_SHOWN} FROM profiles WHERE name IN ({','.join('?' * len(chunk))})", chunk)
    return {p.name: p for p in map(_profile, rows)}


def users(conn: sqlite3.Connection, name: str) -> list[str]:
    """The hosts that inherit from profile `name`."""
    return names_with_profile(conn, name)


def add_profile_op(name: str, values: Mapping[str, Any], now: float) -> Op:
    """A new profile (the caller checked that the name is free and the values); sqlite3.IntegrityError
    if it was taken meanwhile."""
    keys = [k for k in SETTABLE if k in values]

    def op(conn: sqlite3.Connection) -> None:
        cols = ", ".join(["name", *keys, "created", "updated"])
        conn.execute(f"INSERT INTO profiles ({cols}) VALUES ({', '.join('?' * (len(keys) + 3))})",
                     (name, *(values[k] for k in keys), now, now))

    return op


def set_profile_op(name: str, changes: Mapping[str, Any], now: float) -> Op:
    """Change fields of profile `name` (None clears); returns whether it exists."""
    unknown = set(changes) - set(SETTABLE)
    if unknown:
        raise ValueError(f"cannot set {', '.join(sorted(unknown))} of a profile")

    def op(conn: sqlite3.Connection) -> bool:
        sets = "".join(f"{k} = ?, " for k in changes)
        done = bool(conn.execute(f"UPDATE profiles SET {sets}updated = ? WHERE name = ?",
                                 (*changes.values(), now, name)).rowcount)
        if done and any(k.startswith("bmc_") for k in changes):
            # another BMC for the hosts that inherit it: what the old one answered is not known of the new
            users = names_with_profile(conn, name)
            own = {n for n, whose in bmc_sources(conn, users).items() if whose == "host"}
            forget_power_of(conn, [n for n in users if n not in own])
        return done

    return op


def delete_profile_op(name: str) -> Op:
    """Remove profile `name` unless a host names it: returns the hosts that do (nothing removed then), else
    an empty list (removed, or there was none)."""

    def op(conn: sqlite3.Connection) -> list[str]:
        using = names_with_profile(conn, name)
        if not using:
            conn.execute("DELETE FROM profiles WHERE name = ?", (name,))
        return using

    return op


def profile_bmc_secrets(conn: sqlite3.Connection, hosts: Sequence[str]) -> dict[str, BmcSecret]:
    """For those of `hosts` whose profile has BMC defaults (address template, user, password): the BMC
    they inherit (which hosts use it rather than their own is the hosts_effective view's bmc_from: the caller
    asks for those only)."""
    out: dict[str, BmcSecret] = {}
    named = profiles_of(conn, hosts)
    wanted = sorted(set(named.values()))
    defaults: dict[str, tuple[str, str, str]] = {}
    for i in range(0, len(wanted), 500):  # SQLite's bound-parameter limit
        chunk = wanted[i:i + 500]
        rows = conn.execute(
            "SELECT name, bmc_address, bmc_username, bmc_password FROM profiles "
            f"WHERE name IN ({','.join('?' * len(chunk))}) AND bmc_address IS NOT NULL "
            "AND bmc_username IS NOT NULL AND bmc_password IS NOT NULL", chunk)
        defaults.update((r[0], (r[1], r[2], r[3])) for r in rows)
    for host, profile in named.items():
        if profile in defaults:
            address, user, password = defaults[profile]
            out[host] = BmcSecret(host, address.replace("{host}", host), user, password, None)
    return out


@dataclass(slots=True)
class StoredProfiles:
    """domain.profiles.ProfileStore over a reader connection (the daemon's, or the offline CLI's)."""

    conn: sqlite3.Connection

    def get(self, name: str) -> Profile | None:
        return profile_by_name(self.conn, name)

    def users(self, name: str) -> list[str]:
        return users(self.conn, name)

    def counts(self) -> dict[str, int]:
        return profile_counts(self.conn)

    def all(self) -> list[Profile]:
        return list_profiles(self.conn)

    def add_op(self, name: str, values: Mapping[str, Any], now: float) -> Op:
        return add_profile_op(name, values, now)

    def change_op(self, name: str, changes: Mapping[str, Any], now: float) -> Op:
        return set_profile_op(name, changes, now)

    def remove_op(self, name: str) -> Op:
        return delete_profile_op(name)

    def root_hints(self) -> dict[str, str]:
        return hints_of_kind(self.conn, "profile")

    def root_hints_op(self, name: str, hints: str | None) -> Op:
        return set_hints_op("profile", name, hints)
