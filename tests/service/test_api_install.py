"""The install API on loopback with a real HTTP client: a host is added, fetches its script (with
its variables) from its leased address with its fetch nonce, reports stages with its install token, and
ends installed with its lease turned into a reservation, or failed with the stage and reason; reinstall
hands out a new token. The pool is on 127.77.0.0/24, so a client can send from its leased address."""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import aiohttp
import pytest

from appliance.daemon.wiring import api_route_modules
from domain.config_values import AddressRange
from domain.installs import InstallSettings
from domain.settings import SubnetConfig
from services.api_context import ApiContext, Live
from services.http import HttpServer
from state.credentials import fetch_nonce, new_token
from state.hosts import set_install_token_op
from state.lease_pools import PoolSpec
from state.lease_rows import journal_writer
from state.leases import LeaseModel
from state.store import Store

ADMIN = "admin-token-for-tests"
MAC = "52:54:00:00:00:01"
NET = IPv4Network("127.77.0.0/24")
POOL = PoolSpec(NET, IPv4Address("127.77.0.100"), IPv4Address("127.77.0.200"), 600)
MASTER = "#!/bin/sh\n# demo.master (test)\necho installing $HOSTNAME\n"


@dataclass
class Env:
    base: str
    store: Store
    leases: LeaseModel
    http: aiohttp.ClientSession

    async def get(self, path: str, token: str | None = None) -> tuple[int, str]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with self.http.get(self.base + path, headers=headers) as r:
            return r.status, await r.text()

    async def script(self, mac: str, source: str, credential: str | None = "nonce") -> tuple[int, str]:
        """GET /install/<mac>/script from `source`, with the host's fetch nonce (or the credential given)."""
        if credential == "nonce":
            # What the boot responder does when the machine PXE-boots: mint the token, hand out the nonce.
            row = self.store.read_one("SELECT name FROM hosts WHERE mac = ?", (mac,))
            token = await self.store.journal.run(set_install_token_op(row["name"], new_token(), time.time()))
            credential = fetch_nonce(token, mac, source)
        headers = {"Authorization": f"Bearer {credential}"} if credential else {}
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=(source, 0))) as http, \
                http.get(f"{self.base}/install/{mac}/script", headers=headers) as r:
            return r.status, await r.text()

    async def post(self, path: str, body: object, token: str | None = None) -> tuple[int, dict]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with self.http.post(self.base + path, json=body, headers=headers) as r:
            return r.status, await r.json()


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    state = tmp_path / "state"
    store = Store(state)
    (state / "scripts").mkdir()
    (state / "scripts" / "demo.master").write_text(MASTER)
    images = state / "images" / "demo"
    await store.journal.run(lambda c: c.executemany(
        "INSERT INTO images(name, version, path, created) VALUES ('demo', ?, ?, 0)",
        [(1, str(images / "v1")), (2, str(images / "v2"))]))
    leases = LeaseModel.load(store.reader, [POOL], journal_writer(store.journal.submit), now=time.time())
    settings = InstallSettings(address="127.77.0.1", rsync_port=873, domain="lab.test",
                               subnets=(SubnetConfig(NET, AddressRange(POOL.pool_first, POOL.pool_last),
                                                     IPv4Address("127.77.0.1"), (IPv4Address("127.77.0.1"),)),))
    ctx = ApiContext(store=store, admin_token=ADMIN, live=Live(leases=leases, install=settings))
    server = HttpServer(host="127.0.0.1", port=0, boot_root=state / "boot", api=ctx,
                        route_modules=api_route_modules())
    await server.start()
    try:
        async with aiohttp.ClientSession() as http:
            yield Env(f"http://127.0.0.1:{server.port}", store, leases, http)
    finally:
        await server.stop()
        await store.close()


async def _add(env: Env, name: str, mac: str) -> None:
    status, body = await env.post("/api/v1/hosts", {"name": name, "mac": mac, "image": "demo"}, ADMIN)
    assert status == 201, body
    assert body["state"] == "assigned"


def _var(script: str, name: str) -> str:
    match = re.search(rf"^{name}='([^']*)'; export {name}$", script, re.M)
    assert match, f"{name} not in script:\n{script}"
    return match.group(1)


async def test_script_events_done_installed_and_reserved(env: Env) -> None:
    status, _ = await env.post("/api/v1/hosts", {"name": "node1", "mac": MAC, "image": "demo"})
    assert status == 401, "adding a host needs the admin token"
    await _add(env, "node1", MAC)
    env.leases.commit(MAC, IPv4Address("127.77.0.123"), POOL, time.time(), None, None)

    assert (await env.get(f"/install/{MAC}/script"))[0] == 403, "only from the host's own address"
    assert (await env.script(MAC, "127.77.0.123", None))[0] == 401, "not without a credential"
    assert (await env.script(MAC, "127.77.0.123", "wrong"))[0] == 401
    status, script = await env.script(MAC, "127.77.0.123", fetch_nonce(
        env.store.read_one("SELECT install_token FROM hosts WHERE mac = ?", (MAC,))["install_token"] or "x",
        MAC, "127.77.0.9"))
    assert status == 401, "a nonce handed to another address does not open the script"
    status, script = await env.script(MAC, "127.77.0.123")
    assert status == 200, script
    assert script.startswith("#!/bin/sh\n") and script.endswith(MASTER.split("\n", 1)[1])
    assert _var(script, "HOSTNAME") == "node1"
    assert _var(script, "IPADDR") == "127.77.0.123"
    assert _var(script, "NETMASK") == "255.255.255.0"
    assert _var(script, "GATEWAY") == "127.77.0.1"
    assert _var(script, "VERSION") == "2"
    assert _var(script, "RSYNC_MODULE") == "demo_v2"
    assert _var(script, "IMAGESERVER") == "127.77.0.1"
    token = _var(script, "INSTALL_TOKEN")

    status, host = await env.get("/api/v1/hosts/node1", ADMIN)
    assert '"state": "assigned"' in host, "a GET changes no state"

    event = {"stage": "rsync", "detail": "copying", "bytes": 1000, "total": 4000}
    assert (await env.post(f"/install/{MAC}/events", event))[0] == 401
    assert (await env.post(f"/install/{MAC}/events", event, "not-the-token"))[0] == 401
    assert (await env.post(f"/install/{MAC}/events", event, ADMIN))[0] == 401, "the admin token is not an install's"
    status, body = await env.post(f"/install/{MAC}/events", event, token)
    assert status == 200 and body["state"] == "installing"
    status, body = await env.post(f"/install/{MAC}/events", {"stage": "Bad Stage!"}, token)
    assert status == 400

    # Copy progress is live state, not history: the host view shows it, the timeline gets no row.
    status, _ = await env.post(f"/install/{MAC}/events", {"stage": "progress", "bytes": 3000, "total": 4000}, token)
    assert status == 200
    async with env.http.get(env.base + "/api/v1/hosts", headers={"Authorization": f"Bearer {ADMIN}"}) as r:
        listed = (await r.json())["hosts"][0]
    assert listed["progress"]["stage"] == "rsync"
    assert (listed["progress"]["bytes"], listed["progress"]["total"]) == (3000, 4000)
    assert (await env.post(f"/install/{MAC}/events", {"stage": "progress"}, token))[0] == 400

    status, body = await env.post(f"/install/{MAC}/events", {"stage": "done"}, token)
    assert status == 200 and body["state"] == "installed", body
    res = env.leases.reservation(MAC)
    assert res is not None and res.ip == IPv4Address("127.77.0.123") and res.source == "on-install"

    async with env.http.get(env.base + "/api/v1/hosts/node1", headers={"Authorization": f"Bearer {ADMIN}"}) as r:
        view = await r.json()
    assert view["state"] == "installed" and view["running_version"] == 2
    assert [e["stage"] for e in view["timeline"]] == ["rsync", "done"]
    assert view["binding"]["kind"] == "reservation"
    assert view["progress"]["stage"] == "done" and view["progress"]["bytes"] == 1000, "live progress ends with done"
    stored = env.store.read_one("SELECT ip, source FROM reservations WHERE mac = ?", (MAC,))
    assert stored is not None and stored["source"] == "on-install", "the reservation is durable"

    status, _ = await env.script(MAC, "127.77.0.123", token)
    assert status == 409, "an installed host gets no script, even with its used token"
    assert (await env.post(f"/install/{MAC}/events", {"stage": "done"}, token))[0] == 401, "the token is used up"


async def test_failure_names_the_stage_and_reason_and_reinstall_rotates_the_token(env: Env) -> None:
    mac = "52:54:00:00:00:02"
    await _add(env, "node2", mac)
    env.leases.commit(mac, IPv4Address("127.77.0.124"), POOL, time.time(), None, None)
    status, script = await env.script(mac, "127.77.0.124")
    token = _var(script, "INSTALL_TOKEN")
    await env.post(f"/install/{mac}/events", {"stage": "partition"}, token)
    detail = "stage: partition\nreason: disk too small (16 MiB, image needs 35 MiB)\nsfdisk: ..."
    status, body = await env.post(f"/install/{mac}/events", {"stage": "failed", "detail": detail}, token)
    assert status == 200 and body["state"] == "failed"
    async with env.http.get(env.base + "/api/v1/hosts/node2", headers={"Authorization": f"Bearer {ADMIN}"}) as r:
        view = await r.json()
    assert view["state"] == "failed"
    assert view["progress"]["failure"] == {"stage": "partition",
                                           "reason": "disk too small (16 MiB, image needs 35 MiB)"}
    assert env.leases.reservation(mac) is None

    assert (await env.post("/api/v1/hosts/node2/reinstall", {}))[0] == 401
    status, body = await env.post("/api/v1/hosts/node2/reinstall", {}, ADMIN)
    assert status == 200 and body["state"] == "assigned"
    assert (await env.post(f"/install/{mac}/events", {"stage": "rsync"}, token))[0] == 401, "old token is dead"
    status, script = await env.script(mac, "127.77.0.124")
    assert _var(script, "INSTALL_TOKEN") != token


async def test_unknown_mac_and_bad_mac(env: Env) -> None:
    assert (await env.get("/install/52:54:00:99:99:99/script"))[0] == 404
    assert (await env.get("/install/not-a-mac/script"))[0] == 400
    assert (await env.get("/api/v1/hosts/nobody", ADMIN))[0] == 404


async def test_a_per_host_script_override_is_served_with_the_same_variables(env: Env) -> None:
    mac = "52:54:00:00:00:03"
    await _add(env, "node3", mac)
    override = "#!/bin/sh\n# node3's own script\necho special $HOSTNAME\n"
    await env.store.journal.run(lambda c: c.execute("UPDATE hosts SET script = ? WHERE name = 'node3'", (override,)))
    env.leases.commit(mac, IPv4Address("127.77.0.125"), POOL, time.time(), None, None)
    status, script = await env.script(mac, "127.77.0.125")
    assert status == 200 and "# node3's own script" in script and MASTER not in script
    assert _var(script, "HOSTNAME") == "node3" and _var(script, "MODULE") == "demo_v2"
    # A file name instead of a script: a file of its own under scripts/.
    (env.store.state_dir / "scripts" / "special.sh").write_text("#!/bin/sh\necho from a file\n")
    await env.store.journal.run(lambda c: c.execute("UPDATE hosts SET script = 'special.sh' WHERE name = 'node3'"))
    status, script = await env.script(mac, "127.77.0.125")
    assert status == 200 and script.endswith("echo from a file\n")
