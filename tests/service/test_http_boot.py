"""The HTTP server on loopback, with curl as the client: boot scripts per host state, boot files
(sizes, bytes, HEAD, Range), the traversal suite, the machines API and the token on mutating routes."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from appliance.daemon.wiring import api_route_modules
from services.api_context import ApiContext, Live
from services.bootresponder import BootResponder, BootSettings
from services.http import HttpServer
from state.boot import BootPolicy
from state.credentials import fetch_nonce
from state.sightings import MachineLog
from state.store import Store

pytestmark = pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")

MAC = "52:54:00:12:34:56"
TOKEN = "test-admin-token"
READ = ("-H", f"Authorization: Bearer {TOKEN}")  # reads need a token (the admin token is one)


@dataclass
class Curl:
    status: int
    body: bytes
    headers: dict[str, str]

    def json(self) -> object:
        return json.loads(self.body)


@dataclass
class Env:
    server: HttpServer
    store: Store
    root: Path
    tmp: Path
    reloads: list[int]

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server.port}"

    async def curl(self, path: str, *args: str) -> Curl:
        out = self.tmp / f"body-{os.urandom(4).hex()}"
        hdr = self.tmp / f"hdr-{os.urandom(4).hex()}"
        proc = await asyncio.create_subprocess_exec(
            "curl", "-sS", "--path-as-is", "-o", str(out), "-D", str(hdr), "-w", "%{http_code}", *args,
            self.base + path, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        stdout, stderr = await proc.communicate()
        assert proc.returncode == 0, stderr.decode()
        headers: dict[str, str] = {}
        for line in hdr.read_text(errors="replace").splitlines()[1:]:
            key, sep, value = line.partition(":")
            if sep:
                headers[key.strip().lower()] = value.strip()
        body = out.read_bytes() if out.exists() else b""
        return Curl(int(stdout.decode()), body, headers)

    async def sql(self, statement: str, params: tuple[object, ...] = ()) -> None:
        await self.store.journal.run(lambda c: c.execute(statement, params))


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    store = Store(tmp_path / "state")
    root = tmp_path / "state" / "boot"
    (root / "installer").mkdir(parents=True)
    # A boot file of odd size (not a multiple of any chunk size) with varied bytes.
    (root / "undionly.kpxe").write_bytes(hashlib.sha256(b"x").digest() * 40_001 + b"tail")
    (root / "installer" / "vmlinuz").write_bytes(os.urandom(3 * 1024 * 1024 + 17))
    (tmp_path / "secret").write_text("root:x:0:0:secret\n")
    os.symlink(tmp_path / "secret", root / "escape")  # a symlink leading out of the root
    os.symlink(tmp_path, root / "outdir")
    machines = MachineLog(store.journal.submit)
    responder = BootResponder(store, BootSettings(policy=BootPolicy("wait", 3), kernel_cmdline="console=ttyS0"),
                              clock=lambda: 1000.0, machines=machines)
    reloads: list[int] = []
    api = ApiContext(store=store, admin_token=TOKEN, live=Live(machines=machines, boot=responder),
                     status=lambda: {"version": "test", "services": {"http": server.status()}},
                     request_reload=lambda: reloads.append(1))
    server = HttpServer(host="127.0.0.1", port=0, boot_root=root, responder=responder, api=api,
                        route_modules=api_route_modules())
    await server.start()
    try:
        yield Env(server, store, root, tmp_path, reloads)
    finally:
        await server.stop()
        await store.close()


# --- boot scripts --------------------------------------------------------------------------------

@pytest.mark.parametrize("spelling", [MAC, MAC.upper(), MAC.replace(":", "-"), MAC.replace(":", ""),
                                      "5254.0012.3456"])
async def test_unknown_machine_waits_whatever_the_mac_spelling(env: Env, spelling: str) -> None:
    r = await env.curl(f"/boot/{spelling}.ipxe")
    assert r.status == 200
    script = r.body.decode()
    assert script.startswith("#!ipxe\n")
    assert "sleep 3\n" in script
    assert f"chain --replace --autofree {env.base}/boot/52-54-00-12-34-56.ipxe || goto retry" in script
    assert r.headers["cache-control"] == "no-store"


async def test_not_a_mac_is_404(env: Env) -> None:
    assert (await env.curl("/boot/not-a-mac.ipxe")).status == 404


async def test_booting_machine_is_listed_in_the_machines_api(env: Env) -> None:
    await env.curl(f"/boot/{MAC}.ipxe")
    listing = (await env.curl("/api/v1/machines", *READ)).json()
    assert listing["machines"][0]["mac"] == MAC  # type: ignore[index]
    assert listing["machines"][0]["boot"] == "wait"  # type: ignore[index]
    one = await env.curl(f"/api/v1/machines/{MAC.replace(':', '-')}", *READ)
    assert one.status == 200
    assert one.json()["boot"]["kind"] == "wait"  # type: ignore[index]
    assert (await env.curl("/api/v1/machines/52:54:00:00:00:01", *READ)).status == 404
    assert (await env.curl("/api/v1/machines/zz", *READ)).status == 400


async def _host(env: Env, state: str, token: str | None = None) -> None:
    await env.sql("INSERT INTO images(name, version, path, created) VALUES ('base', 1, '/i/base/v1', 0), "
                  "('base', 2, '/i/base/v2', 0)")
    await env.sql("INSERT INTO hosts(name, mac, image, state, created, updated, install_token, running_version) "
                  "VALUES ('node01', ?, 'base', ?, 0, 0, ?, 1)", (MAC, state, token))


async def test_assigned_host_gets_the_installer_with_a_durable_token(env: Env) -> None:
    await _host(env, "assigned")
    script = (await env.curl(f"/boot/{MAC}.ipxe")).body.decode()
    kernel = next(line for line in script.splitlines() if line.startswith("kernel "))
    assert f"{env.base}/boot/files/installer/vmlinuz" in kernel
    assert "IMAGESERVER=127.0.0.1 " in kernel and "HOSTNAME=node01 " in kernel
    assert "IMAGE=base VERSION=2 " in kernel and f"MAC={MAC} " in kernel and "console=ttyS0" in kernel
    assert "INSTALL_TOKEN" not in kernel, "anyone can fetch this file: it carries no token"
    nonce = kernel.split("INSTALL_NONCE=")[1].split()[0]
    stored = env.store.read_one("SELECT install_token, last_seen FROM hosts WHERE name='node01'")
    assert stored is not None and stored[0] and stored[0] not in script
    assert nonce == fetch_nonce(stored[0], MAC, "127.0.0.1"), "the nonce is the stored token's, for this address"
    # The next boot (a retry) gets the same token, so the same nonce.
    again = (await env.curl(f"/boot/{MAC}.ipxe")).body.decode()
    assert f"INSTALL_NONCE={nonce} " in again


async def test_existing_install_token_is_used(env: Env) -> None:
    await _host(env, "installing", token="abc123")
    script = (await env.curl(f"/boot/{MAC}.ipxe")).body.decode()
    assert f"INSTALL_NONCE={fetch_nonce('abc123', MAC, '127.0.0.1')} " in script and "abc123" not in script


@pytest.mark.parametrize("state", ["installed", "failed"])
async def test_installed_or_failed_host_boots_local(env: Env, state: str) -> None:
    await _host(env, state)
    script = (await env.curl(f"/boot/{MAC}.ipxe")).body.decode()
    assert "sanboot --no-describe --drive 0x80 ||" in script
    assert "kernel " not in script


async def test_counters_count_boot_scripts_by_kind(env: Env) -> None:
    await env.curl(f"/boot/{MAC}.ipxe")
    await env.curl("/boot/files/../x")
    counters = env.server.status()["counters"]
    assert counters["boot_scripts"] == 1 and counters["boot_wait"] == 1
    assert counters["refused_paths"] == 1
    assert counters["requests"] == 2


# --- static boot files ---------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["undionly.kpxe", "installer/vmlinuz"])
async def test_files_are_byte_identical(env: Env, name: str) -> None:
    r = await env.curl(f"/boot/files/{name}")
    original = (env.root / name).read_bytes()
    assert r.status == 200
    assert int(r.headers["content-length"]) == len(original)
    assert r.body == original


async def test_head_gives_the_size_without_a_body(env: Env) -> None:
    r = await env.curl("/boot/files/installer/vmlinuz", "-I")
    assert r.status == 200
    assert int(r.headers["content-length"]) == (env.root / "installer/vmlinuz").stat().st_size
    # With -I curl writes the headers where the body would go: nothing may follow them.
    assert r.body.startswith(b"HTTP/1.1 200") and r.body.endswith(b"\r\n\r\n")


async def test_single_range(env: Env) -> None:
    r = await env.curl("/boot/files/installer/vmlinuz", "-r", "1000-1999")
    data = (env.root / "installer/vmlinuz").read_bytes()
    assert r.status == 206
    assert r.headers["content-range"] == f"bytes 1000-1999/{len(data)}"
    assert r.body == data[1000:2000]
    tail = await env.curl("/boot/files/installer/vmlinuz", "-r", "-10")
    assert tail.status == 206 and tail.body == data[-10:]


async def test_unsatisfiable_range_is_416(env: Env) -> None:
    r = await env.curl("/boot/files/undionly.kpxe", "-r", "99999999-")
    assert r.status == 416


async def test_missing_file_and_directory_are_404(env: Env) -> None:
    assert (await env.curl("/boot/files/nothing.here")).status == 404
    assert (await env.curl("/boot/files/installer")).status == 404
    assert (await env.curl("/boot/files/installer/")).status == 404


TRAVERSALS = [
    "/boot/files/../../../../etc/passwd",
    "/boot/files/installer/../../secret",
    "/boot/files/..%2F..%2Fsecret",
    "/boot/files/..%2f..%2f..%2f..%2fetc%2fpasswd",
    "/boot/files/%2e%2e/%2e%2e/secret",
    "/boot/files/%2E%2E/%2E%2E/%2E%2E/%2E%2E/etc/passwd",
    "/boot/files/.%2e/.%2e/secret",
    "/boot/files/undionly.kpxe%00.png",
    "/boot/files/%00",
    "/boot/files/..\\..\\secret",
    "/boot/files/..%5C..%5Csecret",
    "/boot/files//etc/passwd",
    "/boot/files/%2Fetc%2Fpasswd",
    "/boot/files/escape",
    "/boot/files/outdir/secret",
    "/boot/files/./escape",
    "/boot/../../etc/passwd",
    "/../../../etc/passwd",
    "/api/v1/../../boot/files/escape",
]


@pytest.mark.parametrize("target", TRAVERSALS)
async def test_traversal_is_refused(env: Env, target: str) -> None:
    r = await env.curl(target)
    assert r.status in (400, 404), f"{target} -> {r.status}"
    assert b"root:" not in r.body


# --- API: status, methods, token -----------------------------------------------------------------

async def test_status_is_open_and_read_only(env: Env) -> None:
    r = await env.curl("/api/v1/status")
    assert r.status == 200
    doc = r.json()
    assert doc["version"] == "test"  # type: ignore[index]
    assert doc["services"]["http"]["state"] == "running"  # type: ignore[index]
    for method in ("POST", "PUT", "DELETE", "PATCH"):
        denied = await env.curl("/api/v1/status", "-X", method, "-H", f"Authorization: Bearer {TOKEN}")
        assert denied.status == 405, method
        assert denied.json() == {"error": "Method Not Allowed"}


async def test_post_needs_the_admin_token(env: Env) -> None:
    assert (await env.curl("/api/v1/reload", "-X", "POST")).status == 401
    wrong = await env.curl("/api/v1/reload", "-X", "POST", "-H", "Authorization: Bearer nope")
    assert wrong.status == 401
    assert wrong.headers["www-authenticate"].startswith("Bearer")
    assert env.reloads == []
    ok = await env.curl("/api/v1/reload", "-X", "POST", "-H", f"Authorization: Bearer {TOKEN}")
    assert ok.status == 202
    assert env.reloads == [1]


async def test_unknown_api_path_is_a_json_404(env: Env) -> None:
    r = await env.curl("/api/v1/nothing")
    assert r.status == 404
    assert "error" in r.json()  # type: ignore[operator]


async def test_openapi_document_is_served(env: Env) -> None:
    doc = (await env.curl("/api/v1/openapi.json", *READ)).json()
    assert "/api/v1/status" in doc["paths"]  # type: ignore[index]


@pytest.mark.parametrize("target", [
    b"http://evil/boot/files/../../secret",  # absolute-form: refused, not resolved against the root
    b"/boot/files/undionly.kpxe\x00",  # a raw NUL (curl cannot send one)
    b"/boot/files/..\\..\\secret",
    b"*",
])
async def test_raw_request_targets_curl_cannot_send(env: Env, target: bytes) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", env.server.port)
    writer.write(b"GET " + target + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    response = await reader.read()
    writer.close()
    status = int(response.split(b" ", 2)[1])
    assert status in (400, 404), response[:200]
    assert b"root:" not in response
