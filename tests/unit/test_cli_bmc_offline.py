"""`hosts set NODES --bmc ...` with the daemon down: on the state database, with the API's checks; the
password from a file or the environment, kept when not given again, never printed; a removed host takes its
BMC (and its password) with it."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from tests.unit.test_cli_leases_offline import config, run  # noqa: F401  (the fixture and the runner)


def stored(path: Path) -> dict[str, tuple[str, str]]:
    state = Path(path.read_text().split('state_dir = "')[1].split('"')[0])
    with sqlite3.connect(state / "imageserver.db") as conn:
        return {h: (a, p) for h, a, p in conn.execute("SELECT host, address, password FROM bmcs")}


def test_bmc_set_kept_refused_and_removed_with_its_host(
        config: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path,  # noqa: F811
        monkeypatch: pytest.MonkeyPatch) -> None:
    for i in (1, 2):
        assert run(config, capsys, "hosts", "add", f"n{i}", "--mac", f"52:54:00:00:01:0{i}")[0] == 0
    pw = tmp_path / "pw"
    pw.write_text("file-secret\n")
    code, out, err = run(config, capsys, "hosts", "set", "n[1-3]", "--bmc", "ipmi://10.9.0.{host}", "--bmc-user",
                         "admin", "--bmc-password-file", str(pw), "--json")
    assert code == 1, err  # n3 does not exist
    got = {r["host"]: r for r in json.loads(out)}
    assert got["n1"]["result"]["bmc"]["address"] == "ipmi://10.9.0.n1" and "no host named 'n3'" in got["n3"]["error"]
    assert "file-secret" not in out + err
    assert stored(config) == {"n1": ("ipmi://10.9.0.n1", "file-secret"), "n2": ("ipmi://10.9.0.n2", "file-secret")}

    # a new address without a password keeps the stored one; the environment gives one too
    assert run(config, capsys, "hosts", "set", "n1", "--bmc", "redfish://10.9.0.1", "--bmc-user", "root")[0] == 0
    monkeypatch.setenv("IMAGESERVER_BMC_PASSWORD", "env-secret")
    assert run(config, capsys, "hosts", "set", "n2", "--bmc", "ipmi://10.9.0.2:6230", "--bmc-user", "admin")[0] == 0
    assert stored(config) == {"n1": ("redfish://10.9.0.1", "file-secret"), "n2": ("ipmi://10.9.0.2:6230", "env-secret")}

    # refused, nothing written: a bad address, credentials in the address, a pin on plain IPMI, a range that
    # does not match the hosts
    for args, why in ((("--bmc", "telnet://x"), "BMC address"),
                      (("--bmc", "ipmi://u:p@10.0.0.1"), "no user or password in the address"),
                      (("--bmc", "ipmi://10.0.0.1", "--bmc-fingerprint", "ab" * 32), "https only"),
                      (("--bmc", "ipmi://10.0.0.[1-3]"), "3 addresses for 1 hosts")):
        code, _, err = run(config, capsys, "hosts", "set", "n1", *args, "--bmc-user", "admin")
        assert code == 1 and why in err and "Traceback" not in err, err
    assert stored(config)["n1"] == ("redfish://10.9.0.1", "file-secret")

    code, out, _ = run(config, capsys, "hosts", "set", "n2", "--bmc", "")
    assert code == 0 and "forgotten" in out
    assert run(config, capsys, "hosts", "rm", "n1")[0] == 0
    assert stored(config) == {}  # the host's removal took its BMC
    assert run(config, capsys, "hosts", "add", "n1", "--mac", "52:54:00:00:01:01")[0] == 0
    code, out, _ = run(config, capsys, "power", "status", "n1")
    assert code == 1 and "has no BMC" in out  # a new host of the same name does not inherit the old one's
