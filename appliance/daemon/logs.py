"""Logging: one line per event with key=value fields; JSON lines for log shippers.

The fields come structurally: state/eventlog.py puts the event's dict on the record (`record.fields`),
and both formatters render from it; nothing is parsed back out of message text. A record without
fields (a library's, asyncio's) keeps its message as text.

Under journald (JOURNAL_STREAM set) the timestamp is left out: the journal has its own.
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


def setup_logging(level: str = "info", fmt: str = "text") -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(_KeyValueFormatter(with_time="JOURNAL_STREAM" not in os.environ))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # aiohttp's access log would be a second, differently shaped line per request.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
