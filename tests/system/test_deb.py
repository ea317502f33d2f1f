"""`make deb`'s package: built by packaging/build_deb.py, read back with dpkg-deb (--info, --contents) and
unpacked with dpkg-deb -x, where its /usr/bin/imageserver runs from its own private environment: --help,
init, check-config and install-service against the unpacked tree. The VM test installs it for real."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

pytestmark = pytest.mark.system

REPO = Path(__file__).resolve().parents[2]
VERSION = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
PREFIX = "usr/lib/imageserver"
SHIPPED = (
    "usr/bin/imageserver",
    f"{PREFIX}/bin/imageserver",
    f"{PREFIX}/bin/python3",
    f"{PREFIX}/pyvenv.cfg",
    "lib/systemd/system/imageserver.service",
    "usr/share/doc/imageserver/imageserver.toml",
    "usr/share/doc/imageserver/README.md",
    "usr/share/doc/imageserver/copyright",
    "usr/share/man/man8/imageserver.8.gz",
    "usr/share/bash-completion/completions/imageserver",
)
# Every path of the package starts with one of these: nothing in the system's site-packages or /etc.
ROOTS = ("lib/systemd/system/", f"{PREFIX}/", "usr/bin/imageserver", "usr/share/doc/imageserver/",
         "usr/share/man/man8/", "usr/share/bash-completion/completions/")


@pytest.fixture(scope="module")
def deb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("deb")
    subprocess.run([sys.executable, str(REPO / "packaging/build_deb.py"), "--out", str(out)], check=True,
                   timeout=1800)
    return out / f"imageserver_{VERSION}_amd64.deb"


@pytest.fixture(scope="module")
def tree(deb: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("unpacked")
    subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
    return root


def _runtime(relation: str) -> list[str]:
    lines = (REPO / "deps/runtime-packages.txt").read_text().splitlines()
    return [w[0] for w in (line.split("#", 1)[0].split() for line in lines) if w and w[1] == relation]


def _field(info: str, name: str) -> str:
    m = re.search(rf"^ {name}: (.*)$", info, re.M)
    assert m, f"no {name} in the control file:\n{info}"
    return m.group(1)


def test_control_names_the_runtime_packages_only(deb: Path) -> None:
    info = subprocess.run(["dpkg-deb", "--info", str(deb)], check=True, capture_output=True, text=True).stdout
    assert _field(info, "Package") == "imageserver" and _field(info, "Version") == VERSION
    assert _field(info, "Architecture") == "amd64"
    assert _field(info, "Depends").split(", ") == _runtime("depends")
    assert _field(info, "Recommends").split(", ") == _runtime("recommends")
    tests_only = {"chromium", "qemu-system-x86", "kea-dhcp4-server", "nginx-light", "isc-dhcp-server", "shellcheck"}
    assert not tests_only & set(re.findall(r"[a-z0-9][a-z0-9.+-]+", info))
    for script in ("postinst", "prerm", "postrm"):
        assert script in info


def test_contents_are_the_private_environment_the_unit_docs_man_page_and_completion(deb: Path) -> None:
    listing = subprocess.run(["dpkg-deb", "--contents", str(deb)], check=True, capture_output=True, text=True).stdout
    paths = [line.split()[5].removeprefix("./") for line in listing.splitlines()]
    for path in SHIPPED:
        assert path in paths, path
    files = [p for p in paths if p and not p.endswith("/")]
    assert [p for p in files if not p.startswith(ROOTS)] == []
    assert "-> ../lib/imageserver/bin/imageserver" in listing  # /usr/bin/imageserver, relative
    site = f"{PREFIX}/lib/python3.11/site-packages/"
    top = {p.removeprefix(site).split("/")[0] for p in files if p.startswith(site)}
    assert {"appliance", "services", "domain", "state", "protocols", "aiohttp", "msgspec", "dnslib"} <= top
    assert not {"pytest", "tests", "lab", "bench", "pip", "setuptools"} & top


def test_unpacked_binary_runs_from_its_own_environment(tree: Path, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "IMAGESERVER_", "VIRTUAL_ENV"))}
    env["PYTHONPATH"] = str(REPO)  # ignored: the launcher runs python -I

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([str(tree / "usr/bin/imageserver"), *args], cwd=REPO, env=env, capture_output=True,
                              text=True, timeout=120)
        assert proc.returncode == 0, f"imageserver {' '.join(args)}: {proc.returncode}\n{proc.stdout}{proc.stderr}"
        return proc

    before = sorted(tree.joinpath(PREFIX).rglob("*"))
    assert "install-service" in run("--help").stdout
    where = subprocess.run([str(tree / PREFIX / "bin/python3"), "-I", "-c", "import appliance, aiohttp; "
                            "print(appliance.__file__); print(aiohttp.__file__)"], cwd=REPO, env=env,
                           capture_output=True, text=True, check=True).stdout.split()
    assert all(Path(p).is_relative_to(tree / PREFIX) for p in where), where  # not the checkout (cwd, PYTHONPATH)

    config = tree / "etc/imageserver/imageserver.toml"
    run("init", "--yes", "--no-probe", "--interface", "eth1", "--address", "192.0.2.10/24",
        "--state-dir", "/srv/imageserver", "--output", str(config))
    run("check-config", "--config", str(config))
    out = run("install-service", "--root", str(tree)).stdout
    assert "the package's unit" in out and not (tree / "etc/systemd/system/imageserver.service").exists()
    drop_in = (tree / "etc/systemd/system/imageserver.service.d/install-service.conf").read_text()
    assert "ReadWritePaths=/srv/imageserver\n" in drop_in and "ProtectHome" not in drop_in
    assert "--kernel-package" in run("mkbootenv", "--help").stdout
    assert sorted(tree.joinpath(PREFIX).rglob("*")) == before  # byte-compiled at build: running writes nothing


def test_unit_man_page_and_completion(tree: Path) -> None:
    unit = (tree / "lib/systemd/system/imageserver.service").read_text()
    for line in ("ExecStart=/usr/bin/imageserver serve --config /etc/imageserver/imageserver.toml",
                 "ConditionPathExists=/etc/imageserver/imageserver.toml",
                 "Documentation=man:imageserver(8) file:///usr/share/doc/imageserver/README.md",
                 "Type=notify", "ProtectSystem=strict", "StateDirectory=imageserver"):
        assert line + "\n" in unit, line
    page = subprocess.run(["man", "-l", str(tree / "usr/share/man/man8/imageserver.8.gz")], capture_output=True,
                          text=True, timeout=60, env={**os.environ, "MANWIDTH": "100", "MAN_KEEP_STDERR": "1"})
    assert page.returncode == 0 and not page.stderr, page.stderr
    for words in ("IMAGESERVER(8)", "install-service", "mkbootenv", "/etc/imageserver/imageserver.toml"):
        assert words in page.stdout, words
    completion = tree / "usr/share/bash-completion/completions/imageserver"
    subprocess.run(["bash", "-n", str(completion)], check=True)
    words = subprocess.run(["bash", "-c", f'source "{completion}"; COMP_WORDS=(imageserver ins); COMP_CWORD=1; '
                            '_shtab_imageserver; printf "%s\\n" "${COMPREPLY[@]}"'],
                           capture_output=True, text=True, timeout=30).stdout.split()
    assert "install-service" in words, words
