"""`imageserver leases`, `reservations` and `makedhcpstatic` with the daemon down: they work on the
state database directly, with the same checks and the same output as through the daemon."""

from __future__ import annotations

import json
import socket
import time
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import pytest

from appliance.cli.main import main
from state.db import connect
from state.lease_pools import PoolSpec
from state.lease_rows import offline_transaction
from state.leases import LeaseModel


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "imageserver.toml"
    path.write_text(f"""
[appliance]
state_dir = "{tmp_path / 'state'}"
address = "10.79.0.1"
[dhcp]
subnet = "10.79.0.0/24"
pool = "10.79.0.100-10.79.0.199"
[http]
listen = "127.0.0.1"
port = {free_port()}
""")
    return path


def run(config: Path, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main([*args, "--config", str(config)])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_reservations_offline_add_list_refuse_remove(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(config, capsys, "reservations", "add", "52:54:00:00:00:01", "10.79.0.20", "--hostname", "n1")
    assert code == 0 and "reserved 10.79.0.20 for 52:54:00:00:00:01 (n1)" in out
    assert "not answering" in err  # it says it works on the database
    code, out, _ = run(config, capsys, "reservations", "--json")
    assert [(r["mac"], r["ip"]) for r in json.loads(out)] == [("52:54:00:00:00:01", "10.79.0.20")]
    code, _, err = run(config, capsys, "reservations", "add", "52:54:00:00:00:02", "10.79.0.20")
    assert code == 4 and "already reserved for 52:54:00:00:00:01" in err
    code, _, err = run(config, capsys, "reservations", "add", "52:54:00:00:00:02", "192.168.0.5")
    assert code == 4 and "outside every DHCP subnet" in err
    code, out, _ = run(config, capsys, "reservations", "rm", "52-54-00-00-00-01")
    assert code == 0 and "removed 10.79.0.20" in out
    code, _, err = run(config, capsys, "reservations", "rm", "52:54:00:00:00:01")
    assert code == 3 and "no reservation" in err


def test_leases_and_makedhcpstatic_offline(config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pool = PoolSpec(IPv4Network("10.79.0.0/24"), IPv4Address("10.79.0.100"), IPv4Address("10.79.0.199"), 3600)
    conn = connect(tmp_path / "state" / "imageserver.db")
    model = LeaseModel.offline(conn, [pool], now=time.time())
    with offline_transaction(conn):
        now = time.time()
        model.commit("52:54:00:00:00:07", model.offer("52:54:00:00:00:07", pool, None, now), pool, now, None, "web7")
    conn.close()

    code, out, _ = run(config, capsys, "leases")
    assert code == 0
    header, row = out.splitlines()
    assert header.split() == ["IP", "MAC", "HOSTNAME", "LEASE", "SUBNET"]
    assert row.split()[:4] == ["10.79.0.100", "52:54:00:00:00:07", "web7", "ends"]
    code, out, _ = run(config, capsys, "makedhcpstatic", "--json")
    assert code == 0 and [r["ip"] for r in json.loads(out)] == ["10.79.0.100"]
    code, out, _ = run(config, capsys, "leases", "--all", "--json")
    assert json.loads(out) == []
    code, out, _ = run(config, capsys, "makedhcpstatic")
    assert "no active leases" in out
