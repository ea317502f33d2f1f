"""`imageserver serve` with [dns] enabled: names resolve through the wiring, follow the store, and SIGHUP."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from ipaddress import IPv4Address
from pathlib import Path

import pytest

from state.db import connect, db_path

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    """A port free for both UDP and TCP on loopback right now."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u, socket.socket() as t:
            u.bind(("127.0.0.1", 0))
            port = u.getsockname()[1]
            try:
                t.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise AssertionError("no port free for both UDP and TCP")


def config(tmp: Path, port: int, domain: str) -> Path:
    cfg = tmp / "imageserver.toml"
    cfg.write_text(f"""
[appliance]
state_dir = "{tmp / "state"}"
address = "127.0.0.1"
domain = "{domain}"
hostname = "imgsrv"
[tftp]
enabled = false
[http]
enabled = false
[rsyncd]
enabled = false
[dns]
enabled = true
port = {port}
ttl = 5
""")
    return cfg


def dig_short(port: int, *args: str) -> list[str]:
    out = subprocess.run(["dig", "@127.0.0.1", "-p", str(port), "+time=2", "+tries=1", "+short", *args],
                         capture_output=True, text=True, timeout=10, check=True).stdout
    return out.split()


def wait_for(proc: subprocess.Popen[str], log: Path, text: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in log.read_text():
            return
        if proc.poll() is not None:
            raise AssertionError(f"daemon exited with {proc.returncode}: {log.read_text()}")
        time.sleep(0.05)
    raise AssertionError(f"{text!r} not logged within {timeout}s: {log.read_text()}")


def test_daemon_serves_dns_from_the_store_and_takes_a_new_domain_on_sighup(tmp_path: Path) -> None:
    port = free_port()
    cfg = config(tmp_path, port, "lab.test")
    log = tmp_path / "daemon.log"
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "appliance.cli", "serve", "--config", str(cfg)],
                                cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, text=True)
    try:
        wait_for(proc, log, "event=ready")
        assert dig_short(port, "imgsrv.lab.test") == ["127.0.0.1"]
        assert dig_short(port, "node1.lab.test") == []
        # A host added by another process (what the CLI does) resolves at once, without a signal.
        conn = connect(db_path(tmp_path / "state"))
        conn.execute("INSERT INTO hosts(name, ip, created, updated) VALUES('node1', ?, 0, 0)",
                     (int(IPv4Address("10.99.0.31")),))
        conn.close()
        assert dig_short(port, "node1.lab.test") == ["10.99.0.31"]
        assert dig_short(port, "-x", "10.99.0.31") == ["node1.lab.test."]
        config(tmp_path, port, "lab2.test")
        os.kill(proc.pid, signal.SIGHUP)
        wait_for(proc, log, "event=reloaded")
        assert dig_short(port, "node1.lab2.test") == ["10.99.0.31"]
        assert dig_short(port, "node1.lab.test") == []  # the old domain is not ours any more: REFUSED
        os.kill(proc.pid, signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.parametrize(("key", "env", "expected"), [
    (None, None, "asyncio"),  # the default
    ("uvloop", None, "uvloop"),  # asked for in the file (uvloop is in the test extras)
    ("auto", None, "uvloop"),  # uvloop because it is installed
    ("uvloop", "asyncio", "asyncio"),  # the environment wins over the file (tests, benches)
])
def test_daemon_runs_on_the_chosen_event_loop(tmp_path: Path, key: str | None, env: str | None,
                                              expected: str) -> None:
    port = free_port()
    cfg = config(tmp_path, port, "lab.test")
    if key is not None:
        cfg.write_text(cfg.read_text().replace("[appliance]\n", f'[appliance]\nevent_loop = "{key}"\n'))
    environ = {k: v for k, v in os.environ.items() if k != "IMAGESERVER_EVENT_LOOP"}
    if env is not None:
        environ["IMAGESERVER_EVENT_LOOP"] = env
    log = tmp_path / "daemon.log"
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "appliance.cli", "serve", "--config", str(cfg)],
                                cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, text=True, env=environ)
    try:
        wait_for(proc, log, "event=ready")
        assert f"event_loop={expected}" in log.read_text()
        assert dig_short(port, "imgsrv.lab.test") == ["127.0.0.1"]
        assert dig_short(port, "+tcp", "imgsrv.lab.test") == ["127.0.0.1"]
        assert dig_short(port, "nosuch.lab.test") == []
        os.kill(proc.pid, signal.SIGHUP)
        wait_for(proc, log, "event=reloaded")
        assert dig_short(port, "-x", "127.0.0.1") == ["imgsrv.lab.test."]
        os.kill(proc.pid, signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
