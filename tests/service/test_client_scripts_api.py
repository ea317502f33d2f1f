"""GET /client/prepareclient serves the packaged script byte for byte; nothing else is reachable."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from services import api_client_scripts
from services.api_context import API, ApiContext, Live
from services.live import ClientScripts
from services.routes import mount

DATA = Path(str(files("appliance") / "data"))


async def client_for(scripts: ClientScripts | None) -> TestClient:
    ctx = ApiContext(store=None, admin_token="t", live=Live(client_scripts=scripts))  # type: ignore[arg-type]  # no store needed
    app = web.Application()
    app[API] = ctx
    app.add_routes(mount(api_client_scripts.ROUTES))
    client = TestClient(TestServer(app))
    await client.start_server()
    return client


async def test_prepareclient_is_served_as_packaged() -> None:
    client = await client_for(ClientScripts(DATA))
    try:
        resp = await client.get("/client/prepareclient")
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/x-shellscript")
        assert await resp.read() == (DATA / "prepareclient").read_bytes()
        for bad in ("/client/..%2Fconfig.py", "/client/prepareclient.bak", "/client/__init__.py"):
            resp = await client.get(bad)
            assert resp.status == 404, bad
    finally:
        await client.close()


async def test_without_a_directory_it_says_so() -> None:
    client = await client_for(None)
    try:
        resp = await client.get("/client/prepareclient")
        assert resp.status == 404
        assert "no client scripts" in (await resp.json())["error"]
    finally:
        await client.close()
