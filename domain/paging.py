"""One page of a long list: ?limit= and ?offset= the same way for every list the API pages."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from domain.errors import Invalid

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000  # a page is answered in milliseconds; a whole 10,000-host table never is in one response
_TRUE = ("1", "true", "yes")


@dataclass(frozen=True, slots=True)
class Page:
    limit: int = DEFAULT_LIMIT
    offset: int = 0

    @classmethod
    def from_query(cls, query: Mapping[str, str], default: int = DEFAULT_LIMIT) -> Page:
        return cls(_number(query, "limit", default, 1, MAX_LIMIT), _number(query, "offset", 0, 0, 1 << 31))

    def next_offset(self, shown: int, total: int) -> int | None:
        end = self.offset + shown
        return end if end < total else None


def flag(query: Mapping[str, str], key: str) -> bool:
    return str(query.get(key, "")).lower() in _TRUE


def _number(query: Mapping[str, str], key: str, default: int, lo: int, hi: int) -> int:
    raw = query.get(key)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise Invalid(f"{key}: expected a whole number, got {raw[:40]!r}") from None
    if not lo <= value <= hi:
        raise Invalid(f"{key}: {value} is out of range ({lo}..{hi})")
    return value
