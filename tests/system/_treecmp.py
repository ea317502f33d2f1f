"""A test-side tree comparison, independent of the imageserver's own manifest code.

Walks two trees with bytes paths and compares, entry by entry: type, permission bits, owner,
content (SHA-256) and size, mtime of non-directories, symlink targets, device numbers, every
extended attribute (user.*, ACLs as system.posix_acl_*), and hard-link groups.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Iterable
from pathlib import Path


def _walk(root: bytes, skip_contents: set[bytes]) -> dict[bytes, os.stat_result]:
    out: dict[bytes, os.stat_result] = {}
    stack = [b""]
    while stack:
        rel = stack.pop()
        full = os.path.join(root, rel) if rel else root
        st = os.lstat(full)
        out[rel or b"."] = st
        if stat.S_ISDIR(st.st_mode) and rel not in skip_contents:
            for name in os.listdir(full):
                stack.append(os.path.join(rel, name) if rel else name)
    return out


def _xattrs(path: bytes) -> dict[str, bytes]:
    try:
        return {n: os.getxattr(path, n, follow_symlinks=False) for n in os.listxattr(path, follow_symlinks=False)}
    except OSError:
        return {}


def _sha(path: bytes) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def describe(root: Path, rel: bytes, st: os.stat_result, mtime: bool = True) -> dict[str, object]:
    full = os.path.join(os.fsencode(root), rel) if rel != b"." else os.fsencode(root)
    d: dict[str, object] = {"type": stat.S_IFMT(st.st_mode), "mode": stat.S_IMODE(st.st_mode), "uid": st.st_uid,
                            "gid": st.st_gid, "xattrs": _xattrs(full)}
    if stat.S_ISREG(st.st_mode):
        d.update(size=st.st_size, sha=_sha(full))
    if stat.S_ISLNK(st.st_mode):
        d["target"] = os.readlink(full)
    if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
        d["rdev"] = (os.major(st.st_rdev), os.minor(st.st_rdev))
    if mtime and not stat.S_ISDIR(st.st_mode):
        d["mtime_ns"] = st.st_mtime_ns
    return d


def link_groups(entries: dict[bytes, os.stat_result]) -> set[frozenset[bytes]]:
    by_inode: dict[int, set[bytes]] = {}
    for rel, st in entries.items():
        if stat.S_ISREG(st.st_mode):
            by_inode.setdefault(st.st_ino, set()).add(rel)
    return {frozenset(paths) for paths in by_inode.values() if len(paths) > 1}


def compare_trees(a: Path, b: Path, *, skip_contents: Iterable[str] = (), ignore: Iterable[str] = (),
                  dir_attrs_of: Iterable[str] = ()) -> list[str]:
    """Differences between trees `a` and `b` (empty: identical).

    skip_contents: directories whose contents are not walked in `a` (excluded mounts); they must be
    empty in `b`. ignore: paths not compared at all. dir_attrs_of: directories (mount points) compared
    by type only.
    """
    skip = {os.fsencode(p) for p in skip_contents}
    ignored = {os.fsencode(p) for p in ignore}
    loose = {os.fsencode(p) for p in dir_attrs_of}
    ea = {k: v for k, v in _walk(os.fsencode(a), skip).items() if k not in ignored}
    eb = {k: v for k, v in _walk(os.fsencode(b), set()).items() if k not in ignored}
    problems: list[str] = []
    for rel in sorted(ea.keys() ^ eb.keys()):
        problems.append(f"{rel!r}: only in {'a' if rel in ea else 'b'}")
    for rel in sorted(ea.keys() & eb.keys()):
        if rel in loose:
            if stat.S_IFMT(ea[rel].st_mode) != stat.S_IFMT(eb[rel].st_mode):
                problems.append(f"{rel!r}: type differs")
            continue
        da, db = describe(a, rel, ea[rel]), describe(b, rel, eb[rel])
        if da != db:
            problems.append(f"{rel!r}: {da} != {db}")
    if link_groups(ea) != link_groups(eb):
        problems.append(f"hard links differ: {link_groups(ea) ^ link_groups(eb)}")
    return problems
