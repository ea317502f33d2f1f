"""Inspect-only boots ([discovery] inspect) on loopback with real clients: a machine no host has and without
an inventory is told to boot the installer in inspect mode (its boot file carries an inspect nonce bound to
its MAC and the address that asked, never a host or an image); the installer's own shell (lib/inventory.sh
inspect_post, on a made-up /sys, curl sending from the machine's leased address) posts the inventory once;
it is the machine's in the API; a discovery rule on its hardware then makes it a host and the answer says
reboot, else poweroff; the rule's BMC defaults give the new host the BMC at the address the inventory reports,
and its password is never answered or logged. A stranger cannot post another machine's inventory."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import subprocess
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import pytest

from appliance.daemon.wiring import api_route_modules
from domain.discovery import DiscoveryRule
from domain.settings import DiscoveryConfig
from services.api_context import ApiContext, Live
from services.bootresponder import BootResponder, BootSettings
from services.discovery import DiscoveringMachineLog, Discovery
from services.http import HttpServer
from state.boot import BootPolicy
from state.credentials import inspect_nonce
from state.lease_pools import PoolSpec
from state.lease_rows import journal_writer
from state.leases import LeaseModel
from state.store import Store
from tests.installer_sh import prelude
from tests.unit.test_inventory_sh import fake_machine

ADMIN = "admin-token-for-tests"
MAC = "3c:ec:ef:00:00:01"  # the made-up machine's first NIC (tests/unit/test_inventory_sh.fake_machine)
OWN = "127.77.0.131"
NET = IPv4Network("127.77.0.0/24")
POOL = PoolSpec(NET, IPv4Address("127.77.0.100"), IPv4Address("127.77.0.200"), 600)
PASSWORD = "s3cret-BMC-pw"


def _rule(**values: Any) -> DiscoveryRule:
    return msgspec.convert(values, DiscoveryRule, dec_hook=lambda t, v: t(v) if t is Path else t.from_config(v))


def _rules(password_file: Path) -> tuple[DiscoveryRule, ...]:
    bmc = {"bmc_scheme": "ipmi", "bmc_username": "ADMIN", "bmc_password_file": str(password_file)}
    return (_rule(hostname="node{n:02}", image="demo", vendor="supermicro", **bmc),
            _rule(hostname="acme{n:02}", image="demo", vendor="acme", **bmc))
BODY: dict[str, Any] = {"cpu": {"count": 2}, "disks": [], "interfaces": [],
                        "system_vendor": {"manufacturer": "Dell Inc."}}


@dataclass
class Env:
    base: str
    store: Store
    leases: LeaseModel
    responder: BootResponder
    discovery: Discovery
    http: aiohttp.ClientSession

    async def boot_file(self, mac: str, source: str) -> str:
        """/boot/<mac>.ipxe as the machine's iPXE asks for it, from `source`."""
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=(source, 0))) as http, \
                http.get(f"{self.base}/boot/{mac.replace(':', '-')}.ipxe") as r:
            assert r.status == 200
            return await r.text()

    async def post(self, mac: str, source: str, token: str | None, body: Any = BODY) -> tuple[int, dict[str, Any]]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=(source, 0))) as http, \
                http.post(f"{self.base}/inspect/{mac}/inventory", json=body, headers=headers) as r:
            return r.status, await r.json()

    async def admin(self, path: str) -> tuple[int, dict[str, Any]]:
        async with self.http.get(self.base + path, headers={"Authorization": f"Bearer {ADMIN}"}) as r:
            return r.status, await r.json()

    def lease(self, mac: str, ip: str) -> None:
        self.leases.commit(mac, IPv4Address(ip), POOL, time.time(), None, None)


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    state = tmp_path / "state"
    store = Store(state)
    await store.journal.run(lambda c: c.execute(
        "INSERT INTO images(name, version, path, created, arch) VALUES ('demo', 1, ?, 0, 'x86_64')",
        (str(state / "images" / "demo" / "v1"),)))
    leases = LeaseModel.load(store.reader, [POOL], journal_writer(store.journal.submit), now=time.time())
    password_file = tmp_path / "bmc.password"
    password_file.write_text(PASSWORD + "\n")
    password_file.chmod(0o600)
    discovery = Discovery(store, leases, DiscoveryConfig(policy="auto", rules=_rules(password_file), inspect=True),
                          clock=time.time)
    machines = DiscoveringMachineLog.load(store.reader, store.writeback, now=time.time())
    machines.on_seen = discovery.seen  # every sighting passes discovery, as in the daemon
    responder = BootResponder(store, BootSettings(policy=BootPolicy("wait", 2, inspect=True)), clock=time.time,
                              machines=machines)
    ctx = ApiContext(store=store, admin_token=ADMIN, live=Live(leases=leases, boot=responder, discovery=discovery,
                                                                machines=machines))
    server = HttpServer(host="127.0.0.1", port=0, boot_root=state / "boot", responder=responder, api=ctx,
                        route_modules=api_route_modules())
    await server.start()
    try:
        async with aiohttp.ClientSession() as http:
            yield Env(f"http://127.0.0.1:{server.port}", store, leases, responder, discovery, http)
    finally:
        await server.stop()
        await store.close()


def _nonce(boot_file: str) -> str:
    match = re.search(r" INSPECT_NONCE=(\S+) ", boot_file)
    assert match, boot_file
    return match.group(1)


def _inspect_post(root: Path, url: str, nonce: str, source: str) -> subprocess.CompletedProcess[str]:
    """The installer's inspect_post on the made-up machine under `root`; curl sends from `source` (its
    .curlrc: the shell's own request line is used as it is)."""
    (root / "curl").mkdir(exist_ok=True)
    (root / "curl" / ".curlrc").write_text(f"interface = {source}\n")
    script = prelude("common", "disks") + (
        '. "$INSTALLER_LIB/lib/inventory.sh"\ninspect_post\necho "then=$INSPECT_THEN"\n')
    env = {"PATH": f"{root / 'bin'}:{os.environ['PATH']}", "SYS_ROOT": str(root / "sys"),
           "PROC_ROOT": str(root / "proc"), "MAC": MAC, "IMAGESERVER_URL": url, "INSPECT_NONCE": nonce,
           "TMPDIR": str(root), "CURL_HOME": str(root / "curl")}
    return subprocess.run(["dash", "-c", script], env=env, capture_output=True, text=True, timeout=120)


async def test_a_held_machine_is_inspected_once_and_a_rule_on_its_hardware_makes_it_a_host(
        env: Env, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    env.lease(MAC, OWN)
    boot_file = await env.boot_file(MAC, OWN)
    assert "# imageserver: inspect for" in boot_file
    assert "HOSTNAME=" not in boot_file and "IMAGE=" not in boot_file and "INSTALL_" not in boot_file
    assert f"MAC={MAC}" in boot_file and "initrd.img" in boot_file
    nonce = _nonce(boot_file)

    root = fake_machine(tmp_path / "machine")
    done = await asyncio.to_thread(_inspect_post, root, env.base, nonce, OWN)  # the server runs on this loop
    assert done.returncode == 0, done.stdout + done.stderr
    assert "then=reboot" in done.stdout, done.stdout
    assert "host: node01" in done.stdout

    status, stored = await env.admin(f"/api/v1/machines/{MAC}/inventory")
    assert status == 200, stored
    assert stored["inventory"]["system_vendor"]["manufacturer"] == "Supermicro"
    assert stored["inventory"]["bmc_address"] == "10.20.0.7"
    status, host = await env.admin("/api/v1/hosts/node01")
    assert status == 200 and host["mac"] == MAC and host["image"] == "demo", host
    assert "# imageserver: install for" in await env.boot_file(MAC, OWN), "its next boot installs"
    # once: the nonce opens nothing more
    assert (await env.post(MAC, OWN, nonce))[0] == 409
    # its BMC: the inventory's address under the rule's scheme, user and password (stored, never shown)
    status, bmc = await env.admin("/api/v1/hosts/node01/bmc")
    assert status == 200, bmc
    assert (bmc["address"], bmc["kind"], bmc["username"]) == ("ipmi://10.20.0.7", "ipmi", "ADMIN")
    assert env.store.read_one("SELECT password FROM bmcs WHERE host = 'node01'")["password"] == PASSWORD
    status, host = await env.admin("/api/v1/hosts/node01")
    assert PASSWORD not in json.dumps([bmc, host, stored]) and PASSWORD not in done.stdout + done.stderr
    assert "host-bmc-discovered" in caplog.text and PASSWORD not in caplog.text


async def test_a_host_whose_inventory_names_no_bmc_gets_none(env: Env, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    env.lease(MAC, OWN)
    nonce = _nonce(await env.boot_file(MAC, OWN))
    status, body = await env.post(MAC, OWN, nonce, {**BODY, "system_vendor": {"manufacturer": "ACME"}})
    assert (status, body) == (200, {"mac": MAC, "then": "reboot", "host": "acme01"})
    assert (await env.admin("/api/v1/hosts/acme01"))[0] == 200
    assert (await env.admin("/api/v1/hosts/acme01/bmc"))[0] == 404
    assert "discovery-no-bmc" in caplog.text


async def test_without_a_matching_rule_it_powers_off_and_then_waits(env: Env) -> None:
    env.lease(MAC, OWN)
    nonce = _nonce(await env.boot_file(MAC, OWN))
    lldp = [[1, "04d623b8eb8399"], [2, "05" + b"swp7".hex()], [5, b"switch-7".hex()],
            [2, "05" + b"not the first".hex()]]
    nics = [{"name": "eno1", "mac_address": MAC, "lldp": lldp, "lldp_neighbor": {"system_name": "made up"}}]
    status, body = await env.post(MAC, OWN, nonce, {**BODY, "interfaces": nics})  # Dell: no rule matches
    assert status == 200, body
    assert body == {"mac": MAC, "then": "poweroff", "host": None}
    status, machine = await env.admin(f"/api/v1/machines/{MAC}")
    assert status == 200 and machine["boot"]["kind"] == "wait", machine
    assert machine["inventory"]["inventory"]["system_vendor"]["manufacturer"] == "Dell Inc."
    nic = machine["inventory"]["inventory"]["interfaces"][0]
    assert nic["lldp"] == lldp, "stored as posted"
    assert nic["lldp_neighbor"] == {"chassis_id": "d6:23:b8:eb:83:99", "port_id": "swp7", "system_name": "switch-7",
                                    "port_description": None}, "read by the imageserver, not taken from the machine"
    assert "# imageserver: wait for" in await env.boot_file(MAC, OWN)


async def test_the_inspect_nonce_is_the_machines_own(env: Env) -> None:
    other, stranger = "52:54:00:00:0b:02", "127.77.0.150"
    env.lease(MAC, OWN)
    env.lease(other, "127.77.0.132")
    nonce = _nonce(await env.boot_file(MAC, OWN))
    assert (await env.post(MAC, OWN, None))[0] == 401
    assert (await env.post(MAC, OWN, "i0000"))[0] == 401
    assert (await env.post(MAC, OWN, ADMIN))[0] == 401, "the admin token is no machine's credential"
    assert (await env.post(other, "127.77.0.132", nonce))[0] == 401, "one machine's nonce is not another's"
    # a stranger fetches the machine's boot file itself: its nonce is bound to the stranger's address
    status, body = await env.post(MAC, stranger, _nonce(await env.boot_file(MAC, stranger)))
    assert status == 403 and "address leased" in body["error"], body
    assert (await env.post(MAC, stranger, nonce))[0] == 401, "the machine's nonce from elsewhere"
    assert (await env.admin(f"/api/v1/machines/{MAC}/inventory"))[0] == 404, "nothing stored"
    # a key from another daemon (a restart) is no credential either
    assert (await env.post(MAC, OWN, inspect_nonce("another-key", MAC, OWN)))[0] == 401
    assert (await env.post(MAC, OWN, nonce))[0] == 200


async def test_a_host_is_not_inspected_and_inspection_off_refuses(env: Env) -> None:
    env.lease(MAC, OWN)
    nonce = _nonce(await env.boot_file(MAC, OWN))
    env.responder.settings = replace(env.responder.settings, policy=BootPolicy("wait", 2))
    status, body = await env.post(MAC, OWN, nonce)
    assert status == 403 and "inspect is off" in body["error"], body
    assert "# imageserver: wait for" in await env.boot_file(MAC, OWN)
    env.responder.settings = replace(env.responder.settings, policy=BootPolicy("wait", 2, inspect=True))
    await env.store.journal.run(lambda c: c.execute(
        "INSERT INTO hosts(name, mac, state, created, updated) VALUES ('node9', ?, 'new', 0, 0)", (MAC,)))
    status, body = await env.post(MAC, OWN, nonce)
    assert status == 409 and "node9" in body["error"], body

