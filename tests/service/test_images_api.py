"""GET /api/v1/images on loopback: versions registered by the offline catalog (as getimage and `images commit`
register them, from another connection) show at once, newest marked, with the hosts that use each."""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from appliance.daemon.wiring import api_route_modules
from appliance.images.catalog import Catalog
from domain.hosts import new_host_op
from services.api_context import ApiContext
from services.http import HttpServer
from state.store import Store

pytestmark = pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")


async def curl_json(url: str) -> dict:
    proc = await asyncio.create_subprocess_exec("curl", "-sS", "--fail", "--max-time", "10",
                                                "-H", "Authorization: Bearer t", url,  # a reader: the admin token
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    return json.loads(out)


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[tuple[HttpServer, Store]]:
    store = Store(tmp_path / "state")
    http = HttpServer(host="127.0.0.1", port=0, boot_root=tmp_path / "boot",
                      api=ApiContext(store=store, admin_token="t"), route_modules=api_route_modules())
    await http.start()
    try:
        yield http, store
    finally:
        await http.stop()
        await store.close()


def register(catalog: Catalog, name: str, motd: str) -> None:
    staged = catalog.new_staging(name)
    (staged / "etc").mkdir()
    (staged / "etc/motd").write_text(motd)
    catalog.register(name, staged, source="rsync://192.0.2.7/root", layout_json=None, note=f"motd {motd!r}")


async def test_images_lists_every_version_with_newest_and_hosts(served: tuple[HttpServer, Store]) -> None:
    http, store = served
    url = f"http://127.0.0.1:{http.port}/api/v1/images"
    assert await curl_json(url) == {"images": []}
    catalog = Catalog(store.state_dir)
    try:
        register(catalog, "web", "one\n")
        register(catalog, "web", "two\n")
        register(catalog, "db", "db\n")
    finally:
        catalog.close()
    now = 1_700_000_000.0
    # One host pinned to web v1, one following web's newest, one on db.
    await store.journal.run(new_host_op("pinned", "52:54:00:00:00:01", "web", None, now, 1))
    await store.journal.run(new_host_op("follower", "52:54:00:00:00:02", "web", None, now))
    await store.journal.run(new_host_op("dbhost", "52:54:00:00:00:03", "db", None, now))
    images = (await curl_json(url))["images"]
    assert [(i["name"], i["version"], i["newest"], i["hosts"]) for i in images] == [
        ("db", 1, True, ["dbhost"]),
        ("web", 1, False, ["pinned"]),
        ("web", 2, True, ["follower"]),
    ]
    web2 = images[2]
    assert web2["source"] == "rsync://192.0.2.7/root" and web2["note"] == "motd 'two\\n'"
    assert web2["files"] >= 2 and web2["bytes"] >= 4 and web2["path"].endswith("images/web/v2")
    assert "layout" not in web2
