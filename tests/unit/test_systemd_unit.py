"""The shipped unit file passes systemd-analyze verify and keeps its hardening."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_install_service_writes_unit_and_config(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "appliance.cli",
            "install-service",
            "--root",
            str(tmp_path),
            "--executable",
            "/usr/local/bin/imageserver",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 0, proc.stderr
    unit = (tmp_path / "etc/systemd/system/imageserver.service").read_text()
    assert "ExecStart=/usr/local/bin/imageserver serve" in unit and "@IMAGESERVER@" not in unit
    assert (tmp_path / "etc/imageserver/imageserver.toml").exists()
    assert "systemctl enable --now imageserver" in proc.stdout
    # A second run keeps the operator's config.
    (tmp_path / "etc/imageserver/imageserver.toml").write_text("# mine\n")
    subprocess.run(
        [sys.executable, "-m", "appliance.cli", "install-service", "--root", str(tmp_path)],
        cwd=ROOT,
        check=True,
        capture_output=True,
        timeout=30,
    )
    assert (tmp_path / "etc/imageserver/imageserver.toml").read_text() == "# mine\n"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_unit_verifies(tmp_path: Path) -> None:
    from appliance.cli.commands.install_service import render_unit

    exe = tmp_path / "imageserver"
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    unit = tmp_path / "imageserver.service"
    unit.write_text(render_unit(str(exe)))
    proc = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60)
    problems = [line for line in proc.stderr.splitlines() if "imageserver.service" in line]
    assert proc.returncode == 0 and not problems, proc.stderr
    text = unit.read_text()
    for directive in (
        "Type=notify",
        "WatchdogSec=",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "SystemCallFilter=@system-service",
        "RestrictAddressFamilies=",
        "StateDirectory=imageserver",
        "LimitNOFILE=65536",
    ):
        assert directive in text
