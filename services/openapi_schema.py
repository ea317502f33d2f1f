"""OpenAPI schemas generated from the request and response dataclasses (declared once, in domain/):
a field's type hint gives its schema, a field without a default is required, and a field's
`domain.views.doc()` metadata adds its description (and e.g. an enum); an `omit_none` field is left
out of the JSON instead of being null, so it is optional and not nullable."""

from __future__ import annotations

import types
from dataclasses import MISSING, fields, is_dataclass
from ipaddress import IPv4Address
from typing import Any, Union, get_args, get_origin, get_type_hints

_SCALARS: dict[Any, dict[str, Any]] = {
    str: {"type": "string"}, bool: {"type": "boolean"}, int: {"type": "integer"}, float: {"type": "number"},
    IPv4Address: {"type": "string", "format": "ipv4"},
}


def type_schema(hint: Any) -> dict[str, Any]:
    origin, args = get_origin(hint), get_args(hint)
    if origin in (Union, types.UnionType):
        present = [a for a in args if a is not type(None)]
        if len(present) == 1 and isinstance(present[0], type) and is_dataclass(present[0]) and type(None) in args:
            # OpenAPI 3.0 ignores keywords beside a $ref: a nullable object is spelled out in place.
            return {**schema(present[0]), "nullable": True}
        out = type_schema(present[0]) if len(present) == 1 else {"oneOf": [type_schema(a) for a in present]}
        return {**out, "nullable": True} if type(None) in args else out
    if hint in _SCALARS:
        return dict(_SCALARS[hint])
    if origin is list:
        return {"type": "array", "items": type_schema(args[0]) if args else {}}
    if origin is dict and len(args) == 2 and args[1] is not Any:
        return {"type": "object", "additionalProperties": type_schema(args[1])}
    if origin is dict or hint is dict:
        return {"type": "object"}
    if is_dataclass(hint):
        return {"$ref": f"#/components/schemas/{schema_name(hint)}"}
    return {}  # Any


def field_schema(hint: Any, metadata: Any) -> dict[str, Any]:
    out = {**type_schema(hint), **metadata.get("openapi", {})}
    if metadata.get("omit_none"):
        out.pop("nullable", None)
    return out


def schema(cls: type) -> dict[str, Any]:
    hints = get_type_hints(cls)
    required = [f.name for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING]
    out: dict[str, Any] = {"type": "object",
                           "properties": {f.name: field_schema(hints[f.name], f.metadata) for f in fields(cls)}}
    if required:
        out["required"] = required
    extra = dict(getattr(cls, "OPENAPI", {}))  # class-level keywords (e.g. additionalProperties)
    extra.pop("title", None)
    return {**out, **extra}


def schema_name(cls: type) -> str:
    return str(getattr(cls, "OPENAPI", {}).get("title", cls.__name__))


def _nested(hint: Any) -> list[type]:
    """The dataclasses a type hint names (in unions, lists and dicts too)."""
    if isinstance(hint, type) and is_dataclass(hint):
        return [hint]
    return [cls for arg in get_args(hint) for cls in _nested(arg)]


def schemas(types: list[type]) -> dict[str, dict[str, Any]]:
    """The components/schemas of `types` and of every dataclass their fields name, by name."""
    out: dict[str, dict[str, Any]] = {}
    todo = list(types)
    while todo:
        cls = todo.pop(0)
        name = schema_name(cls)
        if name in out:
            continue
        out[name] = schema(cls)
        todo.extend(n for hint in get_type_hints(cls).values() for n in _nested(hint))
    return dict(sorted(out.items()))
