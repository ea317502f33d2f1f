"""Manifests: what `images diff` and `images verify` compare, on real trees."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from appliance.images import manifest


def tree(root: Path) -> Path:
    (root / "etc").mkdir(parents=True)
    (root / "etc/motd").write_text("hello\n")
    (root / "etc/keep").write_text("same\n")
    (root / "bin").mkdir()
    (root / "bin/tool").write_bytes(b"\x7fELF" + b"\0" * 100)
    os.link(root / "bin/tool", root / "bin/tool-alias")
    os.symlink("../etc/motd", root / "bin/motd-link")
    os.mkfifo(root / "fifo")
    name = os.fsdecode(b"caf\xe9")  # not UTF-8
    (root / name).write_text("latin-1 name")
    os.setxattr(root / "etc/keep", "user.tag", b"v1")
    return root


def test_compare_reports_each_kind_of_change_and_ignores_directory_mtimes(tmp_path: Path) -> None:
    a = tree(tmp_path / "a")
    b = tmp_path / "b"
    subprocess.run(["cp", "-a", str(a), str(b)], check=True)
    before = list(manifest.walk(b))
    (b / "etc/motd").write_text("changed\n")
    (b / "etc/new").write_text("new\n")
    os.unlink(b / os.fsdecode(b"caf\xe9"))
    os.chmod(b / "bin/tool", 0o4755)
    os.chown(b / "etc/keep", 1234, 5678)
    os.setxattr(b / "etc/keep", "user.tag", b"v2")
    os.unlink(b / "bin/motd-link")
    os.symlink("/etc/motd", b / "bin/motd-link")
    changes = {c.path: (c.change, c.what) for c in manifest.compare(before, list(manifest.walk(b)))}
    assert changes.pop("etc/motd")[1][:1] == ("content",)
    assert changes.pop("etc/new") == ("added", ())
    assert changes.pop(os.fsdecode(b"caf\xe9")) == ("removed", ())
    assert changes.pop("bin/tool") == ("changed", ("mode",))
    assert changes.pop("bin/tool-alias") == ("changed", ("mode",))  # same inode
    assert set(changes.pop("etc/keep")[1]) == {"owner", "xattrs"}
    assert "target" in changes.pop("bin/motd-link")[1]
    assert changes == {}  # "etc" and "." only changed their mtime


def test_manifest_file_round_trips_non_utf8_names_links_and_reuses_digests(tmp_path: Path) -> None:
    a = tree(tmp_path / "a")
    entries = list(manifest.walk(a))
    path = tmp_path / "v1.manifest.gz"
    summary = manifest.write(path, iter(entries), {"image": "t", "version": 1})
    again = manifest.read(path)
    assert again == entries
    assert summary.files == len(entries)
    alias = next(e for e in again if e.path == "bin/tool-alias")
    assert alias.link == "bin/tool"
    assert next(e for e in again if e.path == "fifo").kind == "p"
    assert manifest.display(os.fsdecode(b"caf\xe9")) == "caf\\xe9"
    # A digest known for (inode, size, mtime) is taken instead of reading the file again.
    st = os.stat(a / "etc/motd")
    fake = {(st.st_ino, st.st_size, st.st_mtime_ns): "0" * 64}
    assert next(e for e in manifest.walk(a, fake) if e.path == "etc/motd").sha256 == "0" * 64
