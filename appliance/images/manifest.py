"""An image version's manifest: one record per entry of its tree, written once at registration.

A registered version is immutable; nothing in the imageserver writes into it (clone copies out,
--link-dest only reads it). The manifest is how that is checked (`images verify`) and how versions
are compared (`images diff`) without walking two trees: type, permission bits, owner, size, mtime,
SHA-256 of content, symlink target, device numbers, a digest of all extended attributes (ACLs are
the system.posix_acl_* attributes) and hard-link groups (`link`: the first path of the same inode).

Stored as gzip'd JSON lines beside the tree (images/NAME/vN.manifest.gz). Paths are str with
surrogate escapes for non-UTF-8 bytes (JSON carries them as \\udcXX escapes, round-trip exact).
Hashing reuses the previous version's digest for an inode it shares with it (--link-dest links),
so a new version costs a hash only for what changed.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import stat
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

FORMAT = 1
_KINDS = {stat.S_IFREG: "f", stat.S_IFDIR: "d", stat.S_IFLNK: "l", stat.S_IFCHR: "c", stat.S_IFBLK: "b",
          stat.S_IFIFO: "p", stat.S_IFSOCK: "s"}


class ManifestError(RuntimeError):
    """A manifest cannot be read or a tree cannot be walked; the message names the path."""


@dataclass(frozen=True, slots=True)
class Entry:
    path: str  # relative to the tree root, "/"-separated; "." is the root itself
    kind: str  # f d l c b p s
    mode: int  # permission bits including setuid/setgid/sticky
    uid: int
    gid: int
    size: int = 0
    mtime_ns: int = 0
    sha256: str | None = None  # regular files
    target: str | None = None  # symlinks
    rdev: tuple[int, int] | None = None  # device nodes (major, minor)
    xattrs: str | None = None  # digest of every extended attribute (names and values), None if none
    link: str | None = None  # hard links: the first path (in walk order) with the same inode
    ino: int = 0  # for digest reuse between versions; not compared

    def to_json(self) -> str:
        d = {k: v for k, v in asdict(self).items() if (v is not None and v != 0) or k in ("mode", "uid", "gid")}
        return json.dumps(d, separators=(",", ":"))

    @classmethod
    def from_json(cls, line: str) -> Entry:
        d = json.loads(line)
        if "rdev" in d:
            d["rdev"] = tuple(d["rdev"])
        return cls(**d)


def display(path: str) -> str:
    """A path for humans: non-UTF-8 bytes shown as \\xNN."""
    return path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def xattr_digest(path: str) -> str | None:
    try:
        names = sorted(os.listxattr(path, follow_symlinks=False))
    except OSError:
        return None
    if not names:
        return None
    h = hashlib.sha256()
    for name in names:
        try:
            value = os.getxattr(path, name, follow_symlinks=False)
        except OSError:
            continue
        h.update(name.encode("utf-8", "surrogateescape") + b"\0" + len(value).to_bytes(8, "big") + value)
    return h.hexdigest()


def _file_digest(path: str) -> str:
    with open(path, "rb", buffering=0) as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def walk(root: Path, reuse: dict[tuple[int, int, int], str] | None = None) -> Iterator[Entry]:
    """Every entry under `root` (root first, then depth-first by name). `reuse`: (ino, size, mtime_ns) -> digest."""
    reuse = reuse or {}
    seen_inodes: dict[int, str] = {}
    top = os.fspath(root)

    def entry(abs_path: str, rel: str, st: os.stat_result) -> Entry:
        kind = _KINDS.get(stat.S_IFMT(st.st_mode), "?")
        sha = target = rdev = link = None
        if kind == "f":
            if st.st_nlink > 1:
                first = seen_inodes.setdefault(st.st_ino, rel)
                link = first if first != rel else None
            key = (st.st_ino, st.st_size, st.st_mtime_ns)
            sha = reuse.get(key) or _file_digest(abs_path)
        elif kind == "l":
            target = os.readlink(abs_path)
        elif kind in ("c", "b"):
            rdev = (os.major(st.st_rdev), os.minor(st.st_rdev))
        return Entry(path=rel, kind=kind, mode=stat.S_IMODE(st.st_mode), uid=st.st_uid, gid=st.st_gid,
                     size=st.st_size if kind == "f" else 0, mtime_ns=st.st_mtime_ns, sha256=sha, target=target,
                     rdev=rdev, xattrs=xattr_digest(abs_path), link=link, ino=st.st_ino)

    def recurse(abs_dir: str, rel_dir: str) -> Iterator[Entry]:
        try:
            names = sorted(os.listdir(abs_dir), key=lambda n: n.encode("utf-8", "surrogateescape"))
        except OSError as e:
            raise ManifestError(f"cannot list {display(abs_dir)}: {e.strerror}") from None
        for name in names:
            abs_path = os.path.join(abs_dir, name)
            rel = f"{rel_dir}/{name}" if rel_dir != "." else name
            try:
                st = os.lstat(abs_path)
                e = entry(abs_path, rel, st)
            except OSError as err:
                raise ManifestError(f"cannot read {display(abs_path)}: {err.strerror}") from None
            yield e
            if e.kind == "d":
                yield from recurse(abs_path, rel)

    yield entry(top, ".", os.lstat(top))
    yield from recurse(top, ".")


@dataclass(frozen=True, slots=True)
class Summary:
    files: int  # entries of every kind (what `images list` shows as FILES)
    bytes: int  # apparent size of regular files


def write(path: Path, entries: Iterator[Entry], header: dict[str, object]) -> Summary:
    """Write a manifest atomically (tmp + rename); returns the counts."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    files = size = 0
    with gzip.open(tmp, "wt", encoding="utf-8", compresslevel=6) as out:
        out.write(json.dumps({"format": FORMAT, **header}) + "\n")
        for e in entries:
            out.write(e.to_json() + "\n")
            files += 1
            if e.kind == "f":
                size += e.size
    os.replace(tmp, path)
    return Summary(files=files, bytes=size)


def read(path: Path) -> list[Entry]:
    try:
        with gzip.open(path, "rt", encoding="utf-8") as f:
            header = json.loads(f.readline())
            if header.get("format") != FORMAT:
                raise ManifestError(f"{path}: unknown manifest format {header.get('format')!r}")
            return [Entry.from_json(line) for line in f if line.strip()]
    except FileNotFoundError:
        raise ManifestError(f"{path}: no manifest (the version was not registered by this imageserver)") from None
    except (OSError, ValueError, TypeError) as e:
        raise ManifestError(f"{path}: unreadable manifest ({e})") from None


def reuse_table(entries: list[Entry]) -> dict[tuple[int, int, int], str]:
    return {(e.ino, e.size, e.mtime_ns): e.sha256 for e in entries if e.kind == "f" and e.sha256}


# --- comparing --------------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Change:
    path: str
    change: str  # "added" | "removed" | "changed"
    what: tuple[str, ...] = ()  # for "changed": content, type, mode, owner, mtime, target, device, xattrs, links


def compare(old: list[Entry], new: list[Entry]) -> list[Change]:
    """What changed from `old` to `new`, by path. A directory's mtime alone is not a change (it moves
    whenever an entry inside is added or removed, which is already listed)."""
    a = {e.path: e for e in old}
    b = {e.path: e for e in new}
    out: list[Change] = []
    for path in sorted(a.keys() | b.keys(), key=lambda p: p.encode("utf-8", "surrogateescape")):
        x, y = a.get(path), b.get(path)
        if x is None:
            out.append(Change(path, "added"))
        elif y is None:
            out.append(Change(path, "removed"))
        else:
            what = _differences(x, y)
            if what:
                out.append(Change(path, "changed", what))
    return out


def _differences(x: Entry, y: Entry) -> tuple[str, ...]:
    if x.kind != y.kind:
        return ("type",)
    what = []
    if x.sha256 != y.sha256 or x.size != y.size:
        what.append("content")
    if x.mode != y.mode:
        what.append("mode")
    if (x.uid, x.gid) != (y.uid, y.gid):
        what.append("owner")
    if x.kind != "d" and x.mtime_ns != y.mtime_ns:
        what.append("mtime")
    if x.target != y.target:
        what.append("target")
    if x.rdev != y.rdev:
        what.append("device")
    if x.xattrs != y.xattrs:
        what.append("xattrs")
    if x.link != y.link:
        what.append("links")
    return tuple(what)
