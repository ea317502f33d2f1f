"""The shipped unit file passes systemd-analyze verify and keeps its hardening."""

from __future__ import annotations

import os
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
        "SystemCallFilter=@system-service chroot",  # rsyncd: use chroot = yes
        "RestrictAddressFamilies=",
        "StateDirectory=imageserver",
        "LimitNOFILE=65536",
    ):
        assert directive in text


def _install_service(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([sys.executable, "-m", "appliance.cli", "install-service", "--root", str(root), *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    return proc


def _config_with_state_dir(root: Path, state_dir: str) -> None:
    from appliance import shipped

    config = root / "etc/imageserver/imageserver.toml"
    config.parent.mkdir(parents=True)
    config.write_text(shipped.example_config().replace('state_dir = "/var/lib/imageserver"',
                                                       f'state_dir = "{state_dir}"', 1))


def test_drop_in_opens_a_state_dir_outside_var_lib(tmp_path: Path) -> None:
    """ProtectSystem=strict leaves /srv read-only: the drop-in names the config's state_dir, which is made."""
    _config_with_state_dir(tmp_path, "/srv/imageserver/state")
    _install_service(tmp_path, "--executable", "/usr/bin/imageserver")
    drop_in = (tmp_path / "etc/systemd/system/imageserver.service.d/install-service.conf").read_text()
    assert "ReadWritePaths=/srv/imageserver/state\n" in drop_in
    assert "ProtectHome" not in drop_in  # /usr/bin is not in a home
    assert (tmp_path / "srv/imageserver/state").is_dir()


def test_drop_in_opens_nothing_for_the_defaults_and_home_read_only_for_a_checkout(tmp_path: Path) -> None:
    _install_service(tmp_path, "--executable", "/root/imageserver/.venv/bin/imageserver")
    drop_in = (tmp_path / "etc/systemd/system/imageserver.service.d/install-service.conf").read_text()
    assert "ReadWritePaths" not in drop_in  # /var/lib/imageserver is StateDirectory=
    assert "ProtectHome=read-only\n" in drop_in  # ProtectHome=yes would hide /root's venv from the service


def test_the_unit_runs_this_install_and_the_package_unit_is_kept(tmp_path: Path) -> None:
    from appliance.cli.commands.install_service import running_executable

    exe = running_executable()
    assert Path(exe.split()[0]).parent == Path(sys.executable).parent  # the venv's script or its python -m
    (tmp_path / "lib/systemd/system").mkdir(parents=True)
    (tmp_path / "lib/systemd/system/imageserver.service").write_text("# the package's\n")
    out = _install_service(tmp_path).stdout
    assert "the package's unit" in out
    assert not (tmp_path / "etc/systemd/system/imageserver.service").exists()
    assert (tmp_path / "etc/systemd/system/imageserver.service.d/install-service.conf").exists()


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_unit_with_its_drop_in_verifies(tmp_path: Path) -> None:
    """The unit as install-service lays it out, drop-in included, read by systemd from that root."""
    exe = tmp_path / "usr/bin/imageserver"
    exe.parent.mkdir(parents=True)
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    _config_with_state_dir(tmp_path, "/srv/state")
    _install_service(tmp_path, "--executable", str(exe))
    units = tmp_path / "etc/systemd/system"

    def verify() -> subprocess.CompletedProcess[str]:
        # The unit search path (then the defaults: ":") is where systemd also reads the drop-in from.
        return subprocess.run(["systemd-analyze", "verify", str(units / "imageserver.service")], capture_output=True,
                              text=True, timeout=60, env={**os.environ, "SYSTEMD_UNIT_PATH": f"{units}:"})

    proc = verify()
    problems = [line for line in proc.stderr.splitlines() if "imageserver.service" in line]
    assert proc.returncode == 0 and not problems, proc.stderr
    drop_in = units / "imageserver.service.d/install-service.conf"
    assert "ReadWritePaths=/srv/state" in drop_in.read_text()
    with drop_in.open("a") as f:  # the drop-in was read: a bad key in it is reported
        f.write("NoSuchKey=1\n")
    assert "NoSuchKey" in verify().stderr
    text = (tmp_path / "etc/systemd/system/imageserver.service").read_text()
    assert "ConditionPathExists=/etc/imageserver/imageserver.toml" in text
    assert "Documentation=file:///usr/share/doc/imageserver/README.md" in text


def test_the_packaged_unit_names_the_man_page() -> None:
    from appliance.cli.commands.install_service import render_unit

    assert "\nDocumentation=man:imageserver(8) file:///usr/share/doc/imageserver/README.md\n" in \
        render_unit("/usr/bin/imageserver", man_page=True)
