"""The `inventories` table: the hardware inventory each machine's installer last posted (per MAC, JSON as
domain.inventory.Inventory renders it). A machine keeps its inventory when its host is removed or renamed:
it describes the machine, not the host. Every SQL statement on the table lives here."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass

Op = Callable[[sqlite3.Connection], None]


@dataclass(frozen=True, slots=True)
class StoredInventory:
    mac: str
    received: float
    inventory: str  # JSON


def inventory_of(conn: sqlite3.Connection, mac: str) -> StoredInventory | None:
    row = conn.execute("SELECT mac, received, inventory FROM inventories WHERE mac = ?", (mac,)).fetchone()
    return StoredInventory(*row) if row is not None else None


def has_inventory(conn: sqlite3.Connection, mac: str) -> bool:
    return conn.execute("SELECT 1 FROM inventories WHERE mac = ?", (mac,)).fetchone() is not None


def inventories_of(conn: sqlite3.Connection, macs: Sequence[str]) -> dict[str, StoredInventory]:
    out: dict[str, StoredInventory] = {}
    for i in range(0, len(macs), 500):  # SQLite's bound-parameter limit
        chunk = list(macs[i:i + 500])
        marks = ",".join("?" * len(chunk))
        for row in conn.execute(f"SELECT mac, received, inventory FROM inventories WHERE mac IN ({marks})", chunk):
            out[row[0]] = StoredInventory(*row)
    return out


def store_inventory_op(mac: str, received: float, inventory: str) -> Op:
    """The machine's inventory, replacing the one before."""

    def op(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO inventories(mac, received, inventory) VALUES (?, ?, ?) "
                     "ON CONFLICT(mac) DO UPDATE SET received = excluded.received, inventory = excluded.inventory",
                     (mac, received, inventory))

    return op
