"""Installs: what an autoinstall client is told, what it reports, and the host's state machine.

  assigned/new --GET script--> installing --"done"--> installed   (next PXE boot: local disk)
                                          --"failed"-> failed      (stays so until a reinstall)
  any --reinstall--> assigned (with a fresh install token; the old installer's token stops working)

Every report is a row in install_events (host, mac, time, stage, detail JSON); the timeline of a host
is those rows in order. A failure's stage and reason live in its event's detail, so the hosts table
needs no columns of its own for them. Reads take a connection; writes are journal operations
(functions of a connection) so the daemon's group committer runs them.
"""

from __future__ import annotations

import hmac
import json
import re
import sqlite3
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from ipaddress import IPv4Address
from typing import Any

from protocols.names import image_name
from state.credentials import new_token
from state.hosts import (
    Host,
    count_due_to_install,
    host_by_name,
    inherited,
    insert_host,
    reassign,
    record_install_stage,
)
from state.images import newest

Op = Callable[[sqlite3.Connection], Any]

FINAL_STAGES = ("done", "failed")
# Stages are short words the installer and the autoinstall script choose ("partition", "rsync", ...).
_STAGE = re.compile(r"^[a-z][a-z0-9_.-]{0,31}$")
MAX_DETAIL = 8192  # a failure's log tail is the longest detail worth keeping
_SCRIPT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
# Shell variable values go into single quotes; a value is refused rather than escaped if it is odd.
_SAFE_VALUE = re.compile(r"^[A-Za-z0-9 ._:/,+@=-]*$")


class InstallError(ValueError):
    """A report or request the install state machine refuses; the message says why."""


def token_matches(host: Host, given: str | None) -> bool:
    if not host.install_token or not given:
        return False
    return hmac.compare_digest(host.install_token.encode(), given.encode())


def resolve_version(conn: sqlite3.Connection, host: Host) -> int | None:
    """The version the host installs: its pinned one, else the image's newest (None: nothing captured)."""
    if host.version is not None:
        return host.version
    top = newest(conn, host.image) if host.image else None
    return top.version if top is not None else None


def due_to_install(conn: sqlite3.Connection, image: str) -> int:
    """How many hosts are due to install (assigned or installing) `image`: the receivers a multicast of it
    waits for."""
    return count_due_to_install(conn, image)


# --------------------------------------------------------------------------- the script


def script_variables(values: Mapping[str, object]) -> str:
    """`KEY='value'` lines (exported) for the top of an autoinstall script; None values are left out."""
    lines = ["# --- set by the imageserver for this host (GET /install/<mac>/script)"]
    for key, value in values.items():
        if value is None:
            continue
        text = str(value)
        if not _SAFE_VALUE.match(text):
            raise InstallError(f"{key} {text!r} cannot be put into a shell script")
        lines.append(f"{key}='{text}'; export {key}")
    return "\n".join(lines) + "\n# ---\n"


def with_variables(script: str, values: Mapping[str, object]) -> str:
    """The script with the variables block inserted after its #! line (kept first, so it still runs)."""
    block = script_variables(values)
    if script.startswith("#!"):
        first, _, rest = script.partition("\n")
        return f"{first}\n{block}{rest}"
    return "#!/bin/sh\n" + block + script


def script_source(host: Host) -> str | None:
    """A per-host override in hosts.script: the script itself (several lines) or a file name under scripts/."""
    if not host.script:
        return None
    return host.script


def script_file_name(host: Host) -> str:
    """The file under <state_dir>/scripts/ this host runs: its override name, else `<image>.master`."""
    override = script_source(host)
    name = override if override and "\n" not in override else f"{host.image}.master"
    if not _SCRIPT_NAME.match(name):
        raise InstallError(f"script name {name!r} is not a plain file name")
    return name


# --------------------------------------------------------------------------- events and transitions


def check_stage(stage: object) -> str:
    if not isinstance(stage, str) or not _STAGE.match(stage):
        raise InstallError(f"stage {stage!r} must be a short lower-case word (e.g. partition, rsync, done)")
    return stage


def event_detail(detail: object, bytes_done: object = None, bytes_total: object = None) -> str | None:
    """The detail column: JSON of {"text"|fields..., "bytes", "total"}, bounded in size."""
    out: dict[str, Any] = {}
    if isinstance(detail, dict):
        out.update(detail)
    elif detail not in (None, ""):
        out["text"] = str(detail)
    for key, value in (("bytes", bytes_done), ("total", bytes_total)):
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise InstallError(f"{key} must be a non-negative integer, got {value!r}")
        out[key] = value
    if not out:
        return None
    text = json.dumps(out, sort_keys=True)
    if len(text) > MAX_DETAIL:
        if isinstance(out.get("text"), str):
            out["text"] = "..." + out["text"][-(MAX_DETAIL // 2):]  # the end of a log says the most
        text = json.dumps(out, sort_keys=True)[:MAX_DETAIL]
    return text


def _event(conn: sqlite3.Connection, name: str, mac: str | None, now: float, stage: str,
           detail: str | None) -> int:
    cur = conn.execute("INSERT INTO install_events(host, mac, time, stage, detail) VALUES (?,?,?,?,?)",
                       (name, mac, now, stage, detail))
    return int(cur.lastrowid or 0)


def report_op(name: str, mac: str, now: float, stage: str, detail: str | None,
              version: int | None = None) -> Op:
    """Record one reported stage; "done" makes the host installed, "failed" failed.

    The failure's stage is the one the installer names in its detail, else the last stage reported.
    Returns the new host state.
    """

    def op(conn: sqlite3.Connection) -> str:
        host = host_by_name(conn, name)
        if host is None:
            raise InstallError(f"host {name} does not exist")
        state = host.state
        stored = detail
        if stage == "failed":
            stored = _failure_detail(conn, name, detail)
        _event(conn, name, mac, now, stage, stored)
        if stage == "done":
            state = "installed"
        elif stage == "failed":
            state = "failed"
        elif state in ("new", "assigned"):
            # An installer that reports without having fetched a script through us (boot media) is installing too.
            state = "installing"
        else:
            record_install_stage(conn, name, None, now)
            return state
        record_install_stage(conn, name, state, now, version)
        return state

    return op


def _failure_detail(conn: sqlite3.Connection, name: str, detail: str | None) -> str:
    """Give a failure event a "stage" and a "reason": from its own text ("stage: X\\nreason: Y\\n..."),
    else the last stage reported before it."""
    out: dict[str, Any] = json.loads(detail) if detail else {}
    text = out.get("text")
    if isinstance(text, str):
        for line in text.splitlines()[:4]:
            key, sep, value = line.partition(":")
            if sep and key.strip() in ("stage", "reason") and key.strip() not in out:
                out[key.strip()] = value.strip()
    if not out.get("stage"):
        row = conn.execute("SELECT stage FROM install_events WHERE host = ? AND stage NOT IN ('failed', 'done') "
                           "ORDER BY id DESC LIMIT 1", (name,)).fetchone()
        out["stage"] = row[0] if row is not None else "unknown"
    if not out.get("reason"):
        out["reason"] = (text.strip().splitlines() or ["no reason given"])[-1] if isinstance(text, str) \
            else "no reason given"
    return json.dumps(out, sort_keys=True)


def reinstall_op(name: str, token: str, now: float) -> Op:
    """Make the host install again at its next PXE boot: state assigned, a fresh install token."""

    def op(conn: sqlite3.Connection) -> bool:
        if not reassign(conn, name, token, now):
            return False
        _event(conn, name, None, now, "reinstall", None)
        return True

    return op


def add_host_op(name: str, mac: str, image: str | None, ip: IPv4Address | None, now: float,
                version: int | None = None, transport: str | None = None, profile: str | None = None) -> Op:
    """A new host (state assigned when it has an image, its own or its profile's, else new), with its install
    token."""
    if image:
        image_name(image)  # it becomes a file name under scripts/: refused here too, whoever calls

    def op(conn: sqlite3.Connection) -> None:
        host = Host(name, mac, ip, image, version, "new", now, now, install_token=new_token(),
                    transport=transport, token_issued=now, profile=profile)
        insert_host(conn, replace(host, state="assigned") if inherited(conn, host).image else host)

    return op


@dataclass(slots=True)
class LiveProgress:
    """The newest copy progress per host ("progress" reports), in memory only.

    An installer reports every second while it copies; those are not history worth a row each, so
    only the latest one is kept, and only while the daemon runs.
    """

    latest: dict[str, tuple[float, int, int | None]] = field(default_factory=dict)

    def update(self, name: str, now: float, done: int, total: int | None) -> None:
        self.latest[name] = (now, done, total)

    def clear(self, name: str) -> None:
        self.latest.pop(name, None)

    def get(self, name: str) -> tuple[float, int, int | None] | None:
        return self.latest.get(name)


# --------------------------------------------------------------------------- reading


def _event_dict(r: sqlite3.Row | tuple[Any, ...]) -> dict[str, Any]:
    """(id, mac, time, stage, detail) -> the timeline entry (detail decoded from JSON)."""
    detail: Any = None
    if r[4]:
        try:
            detail = json.loads(r[4])
        except ValueError:
            detail = {"text": r[4]}
    return {"id": r[0], "time": r[2], "stage": r[3], "mac": r[1], "detail": detail}


def timeline(conn: sqlite3.Connection, name: str, since_id: int = 0) -> list[dict[str, Any]]:
    rows = conn.execute("SELECT id, mac, time, stage, detail FROM install_events WHERE host = ? AND id > ? "
                        "ORDER BY id", (name, since_id)).fetchall()
    return [_event_dict(r) for r in rows]


def timelines(conn: sqlite3.Connection, names: list[str]) -> dict[str, list[dict[str, Any]]]:
    """host -> its timeline, for a page of hosts: one query per 500 names (not one per host)."""
    out: dict[str, list[dict[str, Any]]] = {n: [] for n in names}
    for i in range(0, len(names), 500):
        chunk = names[i:i + 500]
        for r in conn.execute("SELECT id, mac, time, stage, detail, host FROM install_events "
                              f"WHERE host IN ({', '.join('?' * len(chunk))}) ORDER BY host, id", chunk):
            out[r[5]].append(_event_dict(r))
    return out


def current_install(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The events of the newest install attempt (from its last "script"/"installer"/"reinstall" start on;
    an installer that starts again after a crash mid-install starts a new attempt).

    Rows written before the script fetch stopped changing state still carry a "script" start marker."""
    start = 0
    for i, event in enumerate(events):
        if event["stage"] == "reinstall":
            start = i
        elif event["stage"] == "script":
            # The installer reports its own start ("installer") just before it fetches the script.
            start = i - 1 if i > start and events[i - 1]["stage"] == "installer" else i
        elif event["stage"] == "installer" and i > 0 and events[i - 1]["stage"] != "reinstall":
            # The installer reports itself once per boot: after any stage but the reinstall marker, the
            # machine was restarted (power cut, crash) and this is a new attempt; the old one's bytes
            # and failure are not this one's.
            start = i
    return events[start:]


def summary(events: list[dict[str, Any]], now: float,
            live: tuple[float, int, int | None] | None = None) -> dict[str, Any]:
    """Progress of the newest attempt: stage, elapsed seconds, bytes done/total, and failure if any.

    `live` is the host's newest "progress" report (time, bytes, total); it counts while the attempt
    is still running and is newer than its last stage."""
    attempt = current_install(events)
    if not attempt:
        return {"stage": None}
    last = attempt[-1]
    out: dict[str, Any] = {"stage": last["stage"], "started": attempt[0]["time"],
                           "elapsed": round((last["time"] if last["stage"] in FINAL_STAGES else now)
                                            - attempt[0]["time"], 3)}
    for event in reversed(attempt):
        detail = event["detail"] if isinstance(event["detail"], dict) else {}
        if "bytes" in detail:
            out["bytes"] = detail["bytes"]
            if "total" in detail:
                out["total"] = detail["total"]
            break
    if live is not None and last["stage"] not in FINAL_STAGES and live[0] >= last["time"]:
        out["bytes"] = live[1]
        if live[2] is not None:
            out["total"] = live[2]
        else:
            out.pop("total", None)
    if last["stage"] == "failed" and isinstance(last["detail"], dict):
        out["failure"] = {"stage": last["detail"].get("stage"), "reason": last["detail"].get("reason")}
    return out


# --------------------------------------------------------------------------- install_events for other modules
#
# The satellite outbox, the install tally (/metrics), the mirror and the bulk loader read and write the
# events through these, so the table has one owner.


def insert_events(conn: sqlite3.Connection, events: Iterable[tuple[str, str | None, float, str]]) -> None:
    """Many (host, mac, time, stage) events at once (bench and test fleets)."""
    conn.executemany("INSERT INTO install_events(host, mac, time, stage) VALUES (?,?,?,?)", events)


def newest_event_id(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT coalesce(max(id), 0) FROM install_events").fetchone()[0])


def events_after(conn: sqlite3.Connection, last_id: int, limit: int
                 ) -> list[tuple[int, str, str | None, float, str, str | None]]:
    """(id, host, mac, time, stage, detail) of the events after id `last_id`, oldest first, at most `limit`."""
    return [tuple(r) for r in conn.execute(
        "SELECT id, host, mac, time, stage, detail FROM install_events WHERE id > ? ORDER BY id LIMIT ?",
        (last_id, limit))]


def last_event_time(conn: sqlite3.Connection, name: str) -> float | None:
    """When host `name` last reported (None: never)."""
    value = conn.execute("SELECT max(time) FROM install_events WHERE host = ?", (name,)).fetchone()[0]
    return float(value) if value is not None else None
