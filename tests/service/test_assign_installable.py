"""A host cannot be given an image no machine could be installed from: the admin API (POST and PATCH
/api/v1/hosts, over loopback with aiohttp's client) and the offline CLI (`hosts add`, `hosts set` with
the daemon down) ask getimage's own rule (autoinstall.installable_plan, through
appliance.images.assignable) and refuse with the reason, writing nothing. An image with the
operator's own scripts/NAME.master (getimage --no-script) and an image not captured yet may be assigned.
"""

from __future__ import annotations

import socket
import time
from collections.abc import AsyncIterator
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import aiohttp
import pytest

from appliance.cli.main import main
from appliance.daemon.wiring import api_route_modules
from appliance.images.assignable import image_problem_rule
from appliance.images.catalog import Catalog
from appliance.images.layout import Disk, Layout, Partition
from services.api_context import ApiContext, Live
from services.http import HttpServer
from state.db import connect
from state.hosts import host_by_name
from state.lease_pools import PoolSpec
from state.lease_rows import journal_writer
from state.leases import LeaseModel
from state.store import Store

ADMIN = "admin-token-for-tests"
POOL = PoolSpec(IPv4Network("127.78.0.0/24"), IPv4Address("127.78.0.100"), IPv4Address("127.78.0.200"), 600)
LAYOUT = Layout(disks=(Disk(name="vda", size=2 << 30, label="dos", label_id="0x00c0ffee",
                            partitions=(Partition(number=1, start=2048, size=2 << 20, type="83"),)),))
FSTAB = "PARTUUID=00c0ffee-01 / ext4 defaults 0 1\n"


def register(state: Path, name: str, layout: Layout | None, fstab: str = FSTAB) -> None:
    catalog = Catalog(state)
    try:
        staged = catalog.new_staging(name)
        (staged / "etc").mkdir()
        (staged / "etc/fstab").write_text(fstab)
        catalog.register(name, staged, source="rsync://192.0.2.7/root",
                         layout_json=layout.to_json() if layout else None)
    finally:
        catalog.close()


def images(state: Path) -> None:
    register(state, "good", LAYOUT)
    register(state, "raw", None)  # getimage --no-script: no layout, no script
    register(state, "nofs", LAYOUT, fstab="# nothing for /\n")
    register(state, "own", None)
    (state / "scripts").mkdir(exist_ok=True)
    (state / "scripts" / "own.master").write_text("#!/bin/sh\necho the operator's own install\n")


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[tuple[str, Store, aiohttp.ClientSession]]:
    state = tmp_path / "state"
    store = Store(state)
    images(state)
    leases = LeaseModel.load(store.reader, [POOL], journal_writer(store.journal.submit), now=time.time())
    ctx = ApiContext(store=store, admin_token=ADMIN,
                     live=Live(leases=leases, image_problem=image_problem_rule(store.reader, state)))
    server = HttpServer(host="127.0.0.1", port=0, boot_root=state / "boot", api=ctx, route_modules=api_route_modules())
    await server.start()
    try:
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {ADMIN}"}) as http:
            yield f"http://127.0.0.1:{server.port}", store, http
    finally:
        await server.stop()
        await store.close()


async def test_api_refuses_uninstallable_images_and_writes_nothing(
        api: tuple[str, Store, aiohttp.ClientSession]) -> None:
    base, store, http = api

    async def add(name: str, mac: str, image: str, version: int | None = None) -> tuple[int, dict]:
        body = {"name": name, "mac": mac, "image": image, "version": version}
        async with http.post(f"{base}/api/v1/hosts", json=body) as r:
            return r.status, await r.json()

    status, body = await add("n1", "52:54:00:00:01:01", "raw")
    assert status == 409 and "image raw cannot be installed" in body["error"], body
    assert "no recorded disk layout" in body["error"] and "own.master" not in body["error"]
    status, body = await add("n1", "52:54:00:00:01:01", "nofs")
    assert status == 409 and "fstab has no on-disk entry for /" in body["error"], body
    status, body = await add("n1", "52:54:00:00:01:01", "good", 7)
    assert status == 409 and "no version v7 (it has v1)" in body["error"], body
    assert host_by_name(store.reader, "n1") is None, "a refused host was written"

    for name, mac, image in (("n1", "52:54:00:00:01:01", "good"), ("n2", "52:54:00:00:01:02", "own"),
                             ("n3", "52:54:00:00:01:03", "later")):  # "later": not captured yet
        status, body = await add(name, mac, image)
        assert status == 201 and body["state"] == "assigned", body

    async with http.patch(f"{base}/api/v1/hosts/n1", json={"image": "raw"}) as r:
        status, body = r.status, await r.json()
    assert status == 409 and "image raw cannot be installed" in body["error"], body
    host = host_by_name(store.reader, "n1")
    assert host is not None and host.image == "good"
    async with http.patch(f"{base}/api/v1/hosts/n1", json={"version": 3}) as r:
        assert r.status == 409 and "no version v3" in (await r.json())["error"]
    async with http.patch(f"{base}/api/v1/hosts/n1", json={"image": "own"}) as r:
        assert r.status == 200, await r.text()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_offline_cli_refuses_uninstallable_images(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    state = tmp_path / "state"
    config = tmp_path / "imageserver.toml"
    config.write_text(f'[appliance]\nstate_dir = "{state}"\naddress = "10.79.0.1"\n'
                      '[dhcp]\nsubnet = "10.79.0.0/24"\npool = "10.79.0.100-10.79.0.199"\n'
                      f'[http]\nlisten = "127.0.0.1"\nport = {free_port()}\n')
    connect(state / "imageserver.db").close()
    images(state)

    def cli(*args: str) -> tuple[int, str, str]:
        code = main([*args, "--config", str(config)])
        out = capsys.readouterr()
        return code, out.out, out.err

    code, _, err = cli("hosts", "add", "n1", "--mac", "52:54:00:00:02:01", "--image", "raw")
    assert code == 4 and "image raw cannot be installed" in err and "no recorded disk layout" in err, err
    conn = connect(state / "imageserver.db")
    try:
        assert host_by_name(conn, "n1") is None
    finally:
        conn.close()
    code, _, err = cli("hosts", "add", "n1", "--mac", "52:54:00:00:02:01", "--image", "good")
    assert code == 0, err
    code, _, err = cli("hosts", "set", "n1", "--image", "nofs")
    assert code == 4 and "image nofs cannot be installed" in err, err
    code, _, err = cli("hosts", "set", "n1", "--image", "own")
    assert code == 0, err
    conn = connect(state / "imageserver.db")
    try:
        host = host_by_name(conn, "n1")
        assert host is not None and host.image == "own"
    finally:
        conn.close()
