"""updateclient on installed hosts: which version a host should sync to, and what it reports.

An installed host runs `updateclient`, which asks for its target (its assigned image and version, or
one it names: rollback and roll-forward), pulls it with rsync from that version's module, and reports
"start", then "done" or "failed". "done" records the version the host now runs (hosts.running_version)
and when (hosts.last_update). "autoinstall" records that the host asked to be installed again.

The reports' credential is the host's install token: the installer had it, the autoinstall script
leaves it in the installed system's /etc/systemimager/updateclient.conf, and a reinstall replaces it
(an old system cannot report into a new install). Reads take a connection; writes are journal
operations (functions of a connection) so the daemon's group committer runs them.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from protocols.names import InvalidName, image_name
from state.hosts import effective_host_by_name, host_by_name, host_exists, record_update_done
from state.images import image_versions

Op = Callable[[sqlite3.Connection], Any]

STAGES = ("start", "done", "failed", "autoinstall")
MAX_DETAIL = 8192  # an rsync error's tail is the longest detail worth keeping


class UpdateError(ValueError):
    """A target or report that is refused; the message says why, for people."""


@dataclass(frozen=True, slots=True)
class UpdateTarget:
    """The image version a host syncs to, and the rsync module that serves exactly it."""

    host: str
    image: str
    version: int
    assigned: bool  # True: the host's own assignment; False: a version the client asked for

    @property
    def module(self) -> str:
        return f"{self.image}_v{self.version}"

    def as_dict(self) -> dict[str, Any]:
        return {"host": self.host, "image": self.image, "version": self.version, "module": self.module,
                "assigned": self.assigned}


def check_image_name(image: object) -> str:
    """protocols.names.image_name, raising UpdateError: services/api_update.py (another change's file) takes a
    bad image name as an UpdateError."""
    try:
        return image_name(image)
    except InvalidName as e:
        raise UpdateError(str(e)) from None


def check_version(version: object) -> int | None:
    if version is None or version == "":
        return None
    if isinstance(version, str) and version.lstrip("v").isdigit():
        version = int(version.lstrip("v"))
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise UpdateError(f"version {version!r} is not a positive integer")
    return version


def resolve_target(conn: sqlite3.Connection, host: str, image: str | None = None,
                   version: int | None = None) -> UpdateTarget:
    """The version host `host` should run: the one asked for, else its assignment (None = the newest)."""
    stored = effective_host_by_name(conn, host)  # its profile's image and version where it has none of its own
    if stored is None:
        raise LookupError(f"no host named {host!r}")
    assigned_image, assigned_version = stored.image, stored.version
    want_image = image or assigned_image
    if not want_image:
        raise UpdateError(f"host {host} has no image; name one (--image NAME)")
    check_image_name(want_image)
    available = list(image_versions(conn, want_image))
    if not available:
        raise UpdateError(f"image {want_image} has no captured version")
    if version is not None:
        want_version = version
    elif image is None or image == assigned_image:
        want_version = assigned_version if assigned_version is not None else available[-1]
    else:
        want_version = available[-1]
    if want_version not in available:
        raise UpdateError(f"image {want_image} has no version {want_version} "
                          f"(captured: {', '.join(f'v{v}' for v in available)})")
    assigned = want_image == assigned_image and want_version == (
        assigned_version if assigned_version is not None else available[-1])
    return UpdateTarget(host, want_image, want_version, assigned)


def check_stage(stage: object) -> str:
    if stage not in STAGES:
        raise UpdateError(f"stage must be one of {', '.join(STAGES)}, got {stage!r}")
    return str(stage)


def check_detail(detail: object) -> str | None:
    if detail is None:
        return None
    if not isinstance(detail, str):
        raise UpdateError("detail must be a string")
    return detail[-MAX_DETAIL:]


def report_op(host: str, now: float, stage: str, image: str | None, version: int | None,
              detail: str | None) -> Op:
    """Record an update report; "done" sets the version the host runs and when it got there.

    Returns whether the host exists. A "done" for another image than the host's assignment still
    records the version number: running_version means "the tree on the disk", whatever it came from,
    and the report row keeps the image's name.
    """

    def op(conn: sqlite3.Connection) -> bool:
        if not host_exists(conn, host):
            return False
        conn.execute("INSERT INTO update_events(host, time, stage, image, version, detail) VALUES (?,?,?,?,?,?)",
                     (host, now, stage, image, version, detail))
        if stage == "done" and version is not None:
            record_update_done(conn, host, version, now)
        return True

    return op


def last_update(conn: sqlite3.Connection, host: str) -> dict[str, Any] | None:
    """The host's newest update report and when an update last finished, or None if it never ran one."""
    stored = host_by_name(conn, host)
    event = conn.execute("SELECT time, stage, image, version, detail FROM update_events WHERE host = ? "
                         "ORDER BY id DESC LIMIT 1", (host,)).fetchone()
    finished = stored.last_update if stored is not None else None
    if event is None and finished is None:
        return None
    out: dict[str, Any] = {"finished": finished}
    if event is not None:
        out.update(time=event[0], stage=event[1], image=event[2], version=event[3], detail=event[4])
    return out


def update_events(conn: sqlite3.Connection, host: str, limit: int = 50) -> list[dict[str, Any]]:
    rows = conn.execute("SELECT id, time, stage, image, version, detail FROM update_events WHERE host = ? "
                        "ORDER BY id DESC LIMIT ?", (host, limit)).fetchall()
    return [{"id": r[0], "time": r[1], "stage": r[2], "image": r[3], "version": r[4], "detail": r[5]}
            for r in reversed(rows)]
