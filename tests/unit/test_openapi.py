"""Every route the HTTP server mounts is in the OpenAPI document, and the document names nothing else."""

from __future__ import annotations

from pathlib import Path

from appliance.daemon.wiring import api_route_modules
from services.api_context import ApiContext
from services.http import HttpServer
from services.openapi import OPENAPI
from state.store import Store


async def test_mounted_routes_and_openapi_paths_are_the_same(tmp_path: Path) -> None:
    store = Store(tmp_path)
    try:
        server = HttpServer(boot_root=tmp_path / "boot", api=ApiContext(store=store, admin_token="t"),
                            route_modules=api_route_modules())
        app = server.build_app()
        mounted = {(r.resource.canonical, r.method.lower()) for r in app.router.routes()
                   if r.resource is not None and r.method != "HEAD"}
    finally:
        await store.close()
    documented = {(path, method) for path, ops in OPENAPI["paths"].items() for method in ops}
    assert mounted - documented == set(), "mounted but not documented in services/openapi.py"
    assert documented - mounted == set(), "documented in services/openapi.py but not mounted"
    assert ("/api/v1/status", "get") in mounted


def test_every_operation_has_a_summary_and_responses() -> None:
    assert OPENAPI["openapi"].startswith("3.")
    for path, ops in OPENAPI["paths"].items():
        for method, op in ops.items():
            assert op.get("summary"), f"{method.upper()} {path} has no summary"
            assert op.get("responses"), f"{method.upper()} {path} has no responses"
            if method != "get" and path.startswith("/install/"):  # installers use their per-install token
                assert op.get("security") == [{"install": []}], f"{method.upper()} {path} must name its token"
            elif method != "get" and path.endswith(("/update-events", "/autoinstall")):  # updateclient
                assert op.get("security") == [{"install": []}, {"admin": []}], f"{method.upper()} {path}"
            elif path.startswith("/satellite/"):  # satellites use their own token, GET included
                assert op.get("security") == [{"satellite": []}], f"{method.upper()} {path} must name its token"
            elif method != "get":
                assert op.get("security") == [{"admin": []}], f"{method.upper()} {path} must say it needs the token"
