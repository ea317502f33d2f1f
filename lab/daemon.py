"""The real imageserver daemon (`imageserver serve`) inside a lab namespace: the one driver that the system
tests, the e2e tests and `make demo` share.

The daemon runs under this interpreter (`sys.executable`, the project's venv) with the repository on
PYTHONPATH; its CLI runs in the same namespace, so it reaches the daemon's API on 127.0.0.1 exactly as an
operator on the appliance would.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

from lab.netns import LabError, Namespace, Proc

REPO = Path(__file__).resolve().parents[1]
READY_TEXT = "event=ready"
READY_JSON = '"event": "ready"'


def daemon_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of every project process a lab starts: ours on PYTHONPATH, no stray bytecode."""
    return {**os.environ, "PYTHONPATH": str(REPO), "PYTHONDONTWRITEBYTECODE": "1", **(extra or {})}


def serve_argv(config: Path, *extra: str, prefix: Sequence[str] = ()) -> list[str]:
    """`[prefix...] <this interpreter> -m appliance.cli serve --config CONFIG [extra...]`."""
    return [*prefix, sys.executable, "-m", "appliance.cli", "serve", "--config", str(config), *extra]


@dataclass
class Daemon:
    """One `imageserver serve` process in `ns`, configured by the file `config`, keeping state in `state_dir`."""

    ns: Namespace
    config: Path
    state_dir: Path
    api_port: int = 80
    proc: Proc | None = None

    def env(self) -> dict[str, str]:
        return daemon_env()

    def spawn(self, *extra: str, prefix: Sequence[str] = ()) -> Proc:
        """Start the daemon without waiting for it (a test that kills it while it starts)."""
        self.proc = self.ns.popen(serve_argv(self.config, *extra, prefix=prefix), env=self.env())
        return self.proc

    def start(self, *extra: str, prefix: Sequence[str] = (), timeout: float = 20) -> Self:
        """Start the daemon and wait for its ready line (text or JSON log format)."""
        self.spawn(*extra, prefix=prefix)
        self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = 20) -> None:
        proc = self._running()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            out = proc.output()
            if READY_TEXT in out or READY_JSON in out:
                return
            if not proc.alive():
                raise LabError(f"imageserver exited ({proc.popen.returncode}): {out[-3000:]}")
            time.sleep(0.05)
        raise LabError(f"imageserver not ready after {timeout} s: {proc.output()[-3000:]}")

    def kill9(self) -> None:
        proc = self._running()
        os.kill(proc.pid, signal.SIGKILL)  # the `ip netns exec` wrapper execs python: same pid
        proc.wait(5)

    def stop(self, timeout: float = 20) -> int:
        """SIGTERM, as systemd stops it; the exit code."""
        proc = self._running()
        if proc.alive():
            os.kill(proc.pid, signal.SIGTERM)
        return proc.wait(timeout)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.alive()

    def run_cli(self, *args: str, check: bool = False, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        """`imageserver --config <ours> ARGS` in the daemon's namespace."""
        return self.ns.run([sys.executable, "-m", "appliance.cli", "--config", str(self.config), *args],
                           env=self.env(), check=check, timeout=timeout)

    def api_url(self, path: str) -> str:
        port = "" if self.api_port == 80 else f":{self.api_port}"
        return f"http://127.0.0.1{port}{path}"

    def api_text(self, path: str, timeout: float = 10) -> str:
        """GET `path` with curl from inside the namespace, as the appliance's own CLI does (with the admin token:
        reads need a token); the body (curl fails on an HTTP error)."""
        token = self.state_dir / "admin.token"
        auth = ["-H", f"Authorization: Bearer {self.admin_token()}"] if token.exists() else []
        return self.ns.run(["curl", "-sS", "--fail-with-body", "--max-time", str(timeout), *auth, self.api_url(path)],
                           timeout=timeout + 5).stdout

    def api(self, path: str, timeout: float = 10) -> Any:
        return json.loads(self.api_text(path, timeout))

    def admin_token(self) -> str:
        return (self.state_dir / "admin.token").read_text().strip()

    def db(self) -> sqlite3.Connection:
        """The state database, read-only (the daemon is its one writer)."""
        return sqlite3.connect(f"file:{self.state_dir / 'imageserver.db'}?mode=ro", uri=True, timeout=10)

    def log(self) -> str:
        return self.proc.output() if self.proc is not None else ""

    def _running(self) -> Proc:
        if self.proc is None:
            raise LabError("the imageserver was never started")
        return self.proc
