"""The daemon process: starts with a valid config, survives a bad SIGHUP reload, stops cleanly on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _config(tmp: Path, extra: str = "") -> Path:
    cfg = tmp / "imageserver.toml"
    cfg.write_text(f"""
[appliance]
state_dir = "{tmp / "state"}"
[tftp]
enabled = false
[rsyncd]
enabled = false  # no listener on the host's 0.0.0.0:873
[http]
enabled = false
{extra}
""")
    return cfg


def _wait_for(proc: subprocess.Popen[str], log: Path, text: str, timeout: float = 20.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        content = log.read_text()
        if text in content:
            return content
        if proc.poll() is not None:
            raise AssertionError(f"daemon exited with {proc.returncode}: {content}")
        time.sleep(0.05)
    raise AssertionError(f"{text!r} not logged within {timeout}s: {log.read_text()}")


def test_serve_reload_and_stop(tmp_path: Path) -> None:
    cfg = _config(tmp_path)
    log = tmp_path / "daemon.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "appliance.cli", "serve", "--config", str(cfg)],
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
        )
    try:
        _wait_for(proc, log, "event=ready")
        state = tmp_path / "state"
        assert (state / "imageserver.db").exists()
        token = state / "admin.token"
        assert token.stat().st_mode & 0o777 == 0o600
        # A broken file on SIGHUP is reported and ignored: the daemon keeps running.
        cfg.write_text(cfg.read_text() + "\n[http]\nport = 'x'\n")
        os.kill(proc.pid, signal.SIGHUP)
        _wait_for(proc, log, "event=reload-failed")
        assert proc.poll() is None
        # A good file is taken.
        _config(tmp_path)
        os.kill(proc.pid, signal.SIGHUP)
        _wait_for(proc, log, "event=reloaded")
        os.kill(proc.pid, signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
        assert "event=stopped code=0" in log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_token_survives_restart(tmp_path: Path) -> None:
    from appliance.token import ensure_token

    first = ensure_token(tmp_path)
    assert ensure_token(tmp_path) == first
    assert len(first) >= 32
