"""The CPU architecture of a captured tree: the ELF header of a binary every system has (pure Python, no
`file`), else the master's `uname -m` as prepareclient recorded it (etc/systemimager/prepareclient.info).

The tree is another machine's root: its symbolic links (merged /usr: bin -> usr/bin; /bin/sh -> dash;
absolute targets) are resolved inside the tree, never on this host.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from protocols.arch import ELF_HEADER_BYTES, canonical_arch, elf_arch

# Binaries every Linux root has, in order of trust: the shell and env are what its scripts run.
PROBES = ("bin/sh", "usr/bin/env", "bin/ls", "usr/bin/ls", "sbin/init", "lib/systemd/systemd")
_MAX_LINKS = 40  # as the kernel's ELOOP limit


def resolve_in_tree(root: Path, relative: str) -> Path | None:
    """`relative` inside `root` with every symlink followed as the tree's own machine would (absolute targets
    start again at `root`, `..` stops at it); None if it does not resolve to an existing file."""
    parts = [p for p in relative.split("/") if p not in ("", ".")]
    done: list[str] = []
    hops = 0
    while parts:
        part = parts.pop(0)
        if part == "..":
            if done:
                done.pop()
            continue
        path = root.joinpath(*done, part)
        try:
            st = os.lstat(path)
        except OSError:
            return None
        if stat.S_ISLNK(st.st_mode):
            hops += 1
            if hops > _MAX_LINKS:
                return None
            target = os.readlink(path)
            if target.startswith("/"):
                done = []
            parts = [p for p in target.split("/") if p not in ("", ".")] + parts
            continue
        done.append(part)
    final = root.joinpath(*done)
    return final if final.is_file() and not final.is_symlink() else None


def tree_arch(root: Path) -> str | None:
    """The architecture of the first probe binary that is an ELF file we know; None if none is."""
    for probe in PROBES:
        path = resolve_in_tree(root, probe)
        if path is None:
            continue
        try:
            with open(path, "rb") as f:
                arch = elf_arch(f.read(ELF_HEADER_BYTES))
        except OSError:
            continue
        if arch is not None:
            return arch
    return None


def reported_arch(si_dir: Path) -> str | None:
    """The master's `uname -m` from prepareclient.info (machine=...), canonical; None if not reported."""
    try:
        text = (si_dir / "prepareclient.info").read_text(errors="replace")
    except OSError:
        return None
    for line in text.splitlines():
        key, _, value = line.partition("=")
        if key.strip() == "machine" and value.strip():
            return canonical_arch(value)
    return None
