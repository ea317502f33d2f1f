"""The supervised rsync daemon, against a real rsync client on loopback.

Proves: each image version is served read-only as NAME_vN and the newest as NAME; a version added to
the catalog is served without restarting rsync; a `kill -9` of the daemon is repaired (at once: the
supervisor's first backoff; the time is printed, not asserted) and shows in status(); a missing binary is
a failed service (not an exception); transfers become events.

Waits poll for their condition with a bound far above the quiet-box time (a loaded CI box runs many
rsync processes beside this one): a pass costs no more time, a failure still ends.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from services.rsyncd import RsyncdService, RsyncdSettings

pytestmark = pytest.mark.skipif(shutil.which("rsync") is None, reason="rsync is not installed")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def make_version(root: Path, name: str, version: int, marker: str) -> tuple[str, int, str]:
    tree = root / name / f"v{version}"
    (tree / "etc").mkdir(parents=True)
    (tree / "etc" / "marker").write_text(marker)
    return (name, version, str(tree))


async def pull(port: int, module: str, dest: Path) -> subprocess.CompletedProcess[str]:
    proc = await asyncio.create_subprocess_exec(
        "rsync", "-a", f"rsync://127.0.0.1:{port}/{module}/", f"{dest}/",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    assert proc.returncode is not None
    return subprocess.CompletedProcess([], proc.returncode, out.decode(), err.decode())


# Far above what any of these waits takes on a quiet box (0.1-1 s), see the module's docstring.
WAIT = 20.0


async def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if predicate():
            return time.monotonic() - start
        await asyncio.sleep(0.02)
    raise AssertionError(f"{what} not within {timeout} s")


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture
def catalog(tmp_path: Path) -> list[tuple[str, int, str]]:
    images = tmp_path / "images"
    return [make_version(images, "web", 1, "one"), make_version(images, "web", 2, "two")]


async def test_serves_each_version_and_the_newest_and_picks_up_new_versions_live(
        tmp_path: Path, catalog: list[tuple[str, int, str]]) -> None:
    port = free_port()
    svc = RsyncdService(RsyncdSettings(state_dir=tmp_path / "state", address="127.0.0.1", port=port,
                                       refresh_seconds=0.1), lambda: list(catalog))
    await svc.start()
    try:
        assert svc.status()["state"] == "running"
        pid = svc.pid
        r = await pull(port, "web_v1", tmp_path / "a")
        assert r.returncode == 0, r.stderr
        assert (tmp_path / "a/etc/marker").read_text() == "one"
        r = await pull(port, "web", tmp_path / "b")
        assert r.returncode == 0, r.stderr
        assert (tmp_path / "b/etc/marker").read_text() == "two"
        # Read-only: a push is refused.
        up = await asyncio.create_subprocess_exec("rsync", "-a", f"{tmp_path / 'a'}/", f"rsync://127.0.0.1:{port}/web/",
                                                  stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        _, err = await up.communicate()
        assert up.returncode != 0 and b"read only" in err.lower(), err
        # A new version appears in the catalog: served by the same rsync process.
        catalog.append(make_version(tmp_path / "images", "web", 3, "three"))
        await wait_for(lambda: "[web_v3]" in (tmp_path / "state/rsyncd.conf").read_text(), WAIT, "config rewrite")
        r = await pull(port, "web", tmp_path / "c")
        assert r.returncode == 0, r.stderr
        assert (tmp_path / "c/etc/marker").read_text() == "three"
        assert svc.pid == pid
        await wait_for(lambda: svc.status()["counters"].get("transfer", 0) >= 3, WAIT, "transfer events")
        assert svc.status()["modules"] == 4  # web_v1 web_v2 web_v3 web
    finally:
        await svc.stop()
    assert svc.status()["state"] == "stopped"
    assert not port_open(port)


async def test_kill_9_of_the_daemon_is_repaired(
        tmp_path: Path, catalog: list[tuple[str, int, str]]) -> None:
    port = free_port()
    svc = RsyncdService(RsyncdSettings(state_dir=tmp_path / "state", address="127.0.0.1", port=port),
                        lambda: list(catalog))
    await svc.start()
    try:
        old = svc.pid
        assert old is not None and svc.status()["restarts"] == 0
        os.kill(old, signal.SIGKILL)
        took = await wait_for(lambda: svc.pid not in (None, old) and svc.status()["state"] == "running"
                              and port_open(port), WAIT, "rsync back")
        st = svc.status()
        assert st["restarts"] == 1
        assert st["last_exit"]["reason"] == "signal SIGKILL"
        r = await pull(port, "web_v2", tmp_path / "after")
        assert r.returncode == 0, r.stderr
        print(f"rsync daemon back {took:.2f} s after kill -9")
    finally:
        await svc.stop()


async def test_missing_rsync_binary_is_a_failed_service_not_an_exception(tmp_path: Path) -> None:
    svc = RsyncdService(RsyncdSettings(state_dir=tmp_path, rsync="rsync-not-installed-here", port=free_port()),
                        lambda: [])
    await svc.start()
    st = svc.status()
    assert st["state"] == "failed"
    assert "not found" in st["error"] and "rsync package" in st["error"]
    await svc.stop()


async def test_a_port_in_use_shows_as_restarting_with_the_reason(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        svc = RsyncdService(RsyncdSettings(state_dir=tmp_path, address="127.0.0.1", port=port, backoff_first=0.05,
                                           failed_after=3), lambda: [])
        await svc.start()
        try:
            await wait_for(lambda: svc.status()["state"] == "failed", WAIT, "failed state")
            st = svc.status()
            assert st["restarts"] >= 3
            assert "bind" in st["error"] or "Address already in use" in st["error"]
        finally:
            await svc.stop()


async def test_clients_outside_hosts_allow_are_denied_and_counted(
        tmp_path: Path, catalog: list[tuple[str, int, str]]) -> None:
    port = free_port()
    svc = RsyncdService(RsyncdSettings(state_dir=tmp_path / "state", address="127.0.0.1", port=port,
                                       hosts_allow=("192.0.2.0/24",)), lambda: list(catalog))
    await svc.start()
    try:
        r = await pull(port, "web", tmp_path / "x")
        assert r.returncode != 0
        await wait_for(lambda: svc.status()["counters"].get("denied", 0) == 1, WAIT, "denied event")
        assert not (tmp_path / "x/etc/marker").exists()
    finally:
        await svc.stop()
