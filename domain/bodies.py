"""Request bodies parsed into their dataclasses (domain/requests.py and AddHost) by msgspec, the same types the
OpenAPI schemas are generated from, so the document and the handler cannot disagree on a body's shape.

`parse_body` checks the JSON object against the fields' type hints (msgspec.convert): a missing required
key, a value of the wrong type or (where the body is an operator's) an unknown key is refused as `Invalid`,
naming the key path (`"events[0].time" is required`); msgspec's own wording is rephrased for people here.
What a value means (a MAC's spelling, a name's rule, a stage) stays the use case's check: this is the shape
only. Bodies that machines send (installers, updateclient, satellites) ignore unknown keys, so an older
server takes a newer client's reports.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import fields, is_dataclass
from ipaddress import AddressValueError, IPv4Address
from typing import Any, Literal, TypeVar, get_args, get_type_hints

import msgspec

from domain.errors import Invalid

T = TypeVar("T")

# msgspec's names of JSON types, as a person reads them: what was expected, and what came.
_EXPECTED = {"str": "a string", "int": "an integer", "float": "a number", "bool": "true or false",
             "array": "a list", "object": "an object", "IPv4Address": "an IPv4 address"}
_GOT = {"str": "a string", "int": "a number", "float": "a number", "bool": "a boolean", "array": "a list",
        "object": "an object", "null": "null"}
_AT = re.compile(r"^(?P<what>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.S)
_MISSING = re.compile(r"^Object missing required field `(?P<key>[^`]+)`$")
_WRONG = re.compile(r"^Expected `(?P<expected>[^`]+)`, got `(?P<got>[^`]+)`$")


def parse_body(cls: type[T], body: Any, *, unknown: Literal["refuse", "ignore"] = "refuse") -> T:
    """`body` (parsed JSON) as a `cls`; Invalid names the first key that does not fit."""
    if not isinstance(body, Mapping):
        raise Invalid("the body must be a JSON object")
    if unknown == "refuse":
        _refuse_unknown("", cls, body)
    try:
        return msgspec.convert(body, cls, dec_hook=_decode)
    except msgspec.ValidationError as e:
        raise Invalid(_reworded(str(e))) from None


def _decode(kind: type, value: Any) -> Any:
    """The types msgspec leaves to us: an IPv4 address from its dotted string."""
    if kind is IPv4Address:
        if not isinstance(value, str):
            raise TypeError(f"Expected `IPv4Address`, got `{type(value).__name__}`")
        try:
            return IPv4Address(value)
        except AddressValueError:
            raise ValueError(f"{value!r} is not an IPv4 address") from None
    raise NotImplementedError(kind)


def _reworded(message: str) -> str:
    found = _AT.match(message)
    assert found is not None  # the pattern matches any text
    what, path = found["what"], _key_path(found["path"] or "")
    if missing := _MISSING.match(what):
        return f'"{path + "." if path else ""}{missing["key"]}" is required'
    if wrong := _WRONG.match(what):
        expected = [t for t in wrong["expected"].split(" | ") if t != "null"]
        said = " or ".join(_EXPECTED.get(t, t) for t in expected)
        return f'"{path}" must be {said}, not {_GOT.get(wrong["got"], wrong["got"])}'
    return f'"{path}": {what}' if path else what


def _key_path(path: str) -> str:
    """msgspec's `$.events[0].time` as `events[0].time`."""
    return path[1:] if path.startswith(".") else path


def _refuse_unknown(prefix: str, hint: Any, value: Any) -> None:
    """An operator's typo is refused by name (msgspec ignores keys a dataclass does not declare)."""
    if isinstance(hint, type) and is_dataclass(hint):
        if not isinstance(value, Mapping):
            return  # msgspec says what is wrong with it
        names = [f.name for f in fields(hint)]
        extra = sorted(k for k in value if k not in names)
        if extra:
            raise Invalid(f'"{prefix}{extra[0]}" is an unknown field (accepted: {", ".join(names)})')
        hints = get_type_hints(hint)
        for name in names:
            if name in value:
                _refuse_unknown(f"{prefix}{name}.", hints[name], value[name])
        return
    for arg in get_args(hint):  # lists, dicts and unions of dataclasses
        if isinstance(value, list):
            for i, item in enumerate(value):
                _refuse_unknown(f"{prefix[:-1]}[{i}].", arg, item)
        else:
            _refuse_unknown(prefix, arg, value)
