"""JSON request bodies: size cap and nesting depth checked before json.loads (which recurses per level)."""

from __future__ import annotations

import json

import pytest

from services.jsonbody import BodyError, nesting_depth, parse_json


def test_deeply_nested_is_refused_without_recursion():
    with pytest.raises(BodyError, match="nested deeper than 32"):
        parse_json(b"[" * 100_000)
    with pytest.raises(BodyError, match="nested deeper"):
        parse_json(b'{"a":' * 40 + b"1" + b"}" * 40)


def test_nesting_up_to_the_limit_parses():
    assert parse_json(b"[" * 32 + b"]" * 32) == json.loads("[" * 32 + "]" * 32)


def test_brackets_inside_strings_are_no_nesting():
    raw = json.dumps({"s": "[" * 1000 + '\\"{' * 100}).encode()
    assert nesting_depth(raw, 32) == 1
    assert parse_json(raw)["s"].startswith("[[[")


def test_oversize_and_invalid():
    with pytest.raises(BodyError, match="larger than 10 bytes"):
        parse_json(b'{"a": "0123456789"}', max_bytes=10)
    for raw in (b"", b"{", b"\xff\xfe", b"[1,]"):
        with pytest.raises(BodyError, match="not valid JSON"):
            parse_json(raw)
