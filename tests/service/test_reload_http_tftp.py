"""SIGHUP reaches HTTP and TFTP too: `imageserver serve` on loopback takes lower per-client caps at once
(a real curl over HTTP still gets through, a third idle connection from the same address is refused; a
second TFTP transfer from the same address while one is held is answered "server busy"), and a config
that moves a bound port is refused whole: the error names the key, the old port keeps serving."""

from __future__ import annotations

import os
import signal
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

from tests.service.test_dns_daemon import free_port, wait_for

ROOT = Path(__file__).resolve().parents[2]


def config(tmp: Path, http_port: int, tftp_port: int, per_client: int) -> Path:
    cfg = tmp / "imageserver.toml"
    cfg.write_text(f"""
[appliance]
state_dir = "{tmp / "state"}"
address = "127.0.0.1"
[http]
listen = "127.0.0.1"
port = {http_port}
max_connections_per_client = {per_client}
[tftp]
port = {tftp_port}
max_transfers_per_client = {per_client}
[rsyncd]
enabled = false
""")
    return cfg


def curl_status(port: int) -> str:
    return subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-m", "5",
                           f"http://127.0.0.1:{port}/api/v1/status"], capture_output=True, text=True).stdout


def idle_connection_closed(port: int, held: list[socket.socket]) -> bool:
    """Open one more idle connection: True if the server closes it at once (refused by the per-client cap)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    held.append(s)
    s.settimeout(1.0)
    try:
        return s.recv(1) == b""
    except TimeoutError:
        return False  # admitted: it waits for a request
    except ConnectionResetError:
        return True


def rrq(sock: socket.socket, port: int, name: str) -> bytes:
    sock.sendto(b"\x00\x01" + name.encode() + b"\x00octet\x00", ("127.0.0.1", port))
    data, _ = sock.recvfrom(4096)
    return data


def test_sighup_gives_http_and_tftp_new_caps_and_refuses_a_moved_port(tmp_path: Path) -> None:
    http_port, tftp_port = free_port(), free_port()
    cfg = config(tmp_path, http_port, tftp_port, per_client=8)
    log = tmp_path / "daemon.log"
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "appliance.cli", "serve", "--config", str(cfg)],
                                cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, text=True)
    held: list[socket.socket] = []
    try:
        wait_for(proc, log, "event=ready", timeout=60)
        boot_file = next(p.name for p in (tmp_path / "state/boot").iterdir() if p.is_file())
        assert curl_status(http_port) == "200"
        assert not idle_connection_closed(http_port, held) and not idle_connection_closed(http_port, held)
        assert not idle_connection_closed(http_port, held)  # 3 of 8
        for s in held:
            s.close()
        held.clear()

        config(tmp_path, http_port, tftp_port, per_client=1)
        os.kill(proc.pid, signal.SIGHUP)
        wait_for(proc, log, "event=reloaded")
        assert not idle_connection_closed(http_port, held)  # 1 of 1
        assert idle_connection_closed(http_port, held), "the new per-client cap of 1 was not applied"
        for s in held:
            s.close()
        held.clear()
        time.sleep(0.5)
        assert curl_status(http_port) == "200"
        # TFTP: hold one transfer (DATA 1 never acknowledged); a second one from 127.0.0.1 is busy.
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as a, socket.socket(socket.AF_INET,
                                                                                   socket.SOCK_DGRAM) as b:
            a.settimeout(5)
            b.settimeout(5)
            first = rrq(a, tftp_port, boot_file)
            assert first[:4] == b"\x00\x03\x00\x01", first[:4]
            second = rrq(b, tftp_port, boot_file)
            assert second[:2] == b"\x00\x05" and b"busy" in second, second
            assert struct.unpack("!H", second[2:4])[0] == 0

        # A moved port is refused whole and named; the running ports keep serving.
        config(tmp_path, free_port(), tftp_port, per_client=8)
        os.kill(proc.pid, signal.SIGHUP)
        wait_for(proc, log, "event=reload-failed")
        assert "http.port" in log.read_text().split("event=reload-failed", 1)[1].splitlines()[0]
        assert curl_status(http_port) == "200"
        assert not idle_connection_closed(http_port, held)
        assert idle_connection_closed(http_port, held), "the refused config's per-client cap was applied"
        os.kill(proc.pid, signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    finally:
        for s in held:
            s.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
