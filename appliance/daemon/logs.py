"""Logging: one line per event with key=value fields; JSON lines for log shippers.

The fields come structurally: state/eventlog.py puts the event's dict on the record (`record.fields`),
and both formatters render from it; nothing is parsed back out of message text. A record without
fields (a library's, asyncio's) keeps its message as text.

When stderr is the journal (JOURNAL_STREAM names its device and inode) the timestamp is left out, the
journal has its own, and each line starts with its syslog priority (`<3>` error ... `<7>` debug), which
journald takes off and files the entry under: `journalctl -u imageserver -p err` shows the errors.
"""

from __future__ import annotations

import json
import logging
import math
import os
import sys
import time
from collections.abc import Mapping

from state.eventlog import FIELDS_ATTR, render_fields


def record_fields(record: logging.LogRecord) -> Mapping[str, object] | None:
    fields = getattr(record, FIELDS_ATTR, None)
    return fields if isinstance(fields, Mapping) else None


class _KeyValueFormatter(logging.Formatter):
    def __init__(self, with_time: bool) -> None:
        super().__init__()
        self.with_time = with_time

    def format(self, record: logging.LogRecord) -> str:
        fields = record_fields(record)
        msg = render_fields(fields) if fields is not None else record.getMessage()
        head = f"level={record.levelname.lower()} logger={record.name.removeprefix('imageserver.')}"
        if self.with_time:
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(record.created))
            head = f"{stamp}.{int(record.msecs):03d} {head}"
        line = f"{head} {msg}"
        if record.exc_info:
            line += " traceback=" + json.dumps(self.formatException(record.exc_info))
        return line


def json_value(value: object) -> object:
    """A field as JSON: strings, finite numbers, booleans and null as they are, anything else (an
    address, a path) as its text."""
    if value is None or isinstance(value, str | bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    return str(value)


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, object] = {
            "time": record.created,
            "level": record.levelname.lower(),
            "logger": record.name,
        }
        fields = record_fields(record)
        if fields is None:
            out["message"] = record.getMessage()
        else:
            for key, value in fields.items():
                out.setdefault(key, json_value(value))  # a field never overwrites time, level or logger
        if record.exc_info:
            out["traceback"] = self.formatException(record.exc_info)
        return json.dumps(out)


# sd-daemon(3) priorities: journald reads a leading "<N>" on a stream line as the entry's priority.
SYSLOG_PRIORITY = {logging.CRITICAL: 2, logging.ERROR: 3, logging.WARNING: 4, logging.INFO: 6, logging.DEBUG: 7}


def syslog_priority(levelno: int) -> int:
    """The syslog priority of a logging level; a level between two named ones takes the more severe."""
    return next((p for lvl, p in sorted(SYSLOG_PRIORITY.items()) if levelno <= lvl), 2)


class _JournalPriority(logging.Formatter):
    """Another formatter's line with its syslog priority in front, for journald."""

    def __init__(self, inner: logging.Formatter) -> None:
        super().__init__()
        self.inner = inner

    def format(self, record: logging.LogRecord) -> str:
        return f"<{syslog_priority(record.levelno)}>{self.inner.format(record)}"


def stderr_is_journal(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether stderr is the journal's stream (systemd.exec(5), $JOURNAL_STREAM "device:inode"): not merely
    set, which a command started from a service's shell with its stderr redirected also inherits."""
    dev, _, ino = environ.get("JOURNAL_STREAM", "").partition(":")
    if not (dev.isdigit() and ino.isdigit()):
        return False
    try:
        st = os.fstat(sys.stderr.fileno())
    except (OSError, ValueError, AttributeError):
        return False
    return (st.st_dev, st.st_ino) == (int(dev), int(ino))


def setup_logging(level: str = "info", fmt: str = "text") -> None:
    handler = logging.StreamHandler(sys.stderr)
    journal = stderr_is_journal()
    formatter: logging.Formatter = _JsonFormatter() if fmt == "json" else _KeyValueFormatter(with_time=not journal)
    handler.setFormatter(_JournalPriority(formatter) if journal else formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # aiohttp's access log would be a second, differently shaped line per request.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
