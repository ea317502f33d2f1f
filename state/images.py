"""The image catalog: which versions of which images are registered, and who uses them.

A row in `images` means "images/NAME/vN is complete and immutable"; the tree is moved into place in
the same transaction that inserts the row (see appliance/images/catalog.py), so a reader never sees
a row whose tree is still being written. Functions here take a sqlite3 connection and do not commit:
the caller owns the transaction (offline CLI connection or the daemon's journal).
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import Any

from state.hosts import names_using

_COLUMNS = ("name", "version", "path", "created", "source", "files", "bytes", "layout", "note", "arch")


@dataclass(frozen=True, slots=True)
class ImageVersion:
    name: str
    version: int
    path: str  # absolute path of the tree (images/NAME/vN)
    created: float
    source: str | None = None  # "rsync://host/root", "ssh://root@host", "clone:NAME/vN"
    files: int | None = None
    bytes: int | None = None
    layout: str | None = None  # JSON: the master client's disk layout (appliance.images.layout)
    note: str | None = None
    arch: str | None = None  # the CPU architecture it was captured from (protocols/arch.py), None: not known

    @classmethod
    def from_row(cls, row: sqlite3.Row | tuple[Any, ...]) -> ImageVersion:
        return cls(**dict(zip(_COLUMNS, tuple(row), strict=True)))

    @property
    def module(self) -> str:
        """The rsync daemon module serving exactly this version."""
        return f"{self.name}_v{self.version}"


_SELECT = f"SELECT {', '.join(_COLUMNS)} FROM images"


def list_versions(conn: sqlite3.Connection, name: str | None = None) -> list[ImageVersion]:
    """All registered versions (of one image if `name`), by name then version."""
    if name is None:
        rows = conn.execute(f"{_SELECT} ORDER BY name, version").fetchall()
    else:
        rows = conn.execute(f"{_SELECT} WHERE name = ? ORDER BY version", (name,)).fetchall()
    return [ImageVersion.from_row(r) for r in rows]


def get_version(conn: sqlite3.Connection, name: str, version: int) -> ImageVersion | None:
    row = conn.execute(f"{_SELECT} WHERE name = ? AND version = ?", (name, version)).fetchone()
    return ImageVersion.from_row(row) if row else None


def newest(conn: sqlite3.Connection, name: str) -> ImageVersion | None:
    row = conn.execute(f"{_SELECT} WHERE name = ? ORDER BY version DESC LIMIT 1", (name,)).fetchone()
    return ImageVersion.from_row(row) if row else None


def insert_version(conn: sqlite3.Connection, iv: ImageVersion) -> None:
    """Register a version; raises sqlite3.IntegrityError if (name, version) exists."""
    conn.execute(f"INSERT INTO images ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))})",
                 tuple(getattr(iv, c) for c in _COLUMNS))


def delete_version(conn: sqlite3.Connection, name: str, version: int) -> bool:
    cur = conn.execute("DELETE FROM images WHERE name = ? AND version = ?", (name, version))
    return cur.rowcount > 0


def hosts_using(conn: sqlite3.Connection, name: str, version: int) -> list[str]:
    """Hosts assigned to this version: pinned to it, or following the image's newest when it is the newest."""
    top = newest(conn, name)
    is_newest = top is not None and top.version == version
    return names_using(conn, name, version, newest=is_newest)


def image_versions(conn: sqlite3.Connection, image: str) -> tuple[int, ...]:
    """The captured versions of `image`, oldest first (empty if the image does not exist)."""
    rows = conn.execute("SELECT version FROM images WHERE name = ? ORDER BY version", (image,)).fetchall()
    return tuple(int(r[0]) for r in rows)


def versions_of_images(conn: sqlite3.Connection, images: set[str]) -> dict[str, tuple[int, ...]]:
    """Image name -> its captured versions, oldest first, for each of `images` (one query)."""
    if not images:
        return {}
    names = sorted(images)
    out: dict[str, list[int]] = {n: [] for n in names}
    for name, version in conn.execute(
            f"SELECT name, version FROM images WHERE name IN ({', '.join('?' * len(names))}) ORDER BY name, version",
            names):
        out[name].append(int(version))
    return {k: tuple(v) for k, v in out.items()}


def image_bytes(conn: sqlite3.Connection, image: str, version: int) -> int | None:
    """What getimage counted for the version (the total a copy's progress is measured against)."""
    row = conn.execute("SELECT bytes FROM images WHERE name = ? AND version = ?", (image, version)).fetchone()
    return int(row[0]) if row is not None and row[0] is not None else None


def image_arches(conn: sqlite3.Connection, image: str) -> dict[int, str | None]:
    """Version -> architecture of each captured version of `image` (None where it is not known)."""
    rows = conn.execute("SELECT version, arch FROM images WHERE name = ?", (image,)).fetchall()
    return {int(r[0]): r[1] for r in rows}


def arches_of_images(conn: sqlite3.Connection, images: set[str]) -> dict[str, dict[int, str | None]]:
    """image_arches for each of `images` (one query)."""
    if not images:
        return {}
    names = sorted(images)
    out: dict[str, dict[int, str | None]] = {n: {} for n in names}
    for name, version, arch in conn.execute(
            f"SELECT name, version, arch FROM images WHERE name IN ({', '.join('?' * len(names))})", names):
        out[name][int(version)] = arch
    return out


def image_arch(conn: sqlite3.Connection, image: str, version: int | None) -> str | None:
    """The architecture of `image` vN (None: its newest); None if the version or its architecture is not known."""
    if version is None:
        row = conn.execute("SELECT arch FROM images WHERE name = ? ORDER BY version DESC LIMIT 1", (image,)).fetchone()
    else:
        row = conn.execute("SELECT arch FROM images WHERE name = ? AND version = ?", (image, version)).fetchone()
    return str(row[0]) if row is not None and row[0] is not None else None
