"""Request bodies parsed into their dataclasses (domain/requests.py and AddHost), the same types the OpenAPI
schemas are generated from, so the document and the handler cannot disagree on a body's shape.

`parse_body` checks the JSON object against the fields' type hints: a missing required key, a value of the
wrong type or (where the body is an operator's) an unknown key is refused as `Invalid`, naming the key. What
a value means (a MAC's spelling, a name's rule, a stage) stays the use case's check: this is the shape only.
Bodies that machines send (installers, updateclient, satellites) ignore unknown keys, so an older server
takes a newer client's reports.
"""

from __future__ import annotations

import types
from collections.abc import Mapping
from dataclasses import MISSING, fields, is_dataclass
from ipaddress import AddressValueError, IPv4Address
from typing import Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

from domain.errors import Invalid

T = TypeVar("T")

_JSON_TYPES = {str: "a string", int: "a number", float: "a number", bool: "a boolean", dict: "an object",
               list: "a list", type(None): "null"}
_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "true or false", IPv4Address: "an IPv4 address"}


def parse_body(cls: type[T], body: Any, *, unknown: Literal["refuse", "ignore"] = "refuse") -> T:
    """`body` (parsed JSON) as a `cls`; Invalid names the first key that does not fit."""
    if not isinstance(body, Mapping):
        raise Invalid("the body must be a JSON object")
    return _object("", cls, body, unknown)


def _object(prefix: str, cls: type[T], body: Mapping[str, Any], unknown: str) -> T:
    assert is_dataclass(cls)
    hints = get_type_hints(cls)
    known = {f.name for f in fields(cls)}
    if unknown == "refuse":
        extra = sorted(k for k in body if k not in known)
        if extra:
            raise Invalid(f'"{prefix}{extra[0]}" is an unknown field '
                          f'(accepted: {", ".join(f.name for f in fields(cls))})')
    values: dict[str, Any] = {}
    for f in fields(cls):
        if f.name not in body:
            if f.default is MISSING and f.default_factory is MISSING:
                raise Invalid(f'"{prefix}{f.name}" is required')
            continue
        values[f.name] = _value(f"{prefix}{f.name}", hints[f.name], body[f.name], unknown)
    return cls(**values)


def _value(where: str, hint: Any, value: Any, unknown: str) -> Any:
    origin, args = get_origin(hint), get_args(hint)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        present = [a for a in args if a is not type(None)]
        if len(present) == 1:
            return _value(where, present[0], value, unknown)
        for option in present:  # e.g. str | int: the first that takes the value
            try:
                return _value(where, option, value, unknown)
            except Invalid:
                continue
        raise Invalid(f'"{where}" must be {" or ".join(_describe(a) for a in present)}')
    if hint is Any:
        return value
    if origin is list:
        if not isinstance(value, list):
            raise Invalid(f'"{where}" must be a list')
        return [_value(f"{where}[{i}]", args[0], v, unknown) for i, v in enumerate(value)] if args else value
    if origin is dict or hint is dict:
        if not isinstance(value, dict):
            raise Invalid(f'"{where}" must be an object')
        if len(args) == 2 and args[1] is not Any:
            return {k: _value(f"{where}.{k}", args[1], v, unknown) for k, v in value.items()}
        return value
    if isinstance(hint, type) and is_dataclass(hint):
        if not isinstance(value, Mapping):
            raise Invalid(f'"{where}" must be an object')
        return _object(f"{where}.", hint, value, unknown)
    if hint is IPv4Address:
        try:
            return IPv4Address(value) if isinstance(value, str) else _wrong(where, hint, value)
        except AddressValueError:
            raise Invalid(f'"{where}": {value!r} is not an IPv4 address') from None
    if hint is bool:
        return value if isinstance(value, bool) else _wrong(where, hint, value)
    if hint is int:
        return value if isinstance(value, int) and not isinstance(value, bool) else _wrong(where, hint, value)
    if hint is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        return float(value) if ok else _wrong(where, hint, value)
    if hint is str:
        return value if isinstance(value, str) else _wrong(where, hint, value)
    raise TypeError(f"{where}: no body rule for {hint!r}")  # a declaration error, not the client's


def _describe(hint: Any) -> str:
    origin = get_origin(hint)
    if origin is list:
        return "a list"
    if origin is dict or hint is dict or is_dataclass(hint):
        return "an object"
    return _NAMES.get(hint, str(hint))


def _wrong(where: str, hint: Any, value: Any) -> Any:
    got = _JSON_TYPES.get(type(value), type(value).__name__)
    raise Invalid(f'"{where}" must be {_describe(hint)}, not {got}')
