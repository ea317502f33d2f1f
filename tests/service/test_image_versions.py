"""getimage and the version commands end to end on loopback: the real prepareclient serves a test tree,
the real CLI pulls it (real rsync), and the catalog commands act on what it registered."""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PREPARECLIENT = Path(str(files("appliance") / "data" / "prepareclient"))

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="getimage and prepareclient run as root")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Setup:
    tmp: Path
    root: Path
    config: Path
    port: int

    @property
    def state(self) -> Path:
        return self.tmp / "state"

    def cli(self, *args: str, check: bool = False) -> subprocess.CompletedProcess[str]:
        result = subprocess.run([sys.executable, "-m", "appliance.cli", *args, "--config", str(self.config)],
                                cwd=ROOT, capture_output=True, text=True, timeout=60)
        if check and result.returncode != 0:
            raise AssertionError(f"{args} failed ({result.returncode}): {result.stderr}")
        return result

    def getimage(self, name: str, *extra: str) -> subprocess.CompletedProcess[str]:
        return self.cli("getimage", "--master-client", "127.0.0.1", "--port", str(self.port), "--image", name,
                        *extra)

    def rows(self) -> list[tuple[str, int]]:
        db = self.state / "imageserver.db"
        if not db.exists():
            return []
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            return [tuple(r) for r in conn.execute("SELECT name, version FROM images ORDER BY name, version")]
        finally:
            conn.close()

    def staging_left(self) -> list[str]:
        staging = self.state / "images/.staging"
        return sorted(p.name for p in staging.iterdir() if not p.name.endswith(".lock")) if staging.exists() else []


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[Setup]:
    root = tmp_path / "master"
    (root / "etc").mkdir(parents=True)
    disk = tmp_path / "disk.img"
    (root / "etc/fstab").write_text(f"{disk}1 / ext4 defaults 0 1\n")  # the partition sfdisk --dump names
    (root / "etc/motd").write_text("v1\n")
    (root / "usr/bin").mkdir(parents=True)
    (root / "usr/bin/big").write_bytes(os.urandom(3 << 20))
    (root / "tmp").mkdir()
    (root / "tmp/junk").write_text("runtime")
    with open(disk, "wb") as f:
        f.truncate(64 << 20)
    subprocess.run(["sfdisk", "-q", str(disk)], input="label: gpt\n,,L\n", text=True, check=True)
    config = tmp_path / "imageserver.toml"
    config.write_text(f'[appliance]\nstate_dir = "{tmp_path / "state"}"\n')
    port = free_port()
    env = {**os.environ, "SYSTEMIMAGER_ROOT": str(root), "SYSTEMIMAGER_DISKS": str(disk)}
    subprocess.run(["sh", str(PREPARECLIENT), "--server", "127.0.0.1", "--listen", "127.0.0.1", "--port", str(port)],
                   env=env, check=True, capture_output=True)
    try:
        yield Setup(tmp_path, root, config, port)
    finally:
        subprocess.run(["sh", str(PREPARECLIENT), "--stop"], env=env, capture_output=True)


def test_versions_share_unchanged_files_and_the_catalog_commands_work(setup: Setup) -> None:
    first = setup.getimage("web")
    assert first.returncode == 0, first.stderr
    assert "image web v1" in first.stdout and "/tmp/* (runtime state)" in first.stdout
    v1 = setup.state / "images/web/v1"
    assert (v1 / "etc/motd").read_text() == "v1\n" and (v1 / "tmp").is_dir() and not (v1 / "tmp/junk").exists()
    (setup.root / "etc/motd").write_text("v2\n")
    (setup.root / "etc/added").write_text("new\n")
    assert setup.getimage("web", "--no-script").returncode == 0
    v2 = setup.state / "images/web/v2"
    assert os.stat(v1 / "usr/bin/big").st_ino == os.stat(v2 / "usr/bin/big").st_ino
    assert os.stat(v1 / "etc/motd").st_ino != os.stat(v2 / "etc/motd").st_ino
    assert setup.rows() == [("web", 1), ("web", 2)]
    listing = json.loads(setup.cli("images", "list", "--json", check=True).stdout)
    assert [(r["name"], r["version"], r["source"]) for r in listing] == [
        ("web", 1, f"rsync://127.0.0.1:{setup.port}/root"), ("web", 2, f"rsync://127.0.0.1:{setup.port}/root")]
    diff = setup.cli("images", "diff", "web", "v1", "v2", check=True).stdout.splitlines()
    assert diff == ["+ /etc/added", "M /etc/motd  (content, mtime)"]
    show = setup.cli("images", "show", "web", "v1", check=True).stdout
    assert "disk disk.img: 64.0 MiB, gpt" in show
    # The exit codes tell a missing image (3), a bad version (2) and a taken name (4) from a failure (1).
    missing = setup.cli("images", "show", "nope")
    assert missing.returncode == 3 and "no image named 'nope'" in missing.stderr, missing.stderr
    assert setup.cli("images", "diff", "web", "v1", "v9").returncode == 3
    assert setup.cli("images", "show", "web", "version-one").returncode == 2

    # A host pinned to v1 keeps v1 from being removed, unless --force.
    conn = sqlite3.connect(setup.state / "imageserver.db")
    conn.execute("INSERT INTO hosts (name, image, version, created, updated) VALUES ('node1', 'web', 1, 0, 0)")
    conn.commit()
    conn.close()
    refused = setup.cli("images", "rm", "web", "v1")
    assert refused.returncode == 4 and "node1" in refused.stderr  # refused: a host is assigned to it
    assert setup.rows() == [("web", 1), ("web", 2)] and v1.is_dir()

    # clone -> edit -> commit: edits never reach the source version.
    clone = setup.cli("images", "clone", "web", "v2", "web-edit", check=True)
    work = setup.state / "images/.work/web-edit"
    assert str(work) in clone.stdout
    assert os.stat(work / "usr/bin/big").st_ino != os.stat(v2 / "usr/bin/big").st_ino
    again = setup.cli("images", "clone", "web", "v2", "web-edit")
    assert again.returncode == 4 and "exists" in again.stderr, again.stderr
    assert setup.cli("images", "commit", "never-cloned", "--no-script").returncode == 3
    with open(work / "usr/bin/big", "r+b") as f:  # edit in place: the worst case for a hard-link copy
        f.write(b"EDITED")
    (work / "etc/motd").write_text("edited\n")
    assert (v2 / "usr/bin/big").read_bytes()[:6] != b"EDITED"
    setup.cli("images", "commit", "web-edit", "--no-script", check=True)
    e1 = setup.state / "images/web-edit/v1"
    assert (e1 / "etc/motd").read_text() == "edited\n" and not work.exists()
    assert os.stat(e1 / "etc/added").st_ino == os.stat(v2 / "etc/added").st_ino  # unchanged: shared
    assert setup.cli("images", "verify", "web", "v2").returncode == 0

    # An installed copy (rsync as the installer pulls it, plus what the install writes) checks against v2.
    disk = setup.state.parent / "installed"
    subprocess.run(["rsync", "-aHAX", "--numeric-ids", f"{v2}/", f"{disk}/"], check=True)
    (disk / "lost+found").mkdir()
    (disk / "etc/hostname").write_text("node1\n")
    (disk / "etc/network").mkdir(exist_ok=True)
    (disk / "etc/network/interfaces.d").mkdir(parents=True, exist_ok=True)
    ok = setup.cli("images", "verify", "web", "v2", "--tree", str(disk), "--ignore", "/etc/hostname",
                   "--ignore", "etc/network/")
    assert ok.returncode == 0 and "intact" in ok.stderr, (ok.stdout, ok.stderr)
    unignored = setup.cli("images", "verify", "web", "v2", "--tree", str(disk), "--ignore", "etc/network/")
    assert unignored.returncode == 1 and "/etc/hostname" in unignored.stdout, unignored.stdout
    os.chmod(disk / "etc/motd", 0o600)
    drifted = setup.cli("images", "verify", "web", "v2", "--tree", str(disk), "--ignore", "/etc/hostname",
                        "--ignore", "etc/network/", "--json")
    assert drifted.returncode == 1
    assert json.loads(drifted.stdout) == [{"path": "etc/motd", "change": "changed", "what": ["mode"]}]
    missing = setup.cli("images", "verify", "web", "v2", "--tree", str(disk / "nope"))
    assert missing.returncode != 0 and "is not a directory" in missing.stderr

    # Writing into a registered version is caught by verify.
    (v2 / "etc/added").write_text("tampered\n")
    bad = setup.cli("images", "verify", "web", "v2")
    assert bad.returncode == 1 and "/etc/added (content" in bad.stdout

    forced = setup.cli("images", "rm", "web", "v1", "--force")
    assert forced.returncode == 0, forced.stderr
    assert setup.rows() == [("web", 2), ("web-edit", 1)] and not v1.exists()
    assert (v2 / "usr/bin/big").stat().st_size == 3 << 20  # its hard-linked files are still there


def test_sigterm_during_the_pull_leaves_no_version_and_no_staging(setup: Setup) -> None:
    (setup.root / "usr/bin/big2").write_bytes(os.urandom(4 << 20))
    proc = subprocess.Popen([sys.executable, "-m", "appliance.cli", "getimage", "--config", str(setup.config),
                             "--master-client", "127.0.0.1", "--port", str(setup.port), "--image", "web",
                             "--bwlimit", "1000"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    staging = setup.state / "images/.staging"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:  # wait until files are arriving in staging
        trees = [p for p in staging.glob("web.*") if p.is_dir() and not p.name.endswith(".meta")] \
            if staging.exists() else []
        if trees and (trees[0] / "usr").exists():
            break
        time.sleep(0.05)
    else:
        proc.kill()
        raise AssertionError("the pull never started")
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 1
    assert "interrupted by SIGTERM" in err and "nothing was registered" in err
    assert setup.rows() == []
    assert setup.staging_left() == []
    assert not (setup.state / "images/web").exists()


def test_without_prepareclient_output_nothing_is_registered_and_the_error_says_why(setup: Setup) -> None:
    for child in (setup.root / "etc/systemimager").rglob("*"):
        if child.is_file():
            child.unlink()
    result = setup.getimage("web")
    assert result.returncode == 1
    assert "prepareclient" in result.stderr
    assert setup.rows() == [] and setup.staging_left() == []


def test_an_image_no_machine_could_be_installed_from_is_refused(setup: Setup) -> None:
    """The layout of a master whose partition table was not recorded (say prepareclient ran without sfdisk):
    the fstab's / matches no partition, so every install would fail. getimage refuses and registers nothing."""
    for dump in (setup.root / "etc/systemimager/disks").glob("*.sfdisk"):
        dump.unlink()
    result = setup.getimage("web")
    assert result.returncode == 1
    assert "matches no partition" in result.stderr and "nothing was registered" in result.stderr, result.stderr
    assert setup.rows() == [] and setup.staging_left() == []
    assert not (setup.state / "images/web").exists()
    assert not (setup.state / "scripts/web.master").exists()
    kept = setup.getimage("web", "--no-script")  # the sysadmin brings a script of their own
    assert kept.returncode == 0, kept.stderr
    assert setup.rows() == [("web", 1)]


def test_bad_image_names_are_usage_errors(setup: Setup) -> None:
    for name in ("../etc", "web_v2"):
        result = setup.getimage(name)
        assert result.returncode == 2, (name, result.stderr)
