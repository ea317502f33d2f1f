"""RFC 2347 option negotiation for read requests: which options we acknowledge, with what values.

Decision table (anything not listed is ignored; an ignored option is simply left out of the OACK):

  blksize    (RFC 2348)  decimal 8..65464 -> accepted. Above the server's maximum -> acknowledged
                         with that maximum (the RFC lets the server answer a smaller size).
                         Below 8 or not a decimal number -> ignored (never an OACK below 8).
  windowsize (RFC 7440)  decimal 1..65535 -> accepted, capped at the server's maximum window.
                         0, above 65535 or not a number -> ignored.
  timeout    (RFC 2349)  decimal 1..max_timeout seconds -> echoed and used for retransmission.
                         Above the server's max_timeout -> declined (left out of the OACK; RFC 2349
                         has the server echo the value or ignore the option, never change it), so
                         the server's own timer applies. Anything else -> ignored.
  tsize      (RFC 2349)  any decimal value (clients send 0) -> answered with the real size,
                         only when the size is known (octet mode) and not zero; otherwise
                         ignored. An empty file gets no tsize because curl (7.x, 8.x) rejects
                         "tsize 0" in an OACK as invalid; the empty DATA 1 says the same.

If no option is accepted the transfer starts with DATA block 1, exactly as without options.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

DEFAULT_BLKSIZE = 512
MIN_BLKSIZE = 8
MAX_BLKSIZE = 65464
MIN_WINDOWSIZE = 1
MAX_WINDOWSIZE = 65535
MIN_TIMEOUT = 1
MAX_TIMEOUT = 255
_MAX_DIGITS = 10  # longer than any valid value; keeps int() away from huge strings


@dataclass(frozen=True, slots=True)
class Negotiated:
    blksize: int = DEFAULT_BLKSIZE
    windowsize: int = 1
    timeout: int | None = None  # seconds the client asked for, or None for the server's default
    tsize: int | None = None
    acknowledged: Mapping[str, str] = field(default_factory=dict)  # the OACK body; empty -> no OACK


def _decimal(value: str) -> int | None:
    if not value or len(value) > _MAX_DIGITS or not (value.isascii() and value.isdigit()):
        return None
    return int(value)


def negotiate(
    requested: Mapping[str, str],
    *,
    size: int | None,
    max_blksize: int = MAX_BLKSIZE,
    max_windowsize: int = MAX_WINDOWSIZE,
    max_timeout: int = MAX_TIMEOUT,
) -> Negotiated:
    """Decide the transfer parameters for a read request's options (names already lower-case)."""
    blksize, windowsize, timeout, tsize = DEFAULT_BLKSIZE, 1, None, None
    acknowledged: dict[str, str] = {}
    for name, raw in requested.items():
        value = _decimal(raw)
        if value is None:
            continue
        if name == "blksize" and value >= MIN_BLKSIZE:
            blksize = min(value, max_blksize, MAX_BLKSIZE)
            acknowledged[name] = str(blksize)
        elif name == "windowsize" and MIN_WINDOWSIZE <= value <= MAX_WINDOWSIZE:
            windowsize = max(MIN_WINDOWSIZE, min(value, max_windowsize))
            acknowledged[name] = str(windowsize)
        elif name == "timeout" and MIN_TIMEOUT <= value <= min(max_timeout, MAX_TIMEOUT):
            timeout = value
            acknowledged[name] = str(value)
        elif name == "tsize" and size:
            tsize = size
            acknowledged[name] = str(size)
    return Negotiated(blksize, windowsize, timeout, tsize, acknowledged)
