"""Request bodies parsed as JSON with bounds: a size cap, and a nesting depth checked before parsing.

json.loads recurses once per nesting level: 100,000 `[` raised RecursionError, which is no ValueError,
so it became a 500 with a traceback. The depth is counted by a scan that skips strings, so the parser
never sees a document deeper than `max_depth`.
"""

from __future__ import annotations

import json
from typing import Any

MAX_BYTES = 1024 * 1024
MAX_DEPTH = 32

_OPEN = frozenset(b"[{")
_CLOSE = frozenset(b"]}")
_QUOTE = ord('"')
_BACKSLASH = ord("\\")


class BodyError(ValueError):
    """What is wrong with the body, in words for the client."""


def nesting_depth(raw: bytes, limit: int) -> int:
    """The deepest array/object nesting in `raw`, counting stops at limit + 1."""
    depth = deepest = 0
    in_string = escaped = False
    for byte in raw:
        if in_string:
            if escaped:
                escaped = False
            elif byte == _BACKSLASH:
                escaped = True
            elif byte == _QUOTE:
                in_string = False
        elif byte == _QUOTE:
            in_string = True
        elif byte in _OPEN:
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > limit:
                    return deepest
        elif byte in _CLOSE:
            depth -= 1
    return deepest


def parse_json(raw: bytes, *, max_bytes: int = MAX_BYTES, max_depth: int = MAX_DEPTH) -> Any:
    if len(raw) > max_bytes:
        raise BodyError(f"body is larger than {max_bytes} bytes")
    if nesting_depth(raw, max_depth) > max_depth:
        raise BodyError(f"body is nested deeper than {max_depth} levels")
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        raise BodyError("body is not valid JSON") from None
