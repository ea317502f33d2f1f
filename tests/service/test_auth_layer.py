"""One auth layer: every credential kind a route declares is checked by services/auth before its handler runs,
and every refusal has one shape (a JSON {"error"} 401 with the kind's WWW-Authenticate challenge)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from ipaddress import IPv4Address
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from appliance.daemon.wiring import api_route_modules
from domain.hosts import new_host_op
from services.api_context import ApiContext
from services.http import HttpServer
from state import satellites
from state.credentials import update_token
from state.store import Store

ADMIN = "admin-secret"
NOW = 1_800_000_000.0


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[tuple[TestClient, Store, str]]:
    store = Store(tmp_path)
    # n1 is the test client's machine (its update token is good only from its own address).
    await store.journal.run(lambda conn: new_host_op("n1", "52:54:00:00:00:01", "web",
                                                              IPv4Address("127.0.0.1"), NOW)(conn))
    await store.journal.run(satellites.ensure_table)
    token = await store.journal.run(satellites.add_op("rack2", NOW))
    server = HttpServer(boot_root=tmp_path / "boot", api=ApiContext(store=store, admin_token=ADMIN, clock=lambda: NOW),
                        route_modules=api_route_modules())
    client = TestClient(TestServer(server.build_app()))
    await client.start_server()
    try:
        yield client, store, token
    finally:
        await client.close()
        await store.close()


async def refused(client: TestClient, method: str, path: str, bearer: str | None, realm: str) -> str:
    headers = {"Authorization": f"Bearer {bearer}"} if bearer else {}
    resp = await client.request(method, path, headers=headers, json={})
    assert resp.status == 401, (method, path, await resp.text())
    assert resp.headers["WWW-Authenticate"] == f'Bearer realm="{realm}"'
    body = await resp.json()
    assert list(body) == ["error"]
    return str(body["error"])


async def test_each_credential_kind_is_checked_before_the_handler_in_one_shape(
        env: tuple[TestClient, Store, str]) -> None:
    client, store, satellite_token = env
    for bearer in (None, "wrong", satellite_token):  # admin routes: nothing else opens them
        assert "admin token" in await refused(client, "POST", "/api/v1/reload", bearer, "imageserver")
        assert "admin token" in await refused(client, "DELETE", "/api/v1/hosts/n1", bearer, "imageserver")
    for bearer in (None, "wrong", ADMIN):  # satellite routes: only a satellite's token
        assert "satellite token" in await refused(client, "GET", "/satellite/v1/config", bearer,
                                                  "imageserver-satellite")
    row = store.read_one("SELECT install_token FROM hosts WHERE name = 'n1'", ())
    assert row is not None
    for bearer in (None, "wrong", row[0], satellite_token):  # update routes: never the install token
        assert "updates of n1" in await refused(client, "POST", "/api/v1/hosts/n1/autoinstall", bearer,
                                                "imageserver-update")
    resp = await client.post("/api/v1/hosts/nobody/update-events", json={"stage": "start"})
    assert resp.status == 404 and "nobody" in (await resp.json())["error"]
    # The right credential opens each kind.
    ok = await client.get("/satellite/v1/config", headers={"Authorization": f"Bearer {satellite_token}"})
    assert ok.status == 200
    ok = await client.post("/api/v1/hosts/n1/update-events", json={"stage": "start"},
                           headers={"Authorization": f"Bearer {update_token(row[0])}"})
    assert ok.status == 200, await ok.text()
    ok = await client.post("/api/v1/reload", headers={"Authorization": f"Bearer {ADMIN}"})
    assert ok.status == 202


def test_the_bearer_header_is_read_in_one_place() -> None:
    services = Path(__file__).resolve().parents[2] / "services"
    readers = sorted(p.name for p in services.glob("*.py") if "Authorization" in p.read_text())
    assert readers == ["auth.py"]
    assert not any("require_token" in p.read_text() or "own_auth" in p.read_text() for p in services.glob("*.py"))
