"""Response views: dataclasses whose fields are exactly the JSON fields they render, so a response type is
declared once and services/openapi_schema.py generates its OpenAPI schema from the same fields.

A field's schema comes from its type hint; `doc()` in its metadata adds a description (and any other
schema keywords, e.g. an enum), and `omit_none` leaves the key out of the JSON while the value is None
(an optional field rather than a null one).
"""

from __future__ import annotations

from dataclasses import fields, is_dataclass
from functools import cache
from typing import Any


def doc(description: str | None = None, *, omit_none: bool = False, **schema: Any) -> dict[str, Any]:
    """A view field's metadata: `x: int | None = field(default=None, metadata=doc("what x is"))`."""
    extra = {"description": description, **schema} if description else dict(schema)
    return {"openapi": extra, "omit_none": omit_none}


@cache
def _layout(cls: type) -> tuple[tuple[str, bool], ...]:
    """(name, omit_none) per field: dataclasses.fields() costs more than the rendering of a small view."""
    return tuple((f.name, bool(f.metadata.get("omit_none"))) for f in fields(cls))


def view_json(view: Any) -> dict[str, Any]:
    """The view's JSON object: its fields by name, nested views (in lists and dicts too) rendered as well."""
    out: dict[str, Any] = {}
    kind: type = type(view)  # type[Any] is not Hashable to mypy; the class object is
    for name, omit_none in _layout(kind):
        value = getattr(view, name)
        if value is None and omit_none:
            continue
        out[name] = _plain(value)
    return out


def _plain(value: Any) -> Any:
    if is_dataclass(value) and not isinstance(value, type):
        as_json = getattr(value, "as_json", None)
        return as_json() if callable(as_json) else view_json(value)
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):  # e.g. Transports' seeders by module: views as values
        return {k: _plain(v) for k, v in value.items()}
    return value
