"""Reading a TOML document into msgspec Structs: value types check themselves, msgspec checks the rest,
and every error is said in our words with the dotted key it is about (``dhcp.subnets[1].router: ...``).

Field constraints come from the types: msgspec.Meta ranges (`extra={"unit": "seconds" | "share"}` says
how to speak of the number), Literal choices, and value types with a `from_config` classmethod
(domain/config_values.py) or from the standard library (IPv4Address, IPv4Network, Path).
"""

from __future__ import annotations

import re
import typing
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any, TypeVar

import msgspec
import msgspec.inspect as mi

T = TypeVar("T")


class ConfigError(ValueError):
    """A configuration problem; str() is 'key.path: what is wrong'."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"{key}: {problem}" if key else problem)
        self.key = key
        self.problem = problem


def read(data: dict[str, Any], doc: type[T]) -> T:
    """`data` (a parsed TOML document) as a `doc`; raises ConfigError naming the first bad key."""
    try:
        return msgspec.convert(_shorthands(data, mi.type_info(doc)), doc, strict=True, dec_hook=_dec_hook)
    except msgspec.ValidationError as e:
        raise _error(e, data, mi.type_info(doc)) from None


def _dec_hook(t: type, v: Any) -> Any:
    """The non-msgspec value types: the standard library's, and ours (which have `from_config`)."""
    from_config = getattr(t, "from_config", None)
    if from_config is not None:
        return from_config(v)
    if not isinstance(v, str):
        raise TypeError(f"expected a string, got {v!r}")
    if t is IPv4Address:
        try:
            return IPv4Address(v)
        except ValueError:
            raise ValueError(f"{v!r} is not an IPv4 address") from None
    if t is IPv4Network:
        try:
            return IPv4Network(v, strict=True)
        except ValueError as e:
            raise ValueError(f"{v!r} is not an IPv4 network in CIDR form ({e})") from None
    if t is Path:
        if not v:
            raise ValueError("must not be empty")
        return Path(v)
    raise NotImplementedError(t)


_AT = re.compile(r"^(?P<what>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.S)
_STEP = re.compile(r"\.(\w+)|\[(\d+)\]")
_UNKNOWN = re.compile(r"Object contains unknown field `(\w+)`")
_MISSING = re.compile(r"Object missing required field `(\w+)`")
_TYPES = {"int": "an integer", "float": "a number", "bool": "true or false", "str": "a string",
          "array": "a list", "object": "a table"}


def _key(steps: list[str | int]) -> str:
    out = ""
    for s in steps:
        out += f"[{s}]" if isinstance(s, int) else (f".{s}" if out else s)
    return out


def _walk(data: Any, info: Any, steps: list[str | int]) -> tuple[Any, Any, Any]:
    """The value, the msgspec type info and the type's annotation at a path (None where the path leaves
    them; the annotation only where the path ends at a field)."""
    annotation = None
    for step in steps:
        data = data[step] if isinstance(data, dict | list) and _has(data, step) else None
        parent = _plain(_unwrap(info))
        annotation = (typing.get_type_hints(parent.cls).get(step) if isinstance(parent, mi.StructType)
                      and isinstance(step, str) else None)
        info = _step_type(info, step)
    return data, _unwrap(info), annotation


def _plain(info: Any) -> Any:
    return info.type if isinstance(info, _Unit) else info


def _has(data: dict[str, Any] | list[Any], step: str | int) -> bool:
    return step in data if isinstance(data, dict) else isinstance(step, int) and step < len(data)


def _unwrap(info: Any) -> Any:
    while True:
        if isinstance(info, mi.Metadata):
            info = info.type if not info.extra else _Unit(info.type, info.extra.get("unit"))
            if isinstance(info, _Unit):
                return info
        elif isinstance(info, mi.UnionType):
            kinds = [t for t in info.types if not isinstance(t, mi.NoneType)]
            if len(kinds) != 1:
                return info
            info = kinds[0]
        else:
            return info


class _Unit:
    def __init__(self, type: Any, unit: str | None) -> None:
        self.type, self.unit = type, unit


def _step_type(info: Any, step: str | int) -> Any:
    info = _plain(_unwrap(info))
    if isinstance(info, mi.StructType) and isinstance(step, str):
        return next((f.type for f in info.fields if f.name == step), None)
    if isinstance(info, mi.VarTupleType | mi.ListType) and isinstance(step, int):
        return info.item_type
    return None


def _bound(x: float) -> str:
    return str(x) if isinstance(x, int) else f"{x:g}"


def _problem(what: str, value: Any, info: Any, annotation: Any, key: str) -> str:
    """msgspec's message about `value` (of the type `info`, written `annotation`) in our words."""
    unit = info.unit if isinstance(info, _Unit) else None
    t = _plain(info)
    if what.startswith("Expected `array`") and isinstance(t, mi.VarTupleType) and isinstance(
            _unwrap(t.item_type), mi.StructType):
        return f"expected an array of tables ([[{key}]])"
    if unit == "share" and what.startswith("Expected"):
        return f"expected a share from 0 to 1 (0.1 is 10 %), got {value!r}"
    if m := re.match(r"Expected `(\w+)(?: \| null)?`, got `\w+`", what):
        expected = "a number of seconds" if unit == "seconds" else _TYPES.get(m.group(1), m.group(1))
        return f"expected {expected}, got {value!r}"
    if re.match(r"Expected `\w+` [<>]", what) and isinstance(t, mi.IntType | mi.FloatType):
        lo, hi = (t.ge if t.ge is not None else t.gt), (t.le if t.le is not None else t.lt)
        if lo is None or hi is None:
            return f"expected a positive number, got {value!r}" if t.gt == 0 else f"{value!r}: {what}"
        return f"{value} is out of range ({_bound(lo)}..{_bound(hi)}{' ' + unit if unit else ''})"
    if what.startswith("Invalid enum value") and isinstance(t, mi.LiteralType):
        # In the order the field declares them (msgspec's type info sorts them).
        choices = typing.get_args(annotation) if typing.get_origin(annotation) is typing.Literal else t.values
        return f"{value!r} is not one of {', '.join(repr(c) for c in choices)}"
    return what


def _error(e: msgspec.ValidationError, data: dict[str, Any], doc: Any) -> ConfigError:
    m = _AT.match(str(e))
    assert m is not None
    what, path = m.group("what"), m.group("path") or ""
    steps: list[str | int] = [a if a else int(i) for a, i in _STEP.findall(path)]
    if u := _UNKNOWN.fullmatch(what):
        return ConfigError(_key([*steps, u.group(1)]),
                           "unknown key (check the spelling; see the annotated example: imageserver init writes one)")
    if u := _MISSING.fullmatch(what):
        return ConfigError(_key([*steps, u.group(1)]), "is required")
    value, info, annotation = _walk(data, doc, steps)
    return ConfigError(_key(steps), _problem(what, value, info, annotation, _key(steps)))


def _shorthands(data: Any, info: Any) -> Any:
    """What the file may write short: one value for a list of one (dns = "10.0.0.1"), and an empty string
    for "not set" where the value type says so (interface = "")."""
    if isinstance(info, mi.StructType) and isinstance(data, dict):
        types = {f.name: f.type for f in info.fields}
        out = {}
        for k, v in data.items():
            t = types.get(k)
            if v == "" and _empty_is_none(t):
                continue
            out[k] = _shorthands(v, _unwrap(t)) if t is not None else v
        return out
    if isinstance(info, mi.VarTupleType):
        item = _unwrap(info.item_type)
        if isinstance(data, str) and isinstance(item, mi.CustomType):
            return [data]
        if isinstance(data, list):
            return [_shorthands(v, item) for v in data]
    return data


def _empty_is_none(info: Any) -> bool:
    return (isinstance(info, mi.UnionType) and any(isinstance(t, mi.NoneType) for t in info.types)
            and any(getattr(getattr(t, "cls", None), "EMPTY_IS_NONE", False) for t in info.types))
