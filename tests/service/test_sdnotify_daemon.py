"""The real sd_notify protocol against `imageserver serve`: READY after the ports listen, watchdog pings from the
loop, STOPPING on SIGTERM, and no pings while the process is stopped (a wedged loop gets no free pass)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _recv_all(sock: socket.socket, seconds: float) -> list[str]:
    """Every notify message that arrives within `seconds`."""
    out: list[str] = []
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            out.append(sock.recv(4096).decode())
        except TimeoutError:
            break
    return out


def test_ready_watchdog_stopping(tmp_path: Path) -> None:
    port = _free_port()
    cfg = tmp_path / "imageserver.toml"
    cfg.write_text(f"""
[appliance]
state_dir = "{tmp_path / 'state'}"
[tftp]
enabled = false
[rsyncd]
enabled = false  # no listener on the host's 0.0.0.0:873
[http]
listen = "127.0.0.1"
port = {port}
""")
    notify = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(notify))
    env = {**os.environ, "NOTIFY_SOCKET": str(notify), "WATCHDOG_USEC": "1000000"}
    env.pop("WATCHDOG_PID", None)
    log = (tmp_path / "daemon.log").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "appliance.cli", "serve", "--config", str(cfg)],
                            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        sock.settimeout(30)
        first = sock.recv(4096).decode()
        assert "READY=1" in first, first
        assert "STATUS=" in first and "http running" in first
        # READY means listening: the HTTP port accepts a connection right now.
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            pass
        # WATCHDOG_USEC=1s -> a ping about every 0.5 s.
        pings = [m for m in _recv_all(sock, 2.0) if "WATCHDOG=1" in m]
        assert len(pings) >= 3, pings
        # A stopped process (its loop cannot run) sends nothing; the pings resume once it runs again.
        os.kill(proc.pid, signal.SIGSTOP)
        _recv_all(sock, 0.2)  # drain anything sent just before the stop
        assert [m for m in _recv_all(sock, 1.5) if "WATCHDOG=1" in m] == []
        os.kill(proc.pid, signal.SIGCONT)
        assert [m for m in _recv_all(sock, 1.5) if "WATCHDOG=1" in m]
        os.kill(proc.pid, signal.SIGTERM)
        tail = _recv_all(sock, 5.0)
        assert any("STOPPING=1" in m for m in tail), tail
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        sock.close()
        log.close()
