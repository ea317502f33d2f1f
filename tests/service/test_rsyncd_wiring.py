"""The daemon runs the rsync supervisor from [rsyncd] and serves a version registered by another process
to the host installing it (its rsync user and password, from its address), and to nobody else."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import sqlite3
import time
from ipaddress import IPv4Address
from pathlib import Path

import pytest

from appliance.config import parse_config
from appliance.daemon.daemon import Daemon
from state.credentials import rsync_password
from state.db import connect, db_path
from state.images import ImageVersion, insert_version

pytestmark = pytest.mark.skipif(shutil.which("rsync") is None, reason="rsync is not installed")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_a_version_committed_by_another_connection_is_served_by_the_running_daemon(tmp_path: Path) -> None:
    port = free_port()
    cfg = parse_config({
        "appliance": {"state_dir": str(tmp_path / "state"), "address": "127.0.0.1"},
        "tftp": {"enabled": False}, "http": {"enabled": False},
        "rsyncd": {"port": port, "hosts_allow": ["127.0.0.1"]},
    })
    daemon = Daemon(cfg)
    task = asyncio.create_task(daemon.run())
    try:
        for _ in range(200):
            if daemon.services and daemon.status()["services"].get("rsyncd", {}).get("state") == "running":
                break
            await asyncio.sleep(0.02)
        st = daemon.status()["services"]["rsyncd"]
        assert st["state"] == "running" and st["listen"] == [f"127.0.0.1:{port}/tcp"]
        # What getimage does: a separate connection commits the row (the tree is already in place).
        tree = tmp_path / "state/images/web/v1"
        (tree / "etc").mkdir(parents=True)
        (tree / "etc/hostname").write_text("master\n")
        conn: sqlite3.Connection = connect(db_path(cfg.state_dir))
        conn.execute("BEGIN IMMEDIATE")
        insert_version(conn, ImageVersion("web", 1, str(tree), time.time(), source="test"))
        # A host due to install it, on loopback (its own address).
        conn.execute("INSERT INTO hosts(name, mac, ip, image, state, created, updated, install_token) "
                     "VALUES ('web1', '52:54:00:00:00:07', ?, 'web', 'assigned', 0, 0, 'tok-web1')",
                     (int(IPv4Address("127.0.0.1")),))
        conn.execute("COMMIT")
        conn.close()
        dest = tmp_path / "dest"
        deadline = time.monotonic() + 5
        while True:
            proc = await asyncio.create_subprocess_exec(
                "rsync", "-a", f"rsync://web1@127.0.0.1:{port}/web_v1/", f"{dest}/",
                env={"PATH": os.environ["PATH"], "RSYNC_PASSWORD": rsync_password("tok-web1")},
                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
            _, err = await proc.communicate()
            if proc.returncode == 0 or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
        assert proc.returncode == 0, err
        assert (dest / "etc/hostname").read_text() == "master\n"
        # Without the password: refused (and no module list for anyone).
        anon = await asyncio.create_subprocess_exec(
            "rsync", "-a", f"rsync://127.0.0.1:{port}/web_v1/", f"{tmp_path}/anon/",
            env={"PATH": os.environ["PATH"]}, stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
        _, err = await anon.communicate()
        assert anon.returncode != 0 and not (tmp_path / "anon/etc").exists(), err
    finally:
        daemon.stop()
        assert await asyncio.wait_for(task, 10) == 0
