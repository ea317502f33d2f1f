"""The installer's shell runtime ships in its initrd: every runtime.sh, lib/*.sh and transports/*.sh file at
the path the plans source, and as an input of the initrd's cache digest (an edit to a lib builds a new one)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from appliance.boot import bootenv, installer
from appliance.boot.installer import runtime
from appliance.boot.installer.runtime import HERE as RUNTIME_DIR
from appliance.boot.installer.runtime import RUNTIME_PATH, runtime_files


def test_the_initrd_carries_every_runtime_file_at_the_path_plans_source() -> None:
    shipped = runtime_files()
    sources = {p.relative_to(RUNTIME_DIR) for p in shipped.values()}
    assert Path("runtime.sh") in sources and Path("lib/common.sh") in sources
    assert {Path(f"transports/{t}.sh") for t in ("rsync", "bittorrent", "multicast")} <= sources
    assert all(path == f"{RUNTIME_PATH.lstrip('/')}/{p.relative_to(RUNTIME_DIR)}" for path, p in shipped.items())
    # and the per-machine paths the runtime reads (lib/system.sh)
    assert sources == {p.relative_to(RUNTIME_DIR) for p in RUNTIME_DIR.rglob("*.sh")
                       if p.name not in ("init.sh", "udhcpc.sh")} | {Path("per-machine.paths")}


def test_an_edit_to_a_lib_file_changes_the_initrd_digest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if shutil.which("sfdisk") is None or not bootenv.BUSYBOX.exists():
        pytest.skip("the installer's tools are not installed (make deps)")
    kernel = bootenv.Kernel("linux-image-test", "6.0.0-test", tmp_path, tmp_path / "vmlinuz", tmp_path)
    spec = installer.installer_spec(kernel)
    assert {k: v for k, v in spec.files.items() if k.startswith(RUNTIME_PATH.lstrip("/"))} == runtime_files()
    before = bootenv._input_digest(spec)
    copy = tmp_path / "runtime"
    shutil.copytree(RUNTIME_DIR, copy)
    (copy / "lib/common.sh").write_text((copy / "lib/common.sh").read_text() + "# an edit\n")
    monkeypatch.setattr(runtime, "HERE", copy)
    assert bootenv._input_digest(installer.installer_spec(kernel)) != before
