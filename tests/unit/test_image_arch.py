"""An image's CPU architecture: the ELF header reader (protocols/arch.py), reading it from a captured tree
whose links are another machine's (appliance/images/arch.py), the rule of which machine runs which image,
discovery rules by CPU, and the images table's migration (existing images are x86_64, with a note)."""

from __future__ import annotations

import os
import platform
import sqlite3
from pathlib import Path

import pytest

from appliance.images.arch import reported_arch, resolve_in_tree, tree_arch
from domain.discovery import DiscoveryError, DiscoveryRule, RuleCpu, first_match
from protocols.arch import canonical_arch, client_runs, elf_arch, matches_client, mismatch
from state.schema import MIGRATIONS


def elf(machine: int, *, bits: int = 64, little: bool = True, e_type: int = 3) -> bytes:
    """An ELF header as far as e_machine, followed by what a real file would have (not read)."""
    order = "little" if little else "big"
    ident = b"\x7fELF" + bytes([2 if bits == 64 else 1, 1 if little else 2, 1, 0]) + bytes(8)
    return ident + e_type.to_bytes(2, order) + machine.to_bytes(2, order) + bytes(44)


@pytest.mark.parametrize(("header", "arch"), [
    (elf(62), "x86_64"),
    (elf(183), "arm64"),
    (elf(3, bits=32), "i386"),
    (elf(40, bits=32), "arm"),
    (elf(243), "riscv64"),
    (elf(21), "ppc64le"),
    (elf(21, little=False), "ppc64"),
    (elf(22, little=False), "s390x"),
    (elf(183, e_type=2), "arm64"),  # an executable, not a PIE: same machine
])
def test_elf_machine_names(header: bytes, arch: str) -> None:
    assert elf_arch(header) == arch


@pytest.mark.parametrize("header", [
    b"", b"\x7fELF", b"#!/bin/sh\n" + bytes(30), elf(62)[:19],
    elf(0x9999),  # a machine we do not know
    b"\x7fELF" + bytes([3, 1]) + elf(62)[6:],  # no such ELF class
    b"\x7fELF" + bytes([2, 0]) + elf(62)[6:],  # no byte order
])
def test_not_elf_or_unknown_is_none(header: bytes) -> None:
    assert elf_arch(header) is None


def test_this_hosts_own_binary() -> None:
    with open("/usr/bin/env", "rb") as f:
        assert elf_arch(f.read(20)) == canonical_arch(platform.machine())


@pytest.mark.parametrize(("word", "arch"), [("aarch64", "arm64"), ("arm64", "arm64"), ("x86_64", "x86_64"),
                                            ("amd64", "x86_64"), ("i686", "i386"), ("armv7l", "arm"),
                                            (" AARCH64\n", "arm64"), ("sparc64", None), ("", None)])
def test_uname_words(word: str, arch: str | None) -> None:
    assert canonical_arch(word) == arch


def arm64_tree(root: Path, merged_usr: bool = True) -> Path:
    """A Debian arm64 root's shape: bin -> usr/bin (merged /usr), /bin/sh -> dash, /usr/bin/env absolute."""
    (root / "usr/bin").mkdir(parents=True)
    (root / "usr/bin/dash").write_bytes(elf(183))
    if merged_usr:
        os.symlink("usr/bin", root / "bin")
    else:
        (root / "bin").mkdir()
        (root / "bin/dash").write_bytes(elf(183))
    os.symlink("dash", root / "usr/bin/sh")
    os.symlink("/usr/bin/dash", root / "usr/bin/env")  # absolute: the tree's own /usr/bin/dash
    return root


def test_tree_arch_follows_the_trees_links_inside_it(tmp_path: Path) -> None:
    root = arm64_tree(tmp_path / "img")
    assert resolve_in_tree(root, "bin/sh") == root / "usr/bin/dash"
    assert resolve_in_tree(root, "usr/bin/env") == root / "usr/bin/dash"
    assert tree_arch(root) == "arm64"
    flat = arm64_tree(tmp_path / "flat", merged_usr=False)
    assert tree_arch(flat) == "arm64"


def test_links_never_leave_the_tree(tmp_path: Path) -> None:
    root = tmp_path / "img"
    (root / "bin").mkdir(parents=True)
    # On this host /usr/bin/env is an x86_64 ELF: an image whose /bin/sh points there must not read it.
    os.symlink("/usr/bin/env", root / "bin/sh")
    os.symlink("../../../../../../usr/bin/env", root / "bin/ls")
    os.symlink("loop", root / "bin/loop")
    assert resolve_in_tree(root, "bin/sh") is None
    assert resolve_in_tree(root, "bin/ls") is None
    assert resolve_in_tree(root, "bin/loop") is None  # a link to itself ends, it does not hang
    assert tree_arch(root) is None
    assert tree_arch(tmp_path / "empty") is None


def test_reported_uname_is_the_fallback(tmp_path: Path) -> None:
    si = tmp_path / "etc/systemimager"
    si.mkdir(parents=True)
    assert reported_arch(si) is None
    (si / "prepareclient.info").write_text("host=master\nkernel=6.1.0-28-arm64\n")
    assert reported_arch(si) is None  # an older prepareclient: nothing reported
    (si / "prepareclient.info").write_text("host=master\nkernel=6.1.0-28-arm64\nmachine=aarch64\n")
    assert reported_arch(si) == "arm64"


def test_which_machine_runs_which_image() -> None:
    assert mismatch("x86_64", 7) is None and mismatch("x86_64", 16) is None and mismatch("x86_64", 0) is None
    assert mismatch("arm64", 11) is None and mismatch("arm64", 19) is None
    why = mismatch("arm64", 7)
    assert why is not None and "arm64" in why and "client architecture 7 (x64 UEFI" in why and "x86_64" in why
    assert mismatch("x86_64", 19) is not None and mismatch("x86_64", 11) is not None
    assert mismatch("i386", 0) is None and mismatch("i386", 7) is not None
    # Nothing is refused on a guess: an unknown image architecture, machine, or client code.
    assert mismatch(None, 7) is None and mismatch("arm64", None) is None and mismatch("arm64", 4242) is None
    assert client_runs(16) == frozenset({"x86_64"}) and client_runs(4242) is None


def test_discovery_rules_match_the_cpu_of_every_client_architecture() -> None:
    arm = DiscoveryRule(hostname="arm{n}", image="deb-arm64", cpu=RuleCpu.from_config("aarch64"))
    x86 = DiscoveryRule(hostname="pc{n}", image="deb-amd64", cpu=RuleCpu.from_config("x86_64"))
    assert arm.cpu == "arm64"
    rules = [arm, x86]
    assert first_match(rules, "52:54:00:00:00:01", 11, "PXEClient:Arch:00011") is arm
    assert first_match(rules, "52:54:00:00:00:01", 19, "HTTPClient:Arch:00019") is arm
    assert first_match(rules, "52:54:00:00:00:01", 7, "PXEClient") is x86
    assert first_match(rules, "52:54:00:00:00:01", 16, "HTTPClient") is x86
    assert first_match(rules, "52:54:00:00:00:01", None, None) is None  # no option 93: no CPU known
    assert matches_client("arm64", 22) and not matches_client("arm64", 7)
    with pytest.raises(DiscoveryError, match="not a CPU architecture"):
        RuleCpu.from_config("sparc")


def test_migration_makes_existing_images_x86_64_with_a_note() -> None:
    at = next(n for n, script in enumerate(MIGRATIONS) if "images ADD COLUMN arch" in script)
    conn = sqlite3.connect(":memory:")
    for script in MIGRATIONS[:at]:
        conn.executescript(script)
    conn.execute("INSERT INTO images (name, version, path, created, note) VALUES ('old', 1, '/i/old/v1', 0, NULL)")
    conn.execute("INSERT INTO images (name, version, path, created, note) VALUES ('old', 2, '/i/old/v2', 0, "
                 "'rsync: some files vanished')")
    conn.executescript(MIGRATIONS[at])
    rows = conn.execute("SELECT version, arch, note FROM images ORDER BY version").fetchall()
    assert [r[1] for r in rows] == ["x86_64", "x86_64"]
    assert rows[0][2] == "architecture x86_64 assumed (captured before images recorded it)"
    assert rows[1][2].startswith("rsync: some files vanished; architecture x86_64 assumed")
    conn.execute("INSERT INTO images (name, version, path, created) VALUES ('new', 1, '/i/new/v1', 0)")
    assert conn.execute("SELECT arch FROM images WHERE name = 'new'").fetchone() == (None,)
