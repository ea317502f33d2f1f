"""What an installer's reports mean: the detail a report stores, a failure's stage and reason, and the
newest install attempt read back from a host's timeline (state/installs.py stores the rows).

  assigned/new --first report--> installing --"done"--> installed   (next PXE boot: local disk)
                                            --"failed"-> failed      (stays so until a reinstall)
"""

from __future__ import annotations

import json
from typing import Any

from domain.errors import NotFound
from protocols.install_report import InvalidReport
from state import installs
from state.db import Connection
from state.hosts import Op, host_by_name

FINAL_STAGES = ("done", "failed")
MAX_DETAIL = 8192  # a failure's log tail is the longest detail worth keeping


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
            raise InvalidReport(f"{key} must be a non-negative integer, got {value!r}")
        out[key] = value
    if not out:
        return None
    text = json.dumps(out, sort_keys=True)
    if len(text) > MAX_DETAIL:
        if isinstance(out.get("text"), str):
            out["text"] = "..." + out["text"][-(MAX_DETAIL // 2):]  # the end of a log says the most
        text = json.dumps(out, sort_keys=True)[:MAX_DETAIL]
    return text


def failure_detail(detail: str | None, last_stage: str | None) -> str:
    """Give a failure event a "stage" and a "reason": from its own text ("stage: X\\nreason: Y\\n..."),
    else `last_stage`, the last stage reported before it."""
    out: dict[str, Any] = json.loads(detail) if detail else {}
    text = out.get("text")
    if isinstance(text, str):
        for line in text.splitlines()[:4]:
            key, sep, value = line.partition(":")
            if sep and key.strip() in ("stage", "reason") and key.strip() not in out:
                out[key.strip()] = value.strip()
    if not out.get("stage"):
        out["stage"] = last_stage if last_stage is not None else "unknown"
    if not out.get("reason"):
        out["reason"] = (text.strip().splitlines() or ["no reason given"])[-1] if isinstance(text, str) \
            else "no reason given"
    return json.dumps(out, sort_keys=True)


def state_after(state: str, stage: str) -> str | None:
    """The host's state once its installer reported `stage` (None: unchanged)."""
    if stage == "done":
        return "installed"
    if stage == "failed":
        return "failed"
    if state in ("new", "assigned"):
        # An installer that reports without having fetched a script through us (boot media) is installing too.
        return "installing"
    return None


def record_op(name: str, mac: str | None, now: float, stage: str, detail: str | None,
              version: int | None = None) -> Op:
    """Record one reported stage (state.installs.record_report) and move the host on (state_after); a
    failure's detail gets its stage and reason. The op returns the host's new state; NotFound: no such host."""

    def op(conn: Connection) -> str:
        host = host_by_name(conn, name)
        if host is None:
            raise NotFound(f"host {name} does not exist")
        stored = failure_detail(detail, installs.last_stage(conn, name)) if stage == "failed" else detail
        new = state_after(host.state, stage)
        installs.record_report(conn, name, mac, now, stage, stored, new, version)
        return new or host.state

    return op


# --------------------------------------------------------------------------- reading a timeline


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
