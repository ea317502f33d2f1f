"""`imageserver hosts add` with the daemon down: the same use case as POST /api/v1/hosts (domain.hosts), on
the state database. Bad input gets a clear error and exit 2, and nothing is written; a fixed address
becomes the MAC's reservation offline too."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from tests.unit.test_cli_leases_offline import config, run  # noqa: F401  (the fixture and the runner)


def rows(config_path: Path, sql_table: str) -> int:
    state = Path(config_path.read_text().split('state_dir = "')[1].split('"')[0])
    db = state / "imageserver.db"
    if not db.exists():
        return 0
    with sqlite3.connect(db) as conn:
        return int(conn.execute(f"SELECT count(*) FROM {sql_table}").fetchone()[0])


@pytest.mark.parametrize("args, message", [
    (("--mac", "zz"), "not a MAC address"),
    (("--mac", "52:54:00:00:00:01", "--image", "../etc"), "image name"),
])
def test_offline_add_refuses_bad_input_with_exit_2_and_writes_nothing(
        config: Path, capsys: pytest.CaptureFixture[str], args: tuple[str, ...], message: str) -> None:  # noqa: F811
    code, out, err = run(config, capsys, "hosts", "add", "node1", *args)
    assert code == 2, (out, err)
    assert message in err and "Traceback" not in err
    assert rows(config, "hosts") == 0


def test_offline_add_bad_name_exit_2(config: Path, capsys: pytest.CaptureFixture[str]) -> None:  # noqa: F811
    code, _, err = run(config, capsys, "hosts", "add", "no_such name", "--mac", "52:54:00:00:00:01")
    assert code == 2 and "not a host name" in err and "Traceback" not in err


def test_offline_add_reserves_the_fixed_address_like_the_api(
        config: Path, capsys: pytest.CaptureFixture[str]) -> None:  # noqa: F811
    code, out, err = run(config, capsys, "hosts", "add", "node1", "--mac", "52-54-00-00-00-01", "--ip", "10.79.0.20",
                         "--json")
    assert code == 0, err
    host = json.loads(out)
    assert (host["name"], host["mac"], host["ip"], host["offline"]) == (
        "node1", "52:54:00:00:00:01", "10.79.0.20", True)
    assert host["binding"]["kind"] == "reservation" and host["binding"]["ip"] == "10.79.0.20"
    code, out, _ = run(config, capsys, "reservations", "--json")
    assert [(r["mac"], r["ip"]) for r in json.loads(out)] == [("52:54:00:00:00:01", "10.79.0.20")]
    # The same MAC again is a conflict, said plainly.
    code, _, err = run(config, capsys, "hosts", "add", "node2", "--mac", "52:54:00:00:00:01")
    assert code == 4 and "MAC 52:54:00:00:00:01 is host node1's" in err and "Traceback" not in err
    code, out, _ = run(config, capsys, "hosts", "list", "--json")
    assert [h["name"] for h in json.loads(out)] == ["node1"]
