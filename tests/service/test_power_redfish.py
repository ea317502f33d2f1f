"""Power control over Redfish against sushy-tools' emulator (`sushy-emulator --fake`, on loopback, over TLS with
a self-signed certificate and a bcrypt user file), driven by the `imageserver` CLI with the daemon down (the
same drivers as the daemon's, in-process). The certificate pin is enforced, a wrong password is the host's
own error, and the password is never printed."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from appliance.cli.main import main

bcrypt = pytest.importorskip("bcrypt")
EMULATOR = Path(sys.executable).parent / "sushy-emulator"
pytestmark = pytest.mark.skipif(not EMULATOR.exists() or shutil.which("openssl") is None,
                                reason="needs sushy-tools (pip install -e '.[test]') and openssl")
PASSWORD = "rf-2b8d1e-Secret"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Emulator:
    port: int
    fingerprint: str  # SHA-256 of its certificate, hex

    def system(self) -> dict[str, Any]:
        ctx = ssl.create_default_context()
        ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
        auth = base64.b64encode(f"admin:{PASSWORD}".encode()).decode()

        def get(path: str) -> Any:
            req = urllib.request.Request(f"https://127.0.0.1:{self.port}{path}",
                                         headers={"Authorization": f"Basic {auth}"})
            with urllib.request.urlopen(req, context=ctx, timeout=10) as resp:
                return json.load(resp)

        return get(get("/redfish/v1/Systems")["Members"][0]["@odata.id"])  # type: ignore[no-any-return]


@pytest.fixture
def emulator(tmp_path: Path) -> Iterator[Emulator]:
    d = tmp_path / "sushy"
    d.mkdir()
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=bmc",
                    "-keyout", str(d / "key.pem"), "-out", str(d / "cert.pem")], check=True, capture_output=True)
    der = ssl.PEM_cert_to_DER_cert((d / "cert.pem").read_text())
    (d / "users").write_text(f"admin:{bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(4)).decode()}\n")
    (d / "conf.py").write_text(f"SUSHY_EMULATOR_AUTH_FILE = {str(d / 'users')!r}\n")
    port = free_port()
    env = {**os.environ, "SUSHY_EMULATOR_STATE_DIR": str(d)}  # its own systems' state: no test shares it
    log = open(d / "emulator.log", "wb")  # noqa: SIM115  (closed below)
    proc = subprocess.Popen([str(EMULATOR), "--fake", "-i", "127.0.0.1", "-p", str(port), "--config",
                             str(d / "conf.py"), "--ssl-certificate", str(d / "cert.pem"), "--ssl-key",
                             str(d / "key.pem")], env=env, stdout=log, stderr=subprocess.STDOUT)
    emu = Emulator(port, hashlib.sha256(der).hexdigest())
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                emu.system()
                break
            except OSError:
                assert proc.poll() is None, (d / "emulator.log").read_text()
                assert time.monotonic() < deadline, "sushy-emulator did not answer"
                time.sleep(0.2)
        yield emu
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "imageserver.toml"
    path.write_text(f"""
[appliance]
state_dir = "{tmp_path / 'state'}"
[http]
listen = "127.0.0.1"
port = {free_port()}
[power]
timeout = 30
""")
    return path


def cli(config: Path, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, Any]:
    code = main([*args, "--config", str(config), "--json"])
    out = capsys.readouterr()
    assert PASSWORD not in out.out + out.err
    try:
        return code, json.loads(out.out)
    except ValueError:
        raise AssertionError(f"not JSON (exit {code}): {out.out!r} {out.err!r}") from None


def test_redfish_power_and_one_time_pxe_with_a_pinned_certificate(
        emulator: Emulator, config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for i, name in enumerate(("node1", "wrongpw", "wrongpin", "down"), start=1):
        assert main(["hosts", "add", name, "--mac", f"52:54:00:6b:00:0{i}", "--config", str(config)]) == 0
    capsys.readouterr()
    good, bad = tmp_path / "good.pw", tmp_path / "bad.pw"
    good.write_text(PASSWORD + "\n")
    bad.write_text("nope\n")
    address = f"https://127.0.0.1:{emulator.port}"
    code, out = cli(config, capsys, "hosts", "set", "node1,wrongpin", "--bmc", address, "--bmc-user", "admin",
                    "--bmc-password-file", str(good), "--bmc-fingerprint", emulator.fingerprint)
    assert code == 0 and out[0]["result"]["bmc"]["fingerprint"] == emulator.fingerprint
    assert cli(config, capsys, "hosts", "set", "wrongpin", "--bmc", address, "--bmc-user", "admin",
               "--bmc-fingerprint", "ab" * 32)[0] == 0  # the stored password is kept
    assert cli(config, capsys, "hosts", "set", "wrongpw", "--bmc", address, "--bmc-user", "admin",
               "--bmc-password-file", str(bad))[0] == 0
    assert cli(config, capsys, "hosts", "set", "down", "--bmc", f"redfish://127.0.0.1:{free_port()}",
               "--bmc-user", "admin", "--bmc-password-file", str(good))[0] == 0
    # the secret stays in the 0600 database
    assert (tmp_path / "state" / "imageserver.db").stat().st_mode & 0o077 == 0

    code, status = cli(config, capsys, "power", "status", "node1,wrongpw,wrongpin,down")
    by = {r["host"]: r for r in status}
    assert code == 1 and by["node1"]["ok"] and by["node1"]["power"] == emulator.system()["PowerState"].lower()
    assert "refused the user or password (HTTP 401)" in by["wrongpw"]["error"]
    assert "not the pinned one" in by["wrongpin"]["error"]
    assert "cannot reach the Redfish service" in by["down"]["error"]

    code, on = cli(config, capsys, "power", "on", "node1")
    assert code == 0 and on[0]["power"] == "on", on  # waited until the emulator's power landed
    assert emulator.system()["PowerState"] == "On"

    code, pxe = cli(config, capsys, "power", "pxe", "node1")
    assert code == 0, pxe
    assert emulator.system()["Boot"]["BootSourceOverrideTarget"] == "Pxe"

    code, cycled = cli(config, capsys, "power", "cycle", "node1")
    assert code == 0 and cycled[0]["ok"], cycled
    # The fake driver shows Off at once and applies the restart's On 1-11 s later; an off sent before then
    # finds it Off already and leaves that pending On in place, which lands after our off. Let the cycle land.
    deadline = time.monotonic() + 20
    while emulator.system()["PowerState"] != "On":
        assert time.monotonic() < deadline, "the emulator never finished the power cycle"
        time.sleep(0.5)

    code, off = cli(config, capsys, "power", "off", "node1")
    assert code == 0 and off[0]["power"] == "off", off
    assert emulator.system()["PowerState"] == "Off"
    code, shown = cli(config, capsys, "hosts", "show", "node1")
    assert code == 0 and "password" not in json.dumps(shown)
