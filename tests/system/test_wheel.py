"""The wheel works on its own: built from the tree, installed in a fresh venv outside the checkout, its setup
commands (init, install-service, check-config, mkbootenv --help) run from there and find their data files.

Offline: the wheel is built without build isolation (setuptools comes from the test venv) and the fresh venv
gets only the wheel; its dependencies (aiohttp, msgspec, ...) are borrowed from the test venv's site-packages
through a .pth line, which adds that directory to sys.path without running its .pth files, so the checkout's
editable install stays invisible and `appliance` must come from the wheel.
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import tomllib
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.system

REPO = Path(__file__).resolve().parents[2]
PACKAGES = {"appliance", "services", "domain", "state", "protocols"}  # pyproject's packages.find


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    build = tmp_path_factory.mktemp("build")
    # setuptools builds in the source tree's build/ unless told otherwise; a copy keeps the checkout clean.
    subprocess.run(["cp", "-a", *[str(REPO / n) for n in (*PACKAGES, "pyproject.toml", "README.md", "LICENSE")
                                  if (REPO / n).exists()], str(build)], check=True)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out),
                    str(build)], check=True, timeout=600, env={**os.environ, "PIP_NO_INDEX": "1"})
    (whl,) = out.glob("imageserver-*.whl")
    return whl


@pytest.fixture(scope="module")
def venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("venv") / "v"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True, timeout=120)
    where = "import sysconfig; print(sysconfig.get_path('purelib'))"
    purelib = Path(subprocess.run([str(root / "bin/python"), "-c", where], check=True, capture_output=True,
                                  text=True).stdout.strip())
    # The test venv's pip installs into the fresh venv (pip --python), with no index: the wheel only.
    subprocess.run([sys.executable, "-m", "pip", "--python", str(root / "bin/python"), "install", "-q", "--no-deps",
                    "--no-index", str(wheel)], check=True, timeout=300)
    (purelib / "zz_test_deps.pth").write_text(sysconfig.get_path("purelib") + "\n")
    return root


def _run(venv: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "IMAGESERVER_"))}
    env["PATH"] = f"{venv / 'bin'}:{env.get('PATH', '/usr/bin:/bin')}"
    proc = subprocess.run([str(venv / "bin/imageserver"), *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, f"imageserver {' '.join(args)}: exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc


def test_wheel_holds_the_product_and_its_data(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/")[0] for n in names if not n.startswith("imageserver-")}
    assert top == PACKAGES, f"top-level names in the wheel: {sorted(top)} (no tests/, lab/ or bench/)"
    for data in ("appliance/data/imageserver.toml", "appliance/data/imageserver.service",
                 "appliance/data/prepareclient", "appliance/data/updateclient",
                 "appliance/boot/installer/init.sh", "appliance/boot/installer/runtime.sh",
                 "appliance/boot/installer/udhcpc.sh", "services/static/dashboard.html"):
        assert data in names, data
    # Every data file of the installer's runtime (its shell, per-machine.paths: getimage reads that one).
    shipped_data = {n for n in names if n.startswith("appliance/boot/installer/") and not n.endswith(".py")}
    in_tree = {str(p.relative_to(REPO)) for p in (REPO / "appliance/boot/installer").rglob("*")
               if p.is_file() and p.suffix not in (".py", ".pyc")}
    assert shipped_data == in_tree


def test_setup_commands_run_from_an_installed_wheel(venv: Path, tmp_path: Path) -> None:
    where = _run(venv, tmp_path, "--help")
    assert "install-service" in where.stdout
    probe = subprocess.run([str(venv / "bin/python"), "-c", "import appliance, services; "
                            "print(appliance.__file__); print(services.__file__)"],
                           cwd=tmp_path, capture_output=True, text=True, check=True)
    for line in probe.stdout.split():
        assert Path(line).is_relative_to(venv), f"imported from outside the fresh venv: {line}"

    root, state = tmp_path / "root", tmp_path / "srv/state"
    config = root / "etc/imageserver/imageserver.toml"
    _run(venv, tmp_path, "init", "--yes", "--no-probe", "--interface", "eth1", "--address", "192.0.2.10/24",
         "--state-dir", str(state), "--output", str(config))
    written = tomllib.loads(config.read_text())
    assert written["appliance"]["address"] == "192.0.2.10" and written["appliance"]["state_dir"] == str(state)
    _run(venv, tmp_path, "check-config", "--config", str(config))

    _run(venv, tmp_path, "install-service", "--root", str(root))
    unit = (root / "etc/systemd/system/imageserver.service").read_text()
    assert "@IMAGESERVER@" not in unit
    assert f"ExecStart={venv / 'bin/imageserver'} serve" in unit, unit  # this install's command
    assert tomllib.loads(config.read_text()) == written  # init's config kept
    drop_in = (root / "etc/systemd/system/imageserver.service.d/install-service.conf").read_text()
    assert f"ReadWritePaths={state}\n" in drop_in

    assert "--kernel-package" in _run(venv, tmp_path, "mkbootenv", "--help").stdout
