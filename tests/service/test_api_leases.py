"""The leases API on loopback through the real HTTP server: it acts on the live lease book, refuses
with reasons, needs the admin token to change anything, and answers only once a change is committed."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from services.api_context import ApiContext, Live
from services.api_leases import ROUTES
from services.http import HttpServer
from state.db import connect
from state.lease_pools import PoolSpec
from state.lease_rows import journal_writer
from state.leases import LeaseModel
from state.store import Store

ADMIN = "leases-admin-token"
NET = IPv4Network("10.78.0.0/24")
POOL = PoolSpec(NET, IPv4Address("10.78.0.100"), IPv4Address("10.78.0.200"), 600)


@dataclass
class Api:
    base: str
    store: Store
    leases: LeaseModel
    http: aiohttp.ClientSession

    async def call(self, method: str, path: str, body: Any = None, token: str | None = ADMIN) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with self.http.request(method, self.base + path, json=body, headers=headers) as r:
            return r.status, await r.json()

    def committed(self, sql: str) -> list[tuple]:
        """What another connection sees: only committed rows."""
        conn = connect(self.store.path)
        try:
            return [tuple(r) for r in conn.execute(sql)]
        finally:
            conn.close()


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    store = Store(tmp_path)
    leases = LeaseModel.load(store.reader, [POOL], journal_writer(store.journal.submit), now=time.time(),
                             excluded=[IPv4Address("10.78.0.1")])
    ctx = ApiContext(store=store, admin_token=ADMIN, live=Live(leases=leases))
    server = HttpServer(host="127.0.0.1", port=0, boot_root=tmp_path / "boot", api=ctx, route_modules=[ROUTES])
    await server.start()
    try:
        async with aiohttp.ClientSession() as http:
            yield Api(f"http://127.0.0.1:{server.port}", store, leases, http)
    finally:
        await server.stop()
        await store.close()


async def test_leases_are_listed_live_and_ended_ones_on_request(api: Api) -> None:
    now = time.time()
    for n, mac in enumerate(("52:54:00:00:00:01", "52:54:00:00:00:02")):
        ip = api.leases.offer(mac, POOL, None, now)
        api.leases.commit(mac, ip, POOL, now, None, f"node{n}")
    api.leases.release("52:54:00:00:00:02", IPv4Address("10.78.0.101"), now)
    status, body = await api.call("GET", "/api/v1/leases")
    assert status == 200
    assert [(x["mac"], x["ip"], x["hostname"], x["active"]) for x in body["leases"]] == [
        ("52:54:00:00:00:01", "10.78.0.100", "node0", True)]
    status, body = await api.call("GET", "/api/v1/leases?all=1")
    assert [x["active"] for x in body["leases"]] == [True, False]


async def test_reservations_are_added_and_removed_live_and_committed_before_the_answer(api: Api) -> None:
    status, body = await api.call("POST", "/api/v1/reservations",
                                  {"mac": "52-54-00-00-00-0A", "ip": "10.78.0.20", "hostname": "Web1"})
    assert status == 201, body
    assert body["reservation"] == {**body["reservation"], "mac": "52:54:00:00:00:0a", "ip": "10.78.0.20",
                                   "hostname": "web1", "source": "manual"}
    assert api.committed("SELECT mac, ip FROM reservations") == [("52:54:00:00:00:0a", int(IPv4Address("10.78.0.20")))]
    # Live: the DHCP book offers it to that MAC at once.
    assert api.leases.offer("52:54:00:00:00:0a", POOL, None, time.time()) == IPv4Address("10.78.0.20")
    status, body = await api.call("GET", "/api/v1/reservations")
    assert [r["ip"] for r in body["reservations"]] == ["10.78.0.20"]

    status, body = await api.call("DELETE", "/api/v1/reservations/52540000000a")
    assert status == 200 and body["reservation"]["ip"] == "10.78.0.20"
    assert api.committed("SELECT count(*) FROM reservations") == [(0,)]
    status, body = await api.call("DELETE", "/api/v1/reservations/52540000000a")
    assert status == 404 and "no reservation" in body["error"]


async def test_changes_need_the_token_and_refusals_say_why(api: Api) -> None:
    status, _ = await api.call("POST", "/api/v1/reservations", {"mac": "52:54:00:00:00:01", "ip": "10.78.0.20"},
                               token=None)
    assert status == 401
    status, _ = await api.call("POST", "/api/v1/makedhcpstatic", token="wrong")
    assert status == 401
    for body, fragment in (({"mac": "nope", "ip": "10.78.0.20"}, "not a MAC address"),
                           ({"mac": "52:54:00:00:00:01", "ip": "10.78.0.300"}, "not an IPv4 address"),
                           ({"mac": "52:54:00:00:00:01"}, "required"),
                           ({"mac": "52:54:00:00:00:01", "ip": "10.78.0.20", "extra": 1}, "unknown field")):
        status, answer = await api.call("POST", "/api/v1/reservations", body)
        assert status == 400 and fragment in answer["error"], answer
    await api.call("POST", "/api/v1/reservations", {"mac": "52:54:00:00:00:01", "ip": "10.78.0.20"})
    for body, fragment in (({"mac": "52:54:00:00:00:02", "ip": "10.78.0.20"}, "already reserved"),
                           ({"mac": "52:54:00:00:00:02", "ip": "10.99.0.20"}, "outside every DHCP subnet"),
                           ({"mac": "52:54:00:00:00:02", "ip": "10.78.0.1"}, "own address")):
        status, answer = await api.call("POST", "/api/v1/reservations", body)
        assert status == 409 and fragment in answer["error"], answer


async def test_makedhcpstatic_converts_active_leases(api: Api) -> None:
    now = time.time()
    ip = api.leases.offer("52:54:00:00:00:05", POOL, None, now)
    api.leases.commit("52:54:00:00:00:05", ip, POOL, now, None, "db1")
    await api.store.journal.flush()
    status, body = await api.call("POST", "/api/v1/makedhcpstatic")
    assert status == 200
    assert [(r["mac"], r["ip"], r["hostname"], r["source"]) for r in body["reservations"]] == [
        ("52:54:00:00:00:05", str(ip), "db1", "makedhcpstatic")]
    assert api.committed("SELECT count(*) FROM leases") == [(0,)]
    assert api.committed("SELECT mac FROM reservations") == [("52:54:00:00:00:05",)]
