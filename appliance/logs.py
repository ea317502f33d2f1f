"""Logging: one line per event with key=value fields; JSON lines for log shippers.

Under journald (JOURNAL_STREAM set) the timestamp is left out: the journal has its own.
"""

from __future__ import annotations

import ast
import json
import logging
import os
import re
import sys
import time

_KEY = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)=")


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


def split_fields(message: str) -> tuple[dict[str, str], str]:
    """'event=x mac=aa reason=\'two words\' free text' -> ({event, mac, reason}, 'free text').

    Values are bare words, or quoted as %r quotes them ('...' or "..." with backslash escapes, decoded
    like a Python literal), so a reason with spaces stays one field. Words that are not key=value are
    kept, in order, as the message.
    """
    fields: dict[str, str] = {}
    rest: list[str] = []
    i, n = 0, len(message)
    while i < n:
        while i < n and message[i] == " ":
            i += 1
        if i >= n:
            break
        m = _KEY.match(message, i)
        if m and m.end() < n and message[m.end()] in "'\"":
            quote, j = message[m.end()], m.end() + 1
            while j < n and message[j] != quote:
                j += 2 if message[j] == "\\" else 1
            literal = message[m.end():j + 1]
            try:
                value = ast.literal_eval(literal)
            except (ValueError, SyntaxError):
                value = literal.strip(quote)
            fields[m.group(1)] = str(value)
            i = j + 1
            continue
        end = message.find(" ", i)
        end = n if end < 0 else end
        word = message[i:end]
        if m and m.end() <= end:
            fields[m.group(1)] = word[m.end() - i:]
        else:
            rest.append(word)
        i = end
    return fields, " ".join(rest)


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, object] = {
            "time": record.created,
            "level": record.levelname.lower(),
            "logger": record.name,
        }
        # Messages are "k=v k=v ..." by convention; split them so shippers get fields.
        fields, message = split_fields(record.getMessage())
        for key, value in fields.items():
            out.setdefault(key, value)  # a field never overwrites time, level or logger
        if message:
            out["message"] = message
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
