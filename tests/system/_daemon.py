"""The real imageserver daemon (`python3 -m appliance.cli serve`) in a lab namespace, for DHCP system tests.

Not a test module: the DHCP system tests share it. The config file and the state dir live in the
lab's tmp dir; the CLI (`imageserver leases`, `reservations`, ...) runs in the same namespace, so it
reaches the daemon's API on 127.0.0.1 exactly as an operator on the appliance would.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any

from lab.netns import LabError, Namespace, Proc

REPO = Path(__file__).resolve().parents[2]
API_PORT = 8080


def env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "PYTHONDONTWRITEBYTECODE": "1"}


@dataclass
class Imageserver:
    ns: Namespace
    interface: str
    address: IPv4Address
    subnet: IPv4Network
    pool: tuple[int, int] = (100, 150)
    lease_time: int = 600
    conflict_probe: bool = False
    mode: str = "authoritative"
    extra: str = ""  # more TOML appended to [dhcp] (e.g. [[dhcp.subnets]] tables)
    proc: Proc | None = None
    state_dir: Path = field(init=False)
    config: Path = field(init=False)

    def __post_init__(self) -> None:
        self.state_dir = self.ns.lab.tmp_path("state")
        self.config = self.ns.lab.tmp_path("imageserver.toml")
        first = self.subnet.network_address + self.pool[0]
        last = self.subnet.network_address + self.pool[1]
        self.config.write_text(f"""
[appliance]
state_dir = "{self.state_dir}"
interface = "{self.interface}"
address = "{self.address}"
log_level = "debug"

[dhcp]
mode = "{self.mode}"
subnet = "{self.subnet}"
pool = "{first}-{last}"
router = "{self.address}"
dns = ["{self.address}"]
lease_time = {self.lease_time}
conflict_probe = {str(self.conflict_probe).lower()}
{self.extra}

[tftp]
enabled = false

[http]
listen = "0.0.0.0"
port = {API_PORT}
""")

    def pool_range(self) -> tuple[IPv4Address, IPv4Address]:
        return self.subnet.network_address + self.pool[0], self.subnet.network_address + self.pool[1]

    def start(self, timeout: float = 20) -> Imageserver:
        """Start `imageserver serve` and wait for its ready line."""
        self.proc = self.ns.popen([sys.executable, "-m", "appliance.cli", "serve", "--config", str(self.config)],
                                  env=env())
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            out = self.proc.output()
            if "event=ready" in out:
                return self
            if not self.proc.alive():
                raise LabError(f"imageserver exited ({self.proc.popen.returncode}): {out[-3000:]}")
            time.sleep(0.05)
        raise LabError(f"imageserver not ready after {timeout} s: {self.proc.output()[-3000:]}")

    def kill9(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)  # the `ip netns exec` wrapper execs python: same pid
        self.proc.wait(5)

    def run_cli(self, *args: str, check: bool = False) -> subprocess.CompletedProcess[str]:
        """`imageserver ARGS --config <ours>` in the server namespace."""
        return self.ns.run([sys.executable, "-m", "appliance.cli", *args, "--config", str(self.config)],
                           env=env(), check=check, timeout=30)

    def cli(self, *args: str) -> str:
        return self.run_cli(*args, check=True).stdout

    def cli_json(self, *args: str) -> Any:
        return json.loads(self.cli(*args, "--json"))

    def api(self, path: str) -> Any:
        out = self.ns.run(["curl", "-sf", f"http://127.0.0.1:{API_PORT}{path}"]).stdout
        return json.loads(out)

    def db(self) -> sqlite3.Connection:
        conn = sqlite3.connect(f"file:{self.state_dir / 'imageserver.db'}?mode=ro", uri=True, timeout=10)
        return conn

    def dhcp_counters(self) -> dict[str, int]:
        return self.api("/api/v1/status")["services"]["dhcp"]["counters"]

    def log(self) -> str:
        return self.proc.output() if self.proc is not None else ""
