"""`hosts set --root-device`, `images root-device`, `hosts show` and `machines show` with the daemon down: the
same use cases as the API (domain.hardware) on the state database; a wrong hint is refused naming the term,
and nothing is written."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

import pytest

from domain.inventory import Disk, Interface, Inventory, SystemVendor
from state.inventories import store_inventory_op
from tests.unit.test_cli_leases_offline import config, run  # noqa: F401  (the fixture and the runner)

MAC = "52:54:00:00:00:07"


def _db(config_path: Path) -> Path:
    return Path(config_path.read_text().split('state_dir = "')[1].split('"')[0]) / "imageserver.db"


def test_offline_root_device_hints_and_inventory(config: Path, capsys: pytest.CaptureFixture[str]) -> None:  # noqa: F811
    assert run(config, capsys, "hosts", "add", "node7", "--mac", MAC)[0] == 0
    code, _, err = run(config, capsys, "hosts", "set", "node7", "--root-device", "colour=red")
    assert code == 2 and "unknown key 'colour'" in err and "Traceback" not in err, err
    code, out, err = run(config, capsys, "hosts", "set", "node7", "--root-device", "serial=S2, smallest")
    assert code == 0 and "host node7: root device serial=S2,smallest" in out, (out, err)
    code, _, err = run(config, capsys, "images", "root-device", "nosuch", "largest")
    assert code == 3 and "no image named 'nosuch'" in err, err

    inventory = Inventory(disks=[Disk("/dev/sda", 500 << 30, "WDC", "S1", rotational=True),
                                 Disk("/dev/nvme0n1", 1 << 40, serial="S2", rotational=False)],
                          interfaces=[Interface("eno1", MAC, "igb", 1000, True)],
                          system_vendor=SystemVendor("Dell Inc.", "PowerEdge R650", "7XYZ123"))
    with sqlite3.connect(_db(config)) as conn:
        store_inventory_op(MAC, time.time(), inventory.json())(conn)
    code, out, err = run(config, capsys, "hosts", "show", "node7")
    assert code == 0, err
    assert "root disk  serial=S2,smallest (host's hints)" in out, out
    assert "hardware   Dell Inc. PowerEdge R650, 2 disks, 1 NIC" in out, out
    assert "disk       /dev/sda 500.0 GiB (serial S1, WDC, rotational)" in out, out
    assert "disk       /dev/nvme0n1 1.0 TiB (serial S2, non-rotational)" in out, out
    assert f"nic        eno1 {MAC} igb, 1000 Mb/s, link up" in out, out
    code, out, err = run(config, capsys, "machines", "show", MAC)
    assert code == 0 and "host       node7 (new)" in out and "serial 7XYZ123" in out, (out, err)
    code, out, _ = run(config, capsys, "machines", "show", MAC, "--json")
    assert json.loads(out)["inventory"]["inventory"]["disks"][1]["serial"] == "S2"

    code, out, err = run(config, capsys, "hosts", "set", "node7", "--root-device", "")
    assert code == 0 and "no root-device hints" in out, (out, err)
    code, out, _ = run(config, capsys, "hosts", "show", "node7")
    assert "root disk  the first disk found (no root-device hints)" in out, out
