"""The hardware inventory route on loopback with a real HTTP client (the install API's lab: a pool on
127.77.0.0/24, so a client sends from its leased address): POST /install/{mac}/inventory takes the install
token only from the host's own address, caps the body, names a key that does not fit, stores the inventory
per MAC and answers with the disk the root-device hints (host's, else image's) choose, or why none."""

from __future__ import annotations

import json
import time
from ipaddress import IPv4Address
from typing import Any

import aiohttp

from services.api_install import INVENTORY_MAX_BYTES
from tests.service import test_api_install
from tests.service.test_api_install import ADMIN, POOL, Env, _add, _var

env = test_api_install.env  # the install API's lab, a fixture here too

MAC = "52:54:00:00:0a:01"
OWN = "127.77.0.131"
INVENTORY: dict[str, Any] = {
    "cpu": {"model_name": "QEMU Virtual CPU", "count": 2, "architecture": "x86_64", "flags": ["fpu", "sse2"]},
    "memory": {"total": 500 << 20, "physical_mb": 512},
    "disks": [{"name": "/dev/nvme0n1", "size": 96 << 20, "model": "QEMU NVMe Ctrl", "serial": "NVME-0001",
               "wwn": None, "rotational": False, "by_path": "pci-0000:00:05.0-nvme-1"},
              {"name": "/dev/vda", "size": 256 << 20, "model": None, "serial": "VIRTIO-0002", "wwn": None,
               "rotational": True, "by_path": "pci-0000:00:04.0"}],
    "interfaces": [{"name": "eth0", "mac_address": MAC, "driver": "virtio_net", "speed_mbps": None,
                    "has_carrier": True}],
    "system_vendor": {"manufacturer": "QEMU", "product_name": "Standard PC (i440FX + PIIX, 1996)",
                      "serial_number": "SN-1", "uuid": "4c4c4544-0000-0000-0000-000000000001"},
    "boot": {"current_boot_mode": "bios", "pxe_interface": MAC},
    "bmc_address": None,
    "lldp": {"a newer installer's key": "ignored"},
}


async def _post_from(env: Env, source: str, body: Any, token: str | None) -> tuple[int, dict[str, Any]]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=(source, 0))) as http, \
            http.post(f"{env.base}/install/{MAC}/inventory", data=data,
                      headers={**headers, "Content-Type": "application/json"}) as r:
        return r.status, await r.json()


async def _admin(env: Env, method: str, path: str, body: Any = None) -> tuple[int, dict[str, Any]]:
    async with env.http.request(method, env.base + path, json=body,
                                headers={"Authorization": f"Bearer {ADMIN}"}) as r:
        return r.status, await r.json()


async def _installing(env: Env) -> str:
    """node1 on MAC, leased OWN, its script fetched: its install token."""
    await _add(env, "node1", MAC)
    env.leases.commit(MAC, IPv4Address(OWN), POOL, time.time(), None, None)
    status, script = await env.script(MAC, OWN)
    assert status == 200, script
    return _var(script, "INSTALL_TOKEN")


async def test_inventory_is_taken_only_with_the_token_from_the_hosts_own_address(env: Env) -> None:
    token = await _installing(env)
    assert (await _post_from(env, OWN, INVENTORY, None))[0] == 401
    assert (await _post_from(env, OWN, INVENTORY, "not-the-token"))[0] == 401
    assert (await _post_from(env, OWN, INVENTORY, ADMIN))[0] == 401, "the admin token is not an install's"
    status, body = await _post_from(env, "127.77.0.9", INVENTORY, token)
    assert status == 403, body
    assert "address leased or reserved" in body["error"]
    assert (await _admin(env, "GET", f"/api/v1/machines/{MAC}/inventory"))[0] == 404, "nothing stored"

    status, body = await _post_from(env, OWN, INVENTORY, token)
    assert status == 200, body
    assert body == {"host": "node1", "root_device": None, "hints": None, "hints_from": None, "failure": None}

    status, stored = await _admin(env, "GET", f"/api/v1/machines/{MAC}/inventory")
    assert status == 200, stored
    inv = stored["inventory"]
    assert [(d["name"], d["serial"], d["size"]) for d in inv["disks"]] == [
        ("/dev/nvme0n1", "NVME-0001", 96 << 20), ("/dev/vda", "VIRTIO-0002", 256 << 20)]
    assert inv["interfaces"][0]["mac_address"] == MAC and inv["system_vendor"]["manufacturer"] == "QEMU"
    assert "lldp" not in inv, "keys the server does not know are ignored, not stored"
    assert stored["summary"].startswith("QEMU Standard PC") and "2 disks" in stored["summary"], stored["summary"]
    # the host view and the machine view show it too
    host = (await _admin(env, "GET", "/api/v1/hosts/node1"))[1]
    assert host["inventory"]["inventory"]["disks"][1]["serial"] == "VIRTIO-0002"
    machine = (await _admin(env, "GET", f"/api/v1/machines/{MAC}"))[1]
    assert machine["inventory"]["summary"] == stored["summary"]


async def test_a_malformed_or_oversized_inventory_is_refused_naming_the_key(env: Env) -> None:
    token = await _installing(env)
    bad = {**INVENTORY, "disks": [{**INVENTORY["disks"][0], "size": "ninety-six megabytes"}]}
    status, body = await _post_from(env, OWN, bad, token)
    assert status == 400 and "disks[0].size" in body["error"], body
    status, body = await _post_from(env, OWN, {**INVENTORY, "disks": [{"size": 1}]}, token)
    assert status == 400 and "disks[0].name" in body["error"], body
    status, body = await _post_from(env, OWN, {**INVENTORY, "cpu": {"model_name": "x" * 300}}, token)
    assert status == 400 and "cpu.model_name" in body["error"], body
    status, body = await _post_from(env, OWN, b"{not json", token)
    assert status == 400 and "not valid JSON" in body["error"], body
    huge = json.dumps({**INVENTORY, "padding": "x" * INVENTORY_MAX_BYTES}).encode()
    status, body = await _post_from(env, OWN, huge, token)
    assert status == 400 and f"larger than {INVENTORY_MAX_BYTES} bytes" in body["error"], body
    assert (await _admin(env, "GET", f"/api/v1/machines/{MAC}/inventory"))[0] == 404, "none of them stored"


async def test_the_answer_names_the_disk_the_hints_choose_or_why_none(env: Env) -> None:
    token = await _installing(env)
    # The host's own hints: set, shown, and handed to the installer as a variable of its script.
    assert (await _admin(env, "PUT", "/api/v1/hosts/node1/root-device", {"hints": "colour=red"}))[0] == 400
    status, body = await _admin(env, "PUT", "/api/v1/hosts/node1/root-device", {"hints": "serial=VIRTIO-0002"})
    assert status == 200 and body == {"kind": "host", "name": "node1", "hints": "serial=VIRTIO-0002"}, body
    status, script = await env.script(MAC, OWN, token)
    assert _var(script, "ROOT_DEVICE_HINTS") == "host"
    status, body = await _post_from(env, OWN, INVENTORY, token)
    assert status == 200 and body["root_device"] == "/dev/vda" and body["hints_from"] == "host", body
    host = (await _admin(env, "GET", "/api/v1/hosts/node1"))[1]
    assert host["root_device"] == {"hints": "serial=VIRTIO-0002", "source": "host"}

    # No match: no disk, and a failure that names every candidate.
    await _admin(env, "PUT", "/api/v1/hosts/node1/root-device", {"hints": "serial=NOPE"})
    status, body = await _post_from(env, OWN, INVENTORY, token)
    assert status == 200 and body["root_device"] is None, body
    assert "no disk matches the root-device hints serial=NOPE" in body["failure"]
    assert "/dev/nvme0n1 (96.0 MiB, serial NVME-0001" in body["failure"]
    assert "/dev/vda (256.0 MiB, serial VIRTIO-0002" in body["failure"]

    # The image's hints apply once the host has none of its own.
    status, body = await _admin(env, "PUT", "/api/v1/images/demo/root-device", {"hints": "size>=64M,smallest"})
    assert status == 200 and body["hints"] == "size>=64M,smallest", body
    status, body = await _admin(env, "DELETE", "/api/v1/hosts/node1/root-device")
    assert status == 200 and body["hints"] is None
    status, body = await _post_from(env, OWN, INVENTORY, token)
    assert (body["root_device"], body["hints_from"]) == ("/dev/nvme0n1", "image"), body
    assert (await _admin(env, "PUT", "/api/v1/images/nosuch/root-device", {"hints": "largest"}))[0] == 404
    assert (await _admin(env, "PUT", "/api/v1/hosts/nobody/root-device", {"hints": "largest"}))[0] == 404
