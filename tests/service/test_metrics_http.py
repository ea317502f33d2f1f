"""/metrics, /api/v1/pools and the dashboard on loopback (no namespaces, no root): the HTTP server with the
route modules the daemon mounts, curl as the client, and the status document built from the running
server's own status() as the daemon builds it. Pools come from the database when no lease book is live."""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import AsyncIterator
from ipaddress import IPv4Network
from pathlib import Path
from typing import Any

import pytest

from appliance.daemon.wiring import api_route_modules
from services.api_context import ApiContext, Live
from services.http import HttpServer
from state.lease_pools import PoolSpec
from state.store import Store
from tests.expocheck import Exposition, parse

pytestmark = pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")

NET = IPv4Network("10.77.0.0/24")


async def curl(*args: str) -> str:
    proc = await asyncio.create_subprocess_exec("curl", "-sS", "--fail", "--max-time", "10", *args,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    return out.decode()


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[HttpServer]:
    store = Store(tmp_path / "state")
    holder: dict[str, HttpServer] = {}

    def status() -> dict[str, Any]:
        return {"version": "test", "uptime": 1.0, "services": {"http": holder["http"].status()},
                "counts": {"leases": 1}}

    ctx = ApiContext(store=store, admin_token="t", status=status,
                     live=Live(pools=(PoolSpec(NET, NET[100], NET[149], 600),)))
    http = holder["http"] = HttpServer(host="127.0.0.1", port=0, boot_root=tmp_path / "boot", api=ctx,
                                       route_modules=api_route_modules())
    now = time.time()
    with store.reader:  # two leases in the pool (one expired), one reservation in the subnet
        store.reader.executemany("INSERT INTO leases(mac, ip, subnet, starts, expires) VALUES (?,?,?,?,?)", [
            ("52:54:00:00:00:01", int(NET[100]), str(NET), now, now + 600),
            ("52:54:00:00:00:02", int(NET[101]), str(NET), now - 900, now - 300)])
        store.reader.execute("INSERT INTO reservations(mac, ip, created) VALUES (?,?,?)",
                             ("52:54:00:00:00:03", int(NET[20]), now))
    await http.start()
    try:
        yield http
    finally:
        await http.stop()
        await store.close()


async def scrape(http: HttpServer) -> Exposition:
    return parse(await curl(f"http://127.0.0.1:{http.port}/metrics"))


async def test_metrics_on_loopback_follow_the_servers_own_counters(server: HttpServer) -> None:
    base = f"http://127.0.0.1:{server.port}"
    (server.boot_root / "ipxe.efi").write_bytes(b"\x01" * 4096)
    before = await scrape(server)
    assert before.value("imageserver_info", version="test") == 1
    assert before.value("imageserver_dhcp_pool_size", subnet=str(NET)) == 50
    assert before.value("imageserver_dhcp_pool_active_leases", subnet=str(NET)) == 1  # the expired one is not
    assert before.value("imageserver_dhcp_reservations", subnet=str(NET)) == 1
    assert before.value("imageserver_store_rows", table="leases") == 1
    await curl("-o", "/dev/null", f"{base}/boot/files/ipxe.efi")
    after = await scrape(server)
    assert after.value("imageserver_http_file_transfers_total") - before.get("imageserver_http_file_transfers_total") \
        == 1
    assert after.value("imageserver_http_sent_bytes_total") - before.get("imageserver_http_sent_bytes_total") >= 4096
    # The scrape itself is a request the next scrape counts (the counters are the server's own).
    assert after.value("imageserver_http_requests_total") == before.value("imageserver_http_requests_total") + 2
    pools = await curl("-H", "Authorization: Bearer t", f"{base}/api/v1/pools")  # a reader: the admin token
    assert '"active": 1' in pools and '"size": 50' in pools and '"reserved": 1' in pools


async def test_dashboard_assets_are_served_and_nothing_else_under_static(server: HttpServer) -> None:
    base = f"http://127.0.0.1:{server.port}"
    page = await curl(f"{base}/")
    assert "/static/dashboard.js" in page and "<title>imageserver</title>" in page
    assert "fetch(" in await curl(f"{base}/static/dashboard.js")
    assert "font" in await curl(f"{base}/static/dashboard.css")
    proc = await asyncio.create_subprocess_exec(
        "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", f"{base}/static/dashboard.html",
        stdout=asyncio.subprocess.PIPE)
    out, _ = await proc.communicate()
    assert out == b"404"
