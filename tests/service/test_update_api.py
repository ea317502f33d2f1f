"""updateclient's API through the real HTTP server: which version a host syncs to, who may report, and
what an autoinstall request hands back. A real store (SQLite) underneath; aiohttp's test client."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from ipaddress import IPv4Address
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from domain.hosts import new_host_op
from domain.installs import InstallSettings
from services import api_update
from services.api_context import ApiContext, Live
from services.http import HttpServer
from state.credentials import update_token
from state.images import ImageVersion, insert_version
from state.store import Store

ADMIN = "admin-secret"
NOW = 1_800_000_000.0


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[tuple[TestClient, Store]]:
    store = Store(tmp_path)

    def seed(conn: sqlite3.Connection) -> None:
        for name, version in (("web", 1), ("web", 2), ("web", 3), ("db", 1)):
            insert_version(conn, ImageVersion(name, version, str(tmp_path / name / f"v{version}"), NOW))
        # follows is the test client's own machine: its update token is good only from its address.
        new_host_op("follows", "52:54:00:00:00:01", "web", IPv4Address("127.0.0.1"), NOW)(conn)
        new_host_op("pinned", "52:54:00:00:00:02", "web", None, NOW, 1)(conn)
        new_host_op("bare", "52:54:00:00:00:03", None, None, NOW)(conn)

    await store.journal.run(seed)
    api = ApiContext(store=store, admin_token=ADMIN, clock=lambda: NOW,
                     live=Live(install=InstallSettings(address="10.0.0.1", rsync_port=8873)))
    server = HttpServer(boot_root=tmp_path / "boot", api=api, route_modules=[api_update.ROUTES])
    client = TestClient(TestServer(server.build_app()))
    await client.start_server()
    try:
        yield client, store
    finally:
        await client.close()
        await store.close()


def token_of(store: Store, host: str) -> str:
    row = store.read_one("SELECT install_token FROM hosts WHERE name = ?", (host,))
    assert row is not None and row[0]
    return str(row[0])


def update_of(store: Store, host: str) -> str:
    """The host's update token (what its autoinstall script wrote into updateclient.conf)."""
    return update_token(token_of(store, host))


async def target(client: TestClient, host: str, query: str = "") -> tuple[int, dict]:
    resp = await client.get(f"/api/v1/hosts/{host}/update-target{query}")
    return resp.status, await resp.json()


async def test_target_is_the_assignment_or_the_version_asked_for(env) -> None:
    client, _ = env
    status, body = await target(client, "follows")
    assert status == 200 and body == {"host": "follows", "image": "web", "version": 3, "module": "web_v3",
                                      "assigned": True, "rsync_port": 8873, "rsync_host": "10.0.0.1"}
    assert (await target(client, "pinned"))[1]["version"] == 1  # pinned hosts stay where they are
    status, body = await target(client, "follows", "?version=1")  # rollback
    assert status == 200 and body["module"] == "web_v1" and body["assigned"] is False
    status, body = await target(client, "pinned", "?version=3")  # roll forward
    assert body["module"] == "web_v3" and body["assigned"] is False
    status, body = await target(client, "follows", "?image=db")  # another image: its newest
    assert body["module"] == "db_v1"
    status, body = await target(client, "follows", "?version=9")
    assert status == 409 and "no version 9" in body["error"] and "v1, v2, v3" in body["error"]
    assert (await target(client, "follows", "?image=nope"))[0] == 409
    status, body = await target(client, "follows", "?image=../etc")  # malformed: 400 naming the key
    assert status == 400 and body["error"].startswith('"image": '), body
    for bad in ("-1", "x", "v"):  # a malformed version is the request's fault: 400 naming the key
        status, body = await target(client, "follows", f"?version={bad}")
        assert status == 400 and body["error"] == f'"version" must be a positive integer (N or vN), not {bad!r}'
    assert (await target(client, "bare"))[0] == 409  # no image assigned and none named
    assert (await target(client, "bare", "?image=web&version=2"))[1]["module"] == "web_v2"
    assert (await target(client, "ghost"))[0] == 404


async def test_reports_need_the_hosts_token_or_the_admin_token_and_done_records_the_version(env) -> None:
    client, store = env
    url = "/api/v1/hosts/follows/update-events"
    body = {"stage": "done", "image": "web", "version": 2, "detail": "3 files"}
    assert (await client.post(url, json=body)).status == 401
    assert (await client.post(url, json=body, headers={"Authorization": "Bearer nope"})).status == 401
    # Another host's token is not this host's.
    other = {"Authorization": f"Bearer {update_of(store, 'pinned')}"}
    assert (await client.post(url, json=body, headers=other)).status == 401
    # The install token is the installer's, not the installed system's.
    install = {"Authorization": f"Bearer {token_of(store, 'follows')}"}
    assert (await client.post(url, json=body, headers=install)).status == 401
    assert store.read_one("SELECT count(*) FROM update_events")[0] == 0
    # pinned's own token, but this client is not pinned's machine (it has no known address): 403.
    resp = await client.post("/api/v1/hosts/pinned/update-events", json=body, headers=other)
    assert resp.status == 403 and "own address" in (await resp.json())["error"]
    assert store.read_one("SELECT count(*) FROM update_events")[0] == 0

    mine = {"Authorization": f"Bearer {update_of(store, 'follows')}"}
    resp = await client.post(url, json={"stage": "start", "image": "web", "version": 2}, headers=mine)
    assert resp.status == 200
    resp = await client.post(url, json=body, headers=mine)
    assert resp.status == 200 and (await resp.json())["running_version"] == 2
    row = store.read_one("SELECT running_version, last_update FROM hosts WHERE name = 'follows'")
    assert tuple(row) == (2, NOW)
    resp = await client.post(url, json={**body, "version": 1}, headers={"Authorization": f"Bearer {ADMIN}"})
    assert resp.status == 200
    assert store.read_one("SELECT running_version FROM hosts WHERE name = 'follows'")[0] == 1
    stages = [r[0] for r in store.read("SELECT stage FROM update_events WHERE host = 'follows' ORDER BY id")]
    assert stages == ["start", "done", "done"]

    for bad in ({"stage": "finished"}, {"stage": "autoinstall"}, {"stage": "done", "version": "two"},
                {"stage": "done", "image": "a b"}, {"stage": "done", "detail": 5}):
        assert (await client.post(url, json=bad, headers=mine)).status == 400, bad
    assert (await client.post("/api/v1/hosts/ghost/update-events", json=body, headers=mine)).status == 404


async def test_autoinstall_gives_the_installer_a_fresh_token_and_the_old_one_stops_working(env) -> None:
    client, store = env
    install_token = token_of(store, "follows")
    old = update_of(store, "follows")
    await store.journal.run(lambda c: c.execute("UPDATE hosts SET state = 'installed' WHERE name = 'follows'"))
    assert (await client.post("/api/v1/hosts/follows/autoinstall")).status == 401
    resp = await client.post("/api/v1/hosts/follows/autoinstall",
                             headers={"Authorization": f"Bearer {install_token}"})
    assert resp.status == 401, "an install token cannot ask for a reinstall"
    resp = await client.post("/api/v1/hosts/follows/autoinstall", headers={"Authorization": f"Bearer {old}"})
    assert resp.status == 200
    body = await resp.json()
    new = token_of(store, "follows")
    assert new != install_token
    assert store.read_one("SELECT state FROM hosts WHERE name = 'follows'")[0] == "assigned"
    assert body["kernel"].endswith("/boot/files/installer/vmlinuz")
    assert body["initrd"].endswith("/boot/files/installer/initrd.img")
    args = dict(w.split("=", 1) for w in body["cmdline"].split() if "=" in w)
    assert args["INSTALL_TOKEN"] == new and args["HOSTNAME"] == "follows" and args["IMAGE"] == "web"
    assert args["VERSION"] == "3" and args["MAC"] == "52:54:00:00:00:01" and args["IMAGESERVER"] == "10.0.0.1"
    # The system asked to be reinstalled: its old token reports nothing any more.
    resp = await client.post("/api/v1/hosts/follows/update-events", json={"stage": "start"},
                             headers={"Authorization": f"Bearer {old}"})
    assert resp.status == 401
    resp = await client.post("/api/v1/hosts/bare/autoinstall", headers={"Authorization": f"Bearer {ADMIN}"})
    assert resp.status == 409  # nothing to install
