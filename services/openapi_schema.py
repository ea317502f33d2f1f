"""OpenAPI schemas generated from the request and response dataclasses (declared once, in domain/):
a field's type hint gives its schema, a field without a default is required."""

from __future__ import annotations

import types
from dataclasses import MISSING, fields, is_dataclass
from ipaddress import IPv4Address
from typing import Any, Union, get_args, get_origin, get_type_hints

from domain.hosts import AddHost, HostPage, HostView
from domain.metrics import PoolUsage

_SCALARS: dict[Any, dict[str, Any]] = {
    str: {"type": "string"}, bool: {"type": "boolean"}, int: {"type": "integer"}, float: {"type": "number"},
    IPv4Address: {"type": "string", "format": "ipv4"},
}


def type_schema(hint: Any) -> dict[str, Any]:
    origin, args = get_origin(hint), get_args(hint)
    if origin in (Union, types.UnionType):
        present = [a for a in args if a is not type(None)]
        out = type_schema(present[0]) if len(present) == 1 else {}
        return {**out, "nullable": True} if type(None) in args else out
    if hint in _SCALARS:
        return dict(_SCALARS[hint])
    if origin is list:
        return {"type": "array", "items": type_schema(args[0]) if args else {}}
    if origin is dict or hint is dict:
        return {"type": "object"}
    if is_dataclass(hint):
        return {"$ref": f"#/components/schemas/{hint.__name__}"}
    return {}  # Any


def schema(cls: type) -> dict[str, Any]:
    hints = get_type_hints(cls)
    required = [f.name for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING]
    out: dict[str, Any] = {"type": "object", "properties": {f.name: type_schema(hints[f.name]) for f in fields(cls)}}
    if required:
        out["required"] = required
    return out


# The types of the routes converted to the domain layer (hosts, pools).
TYPES = (AddHost, HostView, HostPage, PoolUsage)
SCHEMAS = {cls.__name__: schema(cls) for cls in TYPES}


def ref(cls: type) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{cls.__name__}"}
