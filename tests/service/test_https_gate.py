"""The HTTPS listener on loopback: the same routes over TLS, and handshakes under the connection gate (a
client that connects and never says hello holds a slot of its address, is capped and swept like an idle
connection)."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

from appliance import tls
from appliance.config import parse_config
from services.http import HttpServer, TlsListener
from services.http_gate import ConnectionLimits


async def _tls_get(port: int, source: str, path: str = "/boot/files/f") -> bytes:
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client.check_hostname, client.verify_mode = False, ssl.CERT_NONE
    reader, writer = await asyncio.wait_for(asyncio.open_connection(
        "127.0.0.1", port, ssl=client, local_addr=(source, 0)), 5)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    data = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    return data


async def _closed_by_server(reader: asyncio.StreamReader, timeout: float) -> bool:
    try:
        return await asyncio.wait_for(reader.read(1), timeout) == b""
    except TimeoutError:
        return False
    except ConnectionError:
        return True


async def test_tls_serves_the_routes_and_silent_handshakes_are_capped_and_swept(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"boot file")
    certificate = tls.ensure(parse_config({"appliance": {"state_dir": str(tmp_path / "state")},
                                           "https": {"enabled": True}}))
    listener = TlsListener("127.0.0.1", 0, tls.server_context(certificate), certificate.fingerprint)
    server = HttpServer(host="127.0.0.1", port=0, boot_root=tmp_path, tls=listener,
                        limits=ConnectionLimits(max_connections=100, max_per_client=4, idle_timeout=1,
                                                header_timeout=1))
    await server.start()
    try:
        assert server.tls_port and server.status()["https"]["fingerprint"] == certificate.fingerprint
        assert (await _tls_get(server.tls_port, "127.0.9.1")).endswith(b"boot file")
        # curl sends its request right behind its TLS 1.3 Finished: decrypted before aiohttp's protocol is
        # attached, it must not be lost (it was, about one request in ten).
        for _ in range(30):
            curl = await asyncio.create_subprocess_exec(
                "curl", "-sk", "--max-time", "5", "-o", "/dev/null", "-w", "%{http_code}",
                f"https://127.0.0.1:{server.tls_port}/boot/files/f", stdout=asyncio.subprocess.PIPE)
            assert (await curl.communicate())[0] == b"200"
        # Ten TCP connections from one address that never start the handshake: four are admitted (and
        # count toward the address's cap), six closed at once; another address is served meanwhile.
        silent = [await asyncio.open_connection("127.0.0.1", server.tls_port, local_addr=("127.0.9.2", 0))
                  for _ in range(10)]
        await asyncio.sleep(0.3)
        closed = [await _closed_by_server(r, 0.1) for r, _ in silent]
        assert closed.count(False) == 4, closed
        assert (await _tls_get(server.tls_port, "127.0.9.3")).endswith(b"boot file")
        assert server.status()["counters"]["connections_refused_per_client"] == 6
        # The admitted ones do not hold their slots: the handshake timeout (or the idle sweep) ends them.
        assert all([await _closed_by_server(r, 3.5) for r, _ in silent])
        assert (await _tls_get(server.tls_port, "127.0.9.2")).endswith(b"boot file")
        for _ in range(50):  # the last request's connection is being closed
            if server.status()["open_connections"] == 0:
                break
            await asyncio.sleep(0.1)
        assert server.status()["open_connections"] == 0
    finally:
        for _, w in silent:
            w.close()
        await server.stop()
