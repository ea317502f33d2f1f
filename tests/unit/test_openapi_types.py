"""The OpenAPI schemas of the converted routes are generated from the domain's dataclasses; the JSON those
dataclasses render has exactly the declared fields, with the declared JSON types, so document and
responses cannot drift apart."""

from __future__ import annotations

import time
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

from domain import hosts
from domain.metrics import PoolUsage
from domain.paging import Page
from domain.sources import Sources
from services.openapi import OPENAPI
from services.openapi_schema import SCHEMAS
from state.db import connect

_JSON_TYPES = {"string": str, "integer": int, "number": (int, float), "boolean": bool, "object": dict,
               "array": list}


def conforms(value: dict[str, Any], name: str) -> None:
    schema = SCHEMAS[name]
    assert set(value) <= set(schema["properties"]), f"{name}: undeclared {set(value) - set(schema['properties'])}"
    assert set(schema.get("required", ())) <= set(value), f"{name}: missing {set(schema['required']) - set(value)}"
    for key, item in value.items():
        prop = schema["properties"][key]
        if item is None:
            assert prop.get("nullable"), f"{name}.{key} is null but not nullable"
        elif "$ref" in prop:
            conforms(item, prop["$ref"].rsplit("/", 1)[1])
        elif prop.get("type"):
            assert isinstance(item, _JSON_TYPES[prop["type"]]), f"{name}.{key}: {item!r} is no {prop['type']}"
            if prop["type"] == "array" and "$ref" in prop["items"]:
                for element in item:
                    conforms(element, prop["items"]["$ref"].rsplit("/", 1)[1])


def test_every_generated_reference_resolves() -> None:
    text = repr(OPENAPI)
    for name in SCHEMAS:
        assert name in OPENAPI["components"]["schemas"]
    assert "#/components/schemas/HostView" in text and "#/components/schemas/AddHost" in text


def test_host_views_and_pages_render_what_the_schema_declares(tmp_path: Path) -> None:
    conn = connect(tmp_path / "s.db")
    now = time.time()
    src = Sources(conn)
    for name, mac, ip in (("n1", "52:54:00:00:00:01", IPv4Address("10.0.0.5")), ("n2", "52:54:00:00:00:02", None)):
        req = hosts.AddHost.from_json({"name": name, "mac": mac, "image": "demo", "ip": str(ip) if ip else None})
        conforms({k: v for k, v in req.as_json().items() if v is not None}, "AddHost")
        hosts.add_host_op(src, req, now)(conn)
    conforms(hosts.list_hosts(src, Page(1), now).as_json(), "HostPage")
    conforms(hosts.show_host(src, "n1", now).as_json(), "HostView")
    conforms(PoolUsage("10.0.0.0/24", 100, 3, 1, 0).as_json(), "PoolUsage")
