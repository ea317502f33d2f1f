"""The routes the HTTP server mounts and the paths of the OpenAPI document it serves come from the same
declarations (services/routes.Route), so they are the same set; and every operation says what it needs."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from openapi_core import OpenAPI

from appliance.daemon.wiring import api_route_modules
from services.api_context import ApiContext
from services.auth import Auth
from services.http import HttpServer
from services.openapi import document
from services.routes import MOUNTED, Route, error
from state.store import Store


async def _app(tmp_path: Path) -> tuple[set[tuple[str, str]], dict[str, Any]]:
    store = Store(tmp_path)
    try:
        server = HttpServer(boot_root=tmp_path / "boot", api=ApiContext(store=store, admin_token="t"),
                            route_modules=api_route_modules())
        app = server.build_app()
        every = {(r.resource.canonical, r.method.lower()) for r in app.router.routes() if r.resource is not None}
        # A GET route answers HEAD too (boot files: a client asks the size before a ranged GET).
        assert {p for p, m in every if m == "head"} == {p for p, m in every if m == "get"}
        client = TestClient(TestServer(app))
        await client.start_server()
        try:
            # The document the server serves (to a reader: the admin token is one).
            served = await (await client.get("/api/v1/openapi.json", headers={"Authorization": "Bearer t"})).json()
        finally:
            await client.close()
        assert served == document(app[MOUNTED].routes)
        return {(p, m) for p, m in every if m != "head"}, served
    finally:
        await store.close()


async def test_mounted_routes_and_openapi_paths_are_the_same(tmp_path: Path) -> None:
    mounted, doc = await _app(tmp_path)
    documented = {(path, method) for path, ops in doc["paths"].items() for method in ops}
    # aiohttp spells a path parameter with a pattern as {path:.+}, OpenAPI as {path}
    mounted = {(path.replace(":.+}", "}"), method) for path, method in mounted}
    assert mounted == documented
    assert ("/api/v1/status", "get") in mounted and ("/boot/{mac}.ipxe", "get") in mounted
    assert len(mounted) >= 40


async def test_every_operation_has_a_summary_responses_and_its_credential(tmp_path: Path) -> None:
    _, doc = await _app(tmp_path)
    assert doc["openapi"].startswith("3.")
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            assert op.get("summary"), f"{method.upper()} {path} has no summary"
            assert op.get("responses"), f"{method.upper()} {path} has no responses"
            if method != "get" and path.startswith(("/install/", "/inspect/")):  # installers: per-machine credential
                assert op.get("security") == [{"install": []}], f"{method.upper()} {path} must name its token"
            elif method != "get" and path.endswith(("/update-events", "/autoinstall")):  # updateclient
                assert op.get("security") == [{"install": []}, {"admin": []}], f"{method.upper()} {path}"
            elif path.startswith("/satellite/"):  # satellites use their own token, GET included
                assert op.get("security") == [{"satellite": []}], f"{method.upper()} {path} must name its token"
            elif method != "get":
                assert op.get("security") == [{"admin": []}], f"{method.upper()} {path} must say it needs the token"
            if op.get("security"):
                assert "401" in op["responses"], f"{method.upper()} {path} documents no 401"
            for name in {p["name"] for p in op.get("parameters", []) if p["in"] == "path"}:
                assert "{" + name + "}" in path


async def test_every_schema_reference_resolves_and_the_document_is_valid_openapi(tmp_path: Path) -> None:
    _, doc = await _app(tmp_path)
    OpenAPI.from_dict(doc)  # openapi-core validates the document against the OpenAPI 3.0 specification
    text = repr(doc)
    for ref in set(re.findall(r"#/components/schemas/(\w+)", text)):
        assert ref in doc["components"]["schemas"], f"{ref} is referenced but not generated"


def test_a_route_that_changes_things_cannot_be_declared_open() -> None:
    async def handler(call: object) -> None:
        return None

    with pytest.raises(ValueError, match="needs a credential"):
        Route("POST", "/api/v1/x", handler, "x", {200: error("x")})
    assert Route("POST", "/api/v1/x", handler, "x", {200: error("x")}, auth=Auth.ADMIN).status == 200
