"""The real daemon on a switched lab LAN (lab.star) with one image and hosts installing it,
for the BitTorrent transport's system test and bench/fanout.py. Not a test module.

`fetch()` runs the installer's own fetch step (appliance.images.autoinstall.fetch_script: the pull_image
of every autoinstall script, aria2c and/or rsync) in a machine's namespace, with that host's variables
as GET /install/<mac>/script would give them.
"""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from appliance.images.autoinstall import ScriptSettings, fetch_script
from domain import install_events
from domain.hosts import new_host_op
from lab.netns import Lab, Proc
from lab.star import Machine, Star, star
from state import credentials, installs
from state.db import connect, db_path
from state.images import ImageVersion, insert_version
from tests.system._daemon import API_PORT, Imageserver

RSYNC_PORT = 8873
IMAGE = "web"


def mac_of(i: int) -> str:
    return f"52:54:00:16:{i // 256:02x}:{i % 256:02x}"


@dataclass
class World:
    lab: Lab
    star: Star
    server: Imageserver
    script: Path
    hosts: dict[int, str] = field(default_factory=dict)  # client index -> host name

    @property
    def base(self) -> str:
        return f"http://{self.star.server.ip}:{API_PORT}"

    def token(self, name: str) -> str:
        with self.server.db() as conn:
            return str(conn.execute("SELECT install_token FROM hosts WHERE name = ?", (name,)).fetchone()[0])

    def fetch_env(self, i: int, transport: str, target: Path, **extra: str) -> dict[str, str]:
        name = self.hosts[i]
        token = self.token(name)
        return {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "TRANSPORT": transport, "TARGET": str(target),
                "IMAGESERVER": str(self.star.server.ip), "IMAGESERVER_URL": self.base, "MAC": mac_of(i),
                "HOSTNAME": name, "INSTALL_TOKEN": token, "RSYNC_USER": name,
                "RSYNC_PASSWORD": credentials.rsync_password(token), "RSYNC_PORT": str(RSYNC_PORT),
                "IMAGE": IMAGE, "VERSION": "1", "BT_SEED_SECONDS": "2",
                # multicast: the provisioning NIC, and each machine's own working directory (they share /tmp)
                "IFACE": self.star.clients[i].iface, "MULTICAST_DIR": f"{target}.mc", **extra}

    def due_only(self, n: int) -> None:
        """Only hosts 0..n-1 due to install (the rest installed): a multicast session waits for the hosts
        due to install its image, so a run of n machines must have exactly n due. Tokens are kept."""
        now = time.time()
        tokens = {name: self.token(name) for name in self.hosts.values()}
        conn = connect(db_path(self.server.state_dir))
        try:
            for i, name in self.hosts.items():
                if i < n:
                    installs.reinstall_op(name, tokens[name], now)(conn)
                else:
                    install_events.record_op(name, mac_of(i), now, "done", None)(conn)
            conn.commit()
        finally:
            conn.close()
        # The rsync daemon's credentials follow the hosts table within its refresh (2 s): wait for them, so
        # the next run's machines are not refused.
        secrets = self.server.state_dir / "rsyncd.secrets"
        deadline = time.monotonic() + 30
        while len(secrets.read_text().splitlines()) != min(n, len(self.hosts)):
            if time.monotonic() > deadline:
                raise RuntimeError(f"rsyncd never took {n} hosts due")
            time.sleep(0.2)

    def start_fetch(self, i: int, transport: str, target: Path, **extra: str) -> Proc:
        return self.star.clients[i].ns.popen(["sh", str(self.script)], env=self.fetch_env(i, transport, target,
                                                                                          **extra))

    def curl(self, machine: Machine, path: str, *args: str) -> tuple[int, bytes]:
        out = self.lab.tmp_path("curl")
        r = machine.ns.run(["curl", "-s", "-g", "--path-as-is", "--max-time", "10", "-o", str(out), "-w",
                            "%{http_code}", *args, self.base + path], check=False, timeout=20)
        return int(r.stdout or 0), out.read_bytes() if out.exists() else b""


def make_world(lab: Lab, tree: Path, clients: int, installing: int, mbit: float | None = None,
               multicast: bool = False) -> World:
    """`clients` machines; the first `installing` of them are hosts due to install image web v1 (= tree);
    with `multicast`, the daemon's udpcast sessions are on ([multicast] enabled, its defaults otherwise)."""
    s = star(lab, clients, mbit)
    server = Imageserver(s.server.ns, s.server.iface, s.server.ip, s.subnet,
                         extra=f"\n[rsyncd]\nport = {RSYNC_PORT}\n")
    if multicast:
        text = server.config.read_text()
        server.config.write_text(text.replace("[http]\n", "[multicast]\nenabled = true\n\n[http]\n"))
    images = server.state_dir / "images" / IMAGE
    images.mkdir(parents=True)
    os.rename(tree, images / "v1")
    now = time.time()
    conn = connect(db_path(server.state_dir))
    hosts: dict[int, str] = {}
    try:
        insert_version(conn, ImageVersion(IMAGE, 1, str(images / "v1"), now, source="test"))
        for i in range(installing):
            hosts[i] = f"node{i}"
            new_host_op(hosts[i], mac_of(i), IMAGE, s.clients[i].ip, now)(conn)
        conn.commit()
    finally:
        conn.close()
    script = lab.tmp_path("fetch.sh")
    script.write_text(fetch_script(IMAGE, 1, ScriptSettings(rsync_port=RSYNC_PORT)))
    server.start()
    world = World(lab, s, server, script, hosts)
    deadline = time.monotonic() + 15
    while world.server.api("/api/v1/status")["services"]["rsyncd"]["state"] != "running":
        if time.monotonic() > deadline:
            raise RuntimeError("rsyncd never ran")
        time.sleep(0.1)
    return world


def run(argv: list[str]) -> None:
    subprocess.run(argv, check=True, capture_output=True)
