"""How an installer fetches its image: per host, else the image's default, else rsync.

"rsync": unicast from the supervised rsync daemon (the default). "bittorrent": the image version's
torrent from the imageserver's seeder, tracker and web seed, shared with every machine installing it at
the same time (services/torrents.py), then an rsync pass for metadata; it falls back to rsync.
"multicast": a seat in the imageserver's udpcast session of the version (services/multicast.py, needs
[multicast] enabled), then an rsync pass by checksum; it falls back to rsync.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

TRANSPORTS = ("rsync", "bittorrent", "multicast")
DEFAULT = "rsync"
Op = Callable[[sqlite3.Connection], object]


def image_transport(conn: sqlite3.Connection, image: str | None) -> str | None:
    if not image:
        return None
    row = conn.execute("SELECT transport FROM image_settings WHERE name = ?", (image,)).fetchone()
    return str(row[0]) if row is not None else None


def image_transports(conn: sqlite3.Connection, images: set[str]) -> dict[str, str]:
    """Image name -> its default transport, for those of `images` that have one (one query)."""
    if not images:
        return {}
    names = sorted(images)
    rows = conn.execute(f"SELECT name, transport FROM image_settings WHERE name IN ({','.join('?' * len(names))})",
                        names).fetchall()
    return {str(r[0]): str(r[1]) for r in rows}


def set_image_transport_op(image: str, transport: str | None) -> Op:
    """The image's default transport, one of TRANSPORTS, checked by the caller (None: back to rsync's
    default)."""
    value = transport or None

    def op(conn: sqlite3.Connection) -> None:
        if value is None:
            conn.execute("DELETE FROM image_settings WHERE name = ?", (image,))
        else:
            conn.execute("INSERT INTO image_settings(name, transport) VALUES (?, ?) "
                         "ON CONFLICT(name) DO UPDATE SET transport = excluded.transport", (image, value))

    return op


def effective(conn: sqlite3.Connection, host_transport: str | None, image: str | None) -> str:
    """What the host's installer uses: its own choice, else its image's default, else rsync."""
    return host_transport or image_transport(conn, image) or DEFAULT
