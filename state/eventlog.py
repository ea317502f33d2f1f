"""One log line per event, its fields carried as a dict on the record (not parsed back out of text).

    log = EventLog("imageserver.dhcp")
    log.info("dhcp-ack", mac=mac, ip=ip, hostname=hostname or "-")

The record's message renders as `event=dhcp-ack mac=... ip=... hostname=...` for every handler (the
text formatter, pytest's caplog), and `record.fields` holds {"event": ..., "mac": ..., ...} for the
JSON formatter (appliance/daemon/logs.py). A string value that is not one plain word (spaces, quotes,
backslashes, control characters, empty) is rendered quoted, as repr quotes it, so a hostile hostname
or a free-text error cannot forge or split fields.

It lives in state/ because that is the lowest layer that logs: protocols/ do no I/O, and state/ imports
nothing of ours, so services/ and appliance/ share it from here.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass

FIELDS_ATTR = "fields"  # the LogRecord attribute holding the event's dict
_PLAIN = re.compile(r"[^\s'\"\\]+")


def render_value(value: object) -> str:
    text = value if isinstance(value, str) else str(value)
    return text if _PLAIN.fullmatch(text) and text.isprintable() else repr(text)


def render_fields(fields: Mapping[str, object]) -> str:
    """'k=v k=v ...' in the dict's order."""
    return " ".join(f"{key}={render_value(value)}" for key, value in fields.items())


@dataclass(frozen=True, slots=True)
class EventMessage:
    """A record's msg: str() is the key=value line, rendered only if a handler formats it."""

    fields: Mapping[str, object]

    def __str__(self) -> str:
        return render_fields(self.fields)


ExcInfo = bool | BaseException | None


class EventLog:
    """A logger whose calls name an event and its fields: `log.warning("x-failed", error=str(e))`."""

    __slots__ = ("logger",)

    def __init__(self, logger: str | logging.Logger) -> None:
        self.logger = logger if isinstance(logger, logging.Logger) else logging.getLogger(logger)

    def isEnabledFor(self, level: int) -> bool:  # logging.Logger's name, for drop-in use
        return self.logger.isEnabledFor(level)

    def log(self, level: int, event: str, /, *, exc_info: ExcInfo = None, **fields: object) -> None:
        self._emit(level, event, exc_info, fields)

    def debug(self, event: str, /, **fields: object) -> None:
        self._emit(logging.DEBUG, event, None, fields)

    def info(self, event: str, /, **fields: object) -> None:
        self._emit(logging.INFO, event, None, fields)

    def warning(self, event: str, /, **fields: object) -> None:
        self._emit(logging.WARNING, event, None, fields)

    def error(self, event: str, /, **fields: object) -> None:
        self._emit(logging.ERROR, event, None, fields)

    def exception(self, event: str, /, **fields: object) -> None:
        """error() with the current exception's traceback (call it in an except block)."""
        self._emit(logging.ERROR, event, True, fields)

    def _emit(self, level: int, event: str, exc_info: ExcInfo, fields: dict[str, object]) -> None:
        if not self.logger.isEnabledFor(level):
            return
        values = {"event": event, **fields}
        # stacklevel 3: the record names the line that called info()/log()/..., not this helper.
        self.logger.log(level, EventMessage(values), exc_info=exc_info, extra={FIELDS_ATTR: values}, stacklevel=3)
