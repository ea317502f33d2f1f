"""Logging: one line per event with key=value fields; JSON lines for log shippers.

Under journald (JOURNAL_STREAM set) the timestamp is left out: the journal has its own.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time


class _KeyValueFormatter(logging.Formatter):
    def __init__(self, with_time: bool) -> None:
        super().__init__()
        self.with_time = with_time

    def format(self, record: logging.LogRecord) -> str:
        msg = record.getMessage()
        head = f"level={record.levelname.lower()} logger={record.name.removeprefix('imageserver.')}"
        if self.with_time:
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(record.created))
            head = f"{stamp}.{int(record.msecs):03d} {head}"
        line = f"{head} {msg}"
        if record.exc_info:
            line += " traceback=" + json.dumps(self.formatException(record.exc_info))
        return line


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        fields: dict[str, object] = {
            "time": record.created,
            "level": record.levelname.lower(),
            "logger": record.name,
        }
        # Messages are "k=v k=v ..." by convention; split them so shippers get fields.
        for part in record.getMessage().split(" "):
            k, sep, v = part.partition("=")
            if sep and k.isidentifier():
                fields[k] = v.strip('"')
            else:
                fields.setdefault("message", "")
                fields["message"] = (str(fields["message"]) + " " + part).strip()
        if record.exc_info:
            fields["traceback"] = self.formatException(record.exc_info)
        return json.dumps(fields)


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
