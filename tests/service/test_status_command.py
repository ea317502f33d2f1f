"""The real daemon on loopback: /api/v1/status via curl, and `imageserver status` (table, --json, not running)."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _cli(cfg: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "appliance.cli", *args, "--config", str(cfg)], cwd=ROOT,
                          capture_output=True, text=True, timeout=30)


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[tuple[Path, int]]:
    port = _free_port()
    cfg = tmp_path / "imageserver.toml"
    cfg.write_text(f"""
[appliance]
state_dir = "{tmp_path / 'state'}"
[tftp]
enabled = false
[rsyncd]
enabled = false
[http]
listen = "127.0.0.1"
port = {port}
""")
    log = tmp_path / "daemon.log"
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "appliance.cli", "serve", "--config", str(cfg)], cwd=ROOT,
                                stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 20
        while "event=ready" not in log.read_text():
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        yield cfg, port
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def test_status_document_over_curl(daemon: tuple[Path, int]) -> None:
    _, port = daemon
    subprocess.run(["curl", "-sf", "-o", "/dev/null", f"http://127.0.0.1:{port}/boot/files/undionly.kpxe"],
                   check=True, timeout=10)
    out = subprocess.run(["curl", "-sf", f"http://127.0.0.1:{port}/api/v1/status"], capture_output=True,
                         text=True, check=True, timeout=10).stdout
    doc = json.loads(out)
    assert doc["version"]
    assert doc["uptime"] > 0
    http = doc["services"]["http"]
    assert http["state"] == "running"
    assert http["listen"] == [f"127.0.0.1:{port}/tcp"]
    assert http["counters"]["files"] == 1
    assert http["counters"]["bytes_out"] == Path("/usr/lib/ipxe/undionly.kpxe").stat().st_size
    assert doc["services"]["bootfiles"]["files"]["undionly.kpxe"]["present"] is True
    assert set(doc["counts"]) >= {"leases", "reservations", "hosts", "machines", "images"}


def test_status_command_table_and_json(daemon: tuple[Path, int]) -> None:
    cfg, port = daemon
    table = _cli(cfg, "status")
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].startswith("imageserver ")
    http_row = next(line for line in lines if line.startswith("http "))
    assert "running" in http_row and f"127.0.0.1:{port}/tcp" in http_row
    assert any(line.startswith("counts ") and "hosts 0" in line for line in lines)
    assert "installer/vmlinuz missing" in table.stdout  # no installer built in this state dir
    as_json = _cli(cfg, "status", "--json")
    assert as_json.returncode == 0
    assert json.loads(as_json.stdout)["services"]["http"]["state"] == "running"


def test_status_sees_an_installer_built_while_the_daemon_runs(daemon: tuple[Path, int]) -> None:
    """mkbootenv writes state/boot/installer/ into a running daemon's boot root: no restart to notice it."""
    cfg, _ = daemon
    table = _cli(cfg, "status").stdout
    assert "installer/initrd.img missing" in table
    assert "installers   none (build one with: imageserver mkbootenv)" in table.splitlines(), table
    installer = cfg.parent / "state" / "boot" / "installer"
    installer.mkdir(parents=True, exist_ok=True)
    (installer / "vmlinuz").write_bytes(b"kernel")
    assert "installer/initrd.img missing" in _cli(cfg, "status").stdout
    assert "installer/vmlinuz missing" not in _cli(cfg, "status").stdout
    (installer / "initrd.img").write_bytes(b"initrd")
    table = _cli(cfg, "status")
    assert "mkbootenv" not in table.stdout, table.stdout
    assert "installers   amd64 (installer/)" in table.stdout.splitlines(), table.stdout
    doc = json.loads(_cli(cfg, "status", "--json").stdout)
    assert doc["services"]["bootfiles"]["installer"]["missing"] == []
    assert doc["services"]["bootfiles"]["installers"] == {
        "amd64": {"kernel": "installer/vmlinuz", "initrd": "installer/initrd.img"}}
    # An arm64 installer beside it (mkbootenv --arch arm64): both listed, each once both its files are there.
    arm64 = installer.with_name("installer-arm64")
    arm64.mkdir()
    (arm64 / "vmlinuz").write_bytes(b"kernel")
    doc = json.loads(_cli(cfg, "status", "--json").stdout)
    assert set(doc["services"]["bootfiles"]["installers"]) == {"amd64"}
    (arm64 / "initrd.img").write_bytes(b"initrd")
    doc = json.loads(_cli(cfg, "status", "--json").stdout)
    assert doc["services"]["bootfiles"]["installers"]["arm64"] == {
        "kernel": "installer-arm64/vmlinuz", "initrd": "installer-arm64/initrd.img"}
    assert set(doc["services"]["bootfiles"]["installers"]) == {"amd64", "arm64"}
    # The table shows them per architecture too (what --json has as installers).
    table = _cli(cfg, "status")
    assert "installers   amd64 (installer/)   arm64 (installer-arm64/)" in table.stdout.splitlines(), table.stdout


def test_status_command_when_the_daemon_is_not_running(tmp_path: Path) -> None:
    cfg = tmp_path / "imageserver.toml"
    cfg.write_text(f'[appliance]\nstate_dir = "{tmp_path}"\n[http]\nlisten = "127.0.0.1"\nport = {_free_port()}\n')
    result = _cli(cfg, "status")
    assert result.returncode == 5  # the daemon is needed and does not answer
    assert "not running" in result.stderr
    assert result.stdout == ""
