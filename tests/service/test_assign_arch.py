"""A host refuses an image of another CPU architecture than its machine's: an arm64 image (its tree's ELF
binaries say so at registration) is refused for a host whose machine's firmware reported x64 UEFI (DHCP option
93 = 7 in the machines table) through the admin API (409: POST /hosts, PATCH /hosts, POST
/machines/{mac}/assign) and the offline CLI (exit 4), with the reason, writing nothing; the x86_64 image is
given to it, and the arm64 one to an arm64 machine (19: UEFI HTTP). The image's architecture shows in the
API's catalog and in `images list`/`images show`.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from appliance.cli.main import main
from appliance.daemon.wiring import api_route_modules
from appliance.images.assignable import image_problem_rule
from services.api_context import ApiContext, Live
from services.http import HttpServer
from state.db import connect, transaction
from state.hosts import host_by_name
from state.lease_rows import journal_writer
from state.leases import LeaseModel
from state.sightings import Machine, insert_machines
from state.store import Store
from tests.service.test_assign_installable import ADMIN, LAYOUT, POOL, free_port
from tests.unit.test_image_arch import elf

X64, ARM, HTTP64 = "52:54:00:00:07:07", "52:54:00:00:19:19", "52:54:00:00:16:16"
UNSEEN = "52:54:00:00:00:99"


def register(state: Path, name: str, e_machine: int) -> None:
    from appliance.images.catalog import Catalog

    catalog = Catalog(state)
    try:
        staged = catalog.new_staging(name)
        (staged / "etc").mkdir()
        (staged / "etc/fstab").write_text("PARTUUID=00c0ffee-01 / ext4 defaults 0 1\n")
        (staged / "usr/bin").mkdir(parents=True)
        (staged / "usr/bin/dash").write_bytes(elf(e_machine))
        os.symlink("usr/bin", staged / "bin")
        os.symlink("dash", staged / "usr/bin/sh")
        iv = catalog.register(name, staged, source="rsync://192.0.2.7/root", layout_json=LAYOUT.to_json())
        assert iv.arch == {62: "x86_64", 183: "arm64"}[e_machine]
    finally:
        catalog.close()


def world(state: Path) -> None:
    register(state, "deb-amd64", 62)
    register(state, "deb-arm64", 183)
    conn = connect(state / "imageserver.db")
    try:
        with transaction(conn):
            insert_machines(conn, [Machine(X64, 1.0, 2.0, 7, "PXEClient:Arch:00007:UNDI:003016"),
                                   Machine(ARM, 1.0, 2.0, 19, "HTTPClient:Arch:00019"),
                                   Machine(HTTP64, 1.0, 2.0, 16, "HTTPClient:Arch:00016")])
    finally:
        conn.close()


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[tuple[str, Store, aiohttp.ClientSession]]:
    state = tmp_path / "state"
    store = Store(state)
    world(state)
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


async def test_api_refuses_an_image_of_another_architecture(api: tuple[str, Store, aiohttp.ClientSession]) -> None:
    base, store, http = api

    async def call(method: str, path: str, body: dict) -> tuple[int, dict]:
        async with http.request(method, f"{base}{path}", json=body) as r:
            return r.status, await r.json()

    status, body = await call("POST", "/api/v1/hosts", {"name": "pc1", "mac": X64, "image": "deb-arm64"})
    assert status == 409, body
    assert ("image deb-arm64 cannot be installed on machine 52:54:00:00:07:07: the image is arm64 and the "
            "machine's firmware reported client architecture 7 (x64 UEFI") in body["error"], body
    assert host_by_name(store.reader, "pc1") is None, "a refused host was written"

    status, body = await call("POST", "/api/v1/hosts", {"name": "pc1", "mac": X64, "image": "deb-amd64"})
    assert status == 201 and body["state"] == "assigned", body
    status, body = await call("PATCH", "/api/v1/hosts/pc1", {"image": "deb-arm64"})
    assert status == 409 and "the image is arm64" in body["error"], body
    assert (host := host_by_name(store.reader, "pc1")) is not None and host.image == "deb-amd64"
    status, body = await call("POST", "/api/v1/hosts", {"name": "arm1", "mac": ARM, "image": "deb-arm64"})
    assert status == 201, body

    # A machine never seen (no option 93 known) is not refused on a guess.
    status, body = await call("POST", "/api/v1/hosts", {"name": "pc2", "mac": UNSEEN, "image": "deb-arm64"})
    assert status == 201, body
    # The MAC changed to an x64 machine's, or the machine assigned to the host: the same rule.
    status, body = await call("PATCH", "/api/v1/hosts/pc2", {"mac": HTTP64.upper()})
    assert status == 409 and "the image is arm64" in body["error"], body
    status, body = await call("PATCH", "/api/v1/hosts/pc2", {"mac": ""})
    assert status == 200, body
    status, body = await call("POST", f"/api/v1/machines/{HTTP64}/assign", {"host": "pc2"})
    assert status == 409 and "client architecture 16 (x64 UEFI HTTP" in body["error"], body
    assert (host := host_by_name(store.reader, "pc2")) is not None and host.mac is None

    async with http.get(f"{base}/api/v1/images") as r:
        catalog = {(i["name"], i["version"]): i for i in (await r.json())["images"]}
    assert catalog[("deb-arm64", 1)]["arch"] == "arm64" and catalog[("deb-amd64", 1)]["arch"] == "x86_64"


def test_offline_cli_refuses_and_shows_the_architecture(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    state = tmp_path / "state"
    config = tmp_path / "imageserver.toml"
    config.write_text(f'[appliance]\nstate_dir = "{state}"\naddress = "10.79.0.1"\n'
                      '[dhcp]\nsubnet = "10.79.0.0/24"\npool = "10.79.0.100-10.79.0.199"\n'
                      f'[http]\nlisten = "127.0.0.1"\nport = {free_port()}\n')
    connect(state / "imageserver.db").close()
    world(state)

    def cli(*args: str) -> tuple[int, str, str]:
        code = main([*args, "--config", str(config)])
        out = capsys.readouterr()
        return code, out.out, out.err

    code, _, err = cli("hosts", "add", "pc1", "--mac", X64, "--image", "deb-arm64")
    assert code == 4 and "the image is arm64" in err and "client architecture 7 (x64 UEFI" in err, err
    code, _, err = cli("hosts", "add", "pc1", "--mac", X64, "--image", "deb-amd64")
    assert code == 0, err
    code, _, err = cli("hosts", "set", "pc1", "--image", "deb-arm64")
    assert code == 4 and "the image is arm64" in err, err

    code, out, _ = cli("images", "list")
    assert code == 0
    lines = {line.split()[0]: line.split() for line in out.splitlines()[1:]}
    assert lines["deb-arm64"][2] == "arm64" and lines["deb-amd64"][2] == "x86_64", out
    code, out, _ = cli("images", "show", "deb-arm64")
    assert code == 0 and "arch      arm64" in out, out
    code, out, _ = cli("images", "list", "--json")
    assert {r["name"]: r["arch"] for r in json.loads(out)} == {"deb-amd64": "x86_64", "deb-arm64": "arm64"}
