"""The backup manifest: what a whole backup holds, and the check that a directory still is that backup.

`manifest.json` is written last, so a directory without one is an incomplete backup by construction. It
lists every entry (relative path, type, size, SHA-256 of regular files, mode, owner, mtime, symlink target,
device numbers, a digest of the extended attributes), the hard-link groups (paths that are one inode: image
versions share unchanged files), the images and versions it holds, the schema version of the database and
the imageserver version that wrote it.

`verify` reads everything back and stops at the first entry that does not match, naming it: a truncated,
tampered, missing or unlisted file, or a hard link that was lost (e.g. a copy made without -H).
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path

import msgspec

from appliance.images.manifest import xattr_digest

FORMAT = 1
MANIFEST = "manifest.json"
STATE = "state"  # the state dir's files, under this folder of the backup
CONFIG = "config"  # the config file, under this folder
KINDS = {stat.S_IFREG: "file", stat.S_IFDIR: "dir", stat.S_IFLNK: "symlink", stat.S_IFCHR: "char",
         stat.S_IFBLK: "block", stat.S_IFIFO: "fifo"}


class BackupError(RuntimeError):
    """A backup cannot be taken, read or restored; the message names the file and the problem."""


class Entry(msgspec.Struct, omit_defaults=True, frozen=True):
    path: str  # relative to the backup root, "/"-separated
    type: str  # file dir symlink char block fifo
    mode: int  # permission bits with setuid/setgid/sticky
    uid: int
    gid: int
    mtime_ns: int = 0
    size: int = 0
    sha256: str | None = None  # regular files
    target: str | None = None  # symlinks
    rdev: tuple[int, int] | None = None  # device nodes: (major, minor)
    xattrs: str | None = None  # digest of every extended attribute, None if there are none


class ImageRef(msgspec.Struct, frozen=True):
    name: str
    version: int


class Manifest(msgspec.Struct, frozen=True):
    format: int
    imageserver_version: str
    schema_version: int
    created: float
    source_state_dir: str
    config: str | None  # the config file's path in the backup, if one was backed up
    images: list[ImageRef]
    files: list[Entry]
    links: list[list[str]]  # hard-link groups: each a list of paths of one inode (2 or more)

    @property
    def bytes(self) -> int:
        return sum(e.size for e in self.files if e.type == "file")

    def stored_bytes(self, under: str = "") -> int:
        """Bytes of content once per inode (what is read or written: hard links share theirs), of the paths
        under `under/` (all when empty)."""
        again = {rel for group in self.links for rel in group[1:]}
        return sum(e.size for e in self.files if e.type == "file" and e.path not in again
                   and (not under or e.path.startswith(under + "/")))


def entry_of(abs_path: str, rel: str, st: os.stat_result, sha256: str | None = None) -> Entry:
    """The manifest entry of one path as it is now (`sha256` of a regular file, computed by the caller)."""
    kind = KINDS.get(stat.S_IFMT(st.st_mode))
    if kind is None:
        raise BackupError(f"{display(rel)}: a socket or unknown file type cannot be backed up")
    return Entry(path=rel, type=kind, mode=stat.S_IMODE(st.st_mode), uid=st.st_uid, gid=st.st_gid,
                 mtime_ns=st.st_mtime_ns, size=st.st_size if kind == "file" else 0, sha256=sha256,
                 target=os.readlink(abs_path) if kind == "symlink" else None,
                 rdev=(os.major(st.st_rdev), os.minor(st.st_rdev)) if kind in ("char", "block") else None,
                 xattrs=xattr_digest(abs_path))


def display(path: str) -> str:
    """A path for humans: non-UTF-8 bytes shown as \\xNN."""
    return path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def encode(manifest: Manifest) -> bytes:
    # The stdlib's encoder, not msgspec's: file names need not be UTF-8 (surrogate escapes, which it writes
    # as \udcXX and reads back exactly).
    return json.dumps(msgspec.to_builtins(manifest), indent=1).encode()


def write(root: Path, manifest: Manifest) -> None:
    """Write `root/manifest.json` durably (tmp, fsync, rename)."""
    tmp = root / f".{MANIFEST}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, encode(manifest))
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, root / MANIFEST)


def load(root: Path) -> Manifest:
    path = root / MANIFEST
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        if not root.is_dir():
            raise BackupError(f"{root}: no such backup directory") from None
        raise BackupError(f"{root}: no {MANIFEST}, so this is not a whole backup (one that stopped before its "
                          "end has none)") from None
    except OSError as e:
        raise BackupError(f"{path}: {e.strerror}") from None
    try:
        head = json.loads(data)
        if not isinstance(head, dict) or head.get("format") != FORMAT:
            found = head.get("format") if isinstance(head, dict) else None
            raise BackupError(f"{path}: unknown manifest format {found!r} (this imageserver reads format {FORMAT})")
        return msgspec.convert(head, type=Manifest)
    except (ValueError, msgspec.ValidationError) as e:
        raise BackupError(f"{path}: not a valid backup manifest ({e})") from None


def file_sha256(path: str, progress: Callable[[int], None] | None = None) -> str:
    h = hashlib.sha256()
    with open(path, "rb", buffering=0) as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
            if progress is not None:
                progress(len(chunk))
    return h.hexdigest()


def walk(root: Path) -> Iterator[str]:
    """Every path under `root` (relative, "/"-separated), except the manifest itself and its temp file."""
    top = os.fspath(root)
    for dirpath, dirnames, filenames in os.walk(top):
        rel_dir = os.path.relpath(dirpath, top)
        for name in dirnames + filenames:
            rel = name if rel_dir == "." else f"{rel_dir}/{name}"
            if rel not in (MANIFEST, f".{MANIFEST}.tmp"):
                yield rel


def verify(root: Path, manifest: Manifest, newest_schema: int,
           progress: Callable[[int], None] | None = None) -> None:
    """Raise BackupError naming the first entry of `root` that is not as `manifest` says; changes nothing.

    Cheap checks first (presence, type, size, mode, target, links, unlisted files), then every file's SHA-256.
    """
    if manifest.schema_version > newest_schema:
        raise BackupError(f"the backup's database has schema version {manifest.schema_version}, newer than this "
                          f"imageserver knows ({newest_schema}): restore it with imageserver "
                          f"{manifest.imageserver_version} or newer")
    listed = {e.path for e in manifest.files}
    for e in manifest.files:
        path = os.path.join(root, e.path)
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            raise BackupError(f"{display(e.path)}: missing from the backup") from None
        except OSError as err:
            raise BackupError(f"{display(e.path)}: {err.strerror}") from None
        kind = KINDS.get(stat.S_IFMT(st.st_mode))
        if kind != e.type:
            raise BackupError(f"{display(e.path)}: is a {kind or 'socket'}, the manifest says {e.type}")
        if kind == "file" and st.st_size != e.size:
            raise BackupError(f"{display(e.path)}: {st.st_size} bytes, the manifest says {e.size} "
                              f"({'truncated' if st.st_size < e.size else 'changed'})")
        if stat.S_IMODE(st.st_mode) != e.mode:
            raise BackupError(f"{display(e.path)}: mode {stat.S_IMODE(st.st_mode):04o}, the manifest says "
                              f"{e.mode:04o}")
        if kind == "symlink" and os.readlink(path) != e.target:
            raise BackupError(f"{display(e.path)}: points to {os.readlink(path)!r}, the manifest says {e.target!r}")
    for group in manifest.links:
        for rel in group:
            if rel not in listed:
                raise BackupError(f"{display(rel)}: in a hard-link group but not among the files of the manifest")
        first = os.lstat(os.path.join(root, group[0]))
        for rel in group[1:]:
            st = os.lstat(os.path.join(root, rel))
            if (st.st_dev, st.st_ino) != (first.st_dev, first.st_ino):
                raise BackupError(f"{display(rel)}: no longer a hard link of {display(group[0])} (the backup was "
                                  "copied without keeping hard links, e.g. cp -r or rsync without -H)")
    for rel in walk(root):
        if rel not in listed:
            raise BackupError(f"{display(rel)}: not in the manifest (added after the backup was taken)")
    hashed: dict[tuple[int, int], str] = {}  # one read per inode: versions share most of their files
    for e in manifest.files:
        if e.type == "file":
            path = os.path.join(root, e.path)
            st = os.lstat(path)
            digest = hashed.get((st.st_dev, st.st_ino)) or file_sha256(path, progress)
            hashed[(st.st_dev, st.st_ino)] = digest
            if digest != e.sha256:
                raise BackupError(f"{display(e.path)}: content differs from the manifest (SHA-256 {digest}, "
                                  f"expected {e.sha256})")
