"""The imageserver for DHCP system tests: a config for one lab segment, driven by lab.daemon.Daemon.

Not a test module: the DHCP system tests share it. The config file and the state dir live in the
lab's tmp dir; the CLI (`imageserver leases`, `reservations`, ...) runs in the same namespace, so it
reaches the daemon's API on 127.0.0.1 exactly as an operator on the appliance would. [https] is on (a
self-signed certificate made at the first start): a role token from another namespace goes there.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any

from lab.daemon import Daemon, daemon_env
from lab.netns import Namespace, Proc

REPO = Path(__file__).resolve().parents[2]
API_PORT = 8080
HTTPS_PORT = 8443  # [https] on, as `imageserver init` writes it: role tokens from the LAN travel over TLS


def env() -> dict[str, str]:
    return daemon_env()


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
    state_dir: Path = field(init=False)
    config: Path = field(init=False)
    daemon: Daemon = field(init=False)

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

[https]
enabled = true
port = {HTTPS_PORT}
""")
        self.daemon = Daemon(self.ns, self.config, self.state_dir, api_port=API_PORT)

    @property
    def proc(self) -> Proc | None:
        return self.daemon.proc

    def pool_range(self) -> tuple[IPv4Address, IPv4Address]:
        return self.subnet.network_address + self.pool[0], self.subnet.network_address + self.pool[1]

    def start(self, timeout: float = 20, *extra: str, prefix: Sequence[str] = ()) -> Imageserver:
        """Start `imageserver serve` and wait for its ready line."""
        self.daemon.start(*extra, prefix=prefix, timeout=timeout)
        return self

    def spawn(self, *extra: str, prefix: Sequence[str] = ()) -> Proc:
        return self.daemon.spawn(*extra, prefix=prefix)

    def kill9(self) -> None:
        self.daemon.kill9()

    def run_cli(self, *args: str, check: bool = False) -> subprocess.CompletedProcess[str]:
        """`imageserver ARGS` in the server namespace."""
        return self.daemon.run_cli(*args, check=check)

    def cli(self, *args: str) -> str:
        return self.run_cli(*args, check=True).stdout

    def cli_json(self, *args: str) -> Any:
        return json.loads(self.cli(*args, "--json"))

    def api(self, path: str) -> Any:
        return self.daemon.api(path)

    def db(self) -> sqlite3.Connection:
        return self.daemon.db()

    def dhcp_counters(self) -> dict[str, int]:
        return self.api("/api/v1/status")["services"]["dhcp"]["counters"]

    def log(self) -> str:
        return self.daemon.log()
