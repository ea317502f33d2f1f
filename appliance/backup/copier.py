"""Copying trees for backup and restore: every file type, owner, mode, mtime, extended attributes (ACLs are
system.posix_acl_*), and hard links kept — image versions share the inodes of their unchanged files, and a
copy that broke them would multiply the size of the image store by the number of versions.

Regular files are hashed while they are copied (one read). A directory gets its mode, owner and mtime after
its contents are in (writing into it moves its mtime, and a 0500 directory could not be filled).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass, field

from appliance.backup.manifest import BackupError, Entry, display, entry_of

_CHUNK = 1 << 20


def _copy_xattrs(src: str, dst: str) -> None:
    try:
        names = os.listxattr(src, follow_symlinks=False)
    except OSError:
        return
    for name in names:
        try:
            os.setxattr(dst, name, os.getxattr(src, name, follow_symlinks=False), follow_symlinks=False)
        except OSError as e:
            if e.errno not in (errno.EPERM, errno.ENOTSUP):  # user.* on a symlink, a filesystem without them
                raise


def _copy_file(src: str, dst: str, progress: Callable[[int], None]) -> str:
    """Copy and hash; a chunk of zeros becomes a hole (disk images in a tree stay sparse)."""
    h = hashlib.sha256()
    size = 0
    with open(src, "rb", buffering=0) as fin:
        fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            while chunk := fin.read(_CHUNK):
                h.update(chunk)
                size += len(chunk)
                if chunk.count(0) == len(chunk):
                    os.lseek(fd, len(chunk), os.SEEK_CUR)
                else:
                    view = memoryview(chunk)
                    while view:
                        view = view[os.write(fd, view):]
                progress(len(chunk))
            os.ftruncate(fd, size)  # a file that ends in a hole
        finally:
            os.close(fd)
    return h.hexdigest()


def _set_meta(dst: str, e: Entry) -> None:
    """Owner, then mode (chown clears setuid bits), then mtime; symlinks: owner and mtime only."""
    if e.type == "symlink":
        os.lchown(dst, e.uid, e.gid)
        os.utime(dst, ns=(e.mtime_ns, e.mtime_ns), follow_symlinks=False)
        return
    os.chown(dst, e.uid, e.gid)
    os.chmod(dst, e.mode)
    os.utime(dst, ns=(e.mtime_ns, e.mtime_ns))


@dataclass
class Copier:
    """Copies entries into a new tree, keeping hard links by source inode; collects the copied entries
    (for the manifest) and the hard-link groups."""

    progress: Callable[[int], None] = lambda n: None
    on_entry: Callable[[Entry], None] = lambda e: None
    entries: list[Entry] = field(default_factory=list)
    _first: dict[tuple[int, int], tuple[str, str, str | None]] = field(default_factory=dict)  # inode -> (dst, rel, sha)
    _groups: dict[str, list[str]] = field(default_factory=dict)  # first rel -> every rel of that inode
    _dirs: list[tuple[str, Entry]] = field(default_factory=list)

    @property
    def links(self) -> list[list[str]]:
        return [group for group in self._groups.values() if len(group) > 1]

    def copy(self, src: str, dst: str, rel: str, meta: Entry | None = None) -> Entry:
        """Copy one entry (not a directory's contents) from `src` to `dst`, recorded under `rel`; `meta`:
        the owner, mode and mtime to give it (restore: the manifest's), else the source's."""
        st = os.lstat(src)
        linked = st.st_nlink > 1 and not stat.S_ISDIR(st.st_mode)  # rsync -H links devices and FIFOs too
        if linked and (st.st_dev, st.st_ino) in self._first:
            first_dst, first_rel, sha = self._first[(st.st_dev, st.st_ino)]
            os.link(first_dst, dst, follow_symlinks=False)
            self._groups[first_rel].append(rel)
            e = entry_of(dst, rel, os.lstat(dst), sha)
            self.entries.append(e)
            self.on_entry(e)
            return e
        e = entry_of(src, rel, st)
        sha = None
        if e.type == "file":
            sha = _copy_file(src, dst, self.progress)
        elif e.type == "dir":
            os.mkdir(dst, 0o700)
        elif e.type == "symlink":
            os.symlink(os.readlink(src), dst)
        elif e.type == "fifo":
            os.mkfifo(dst, 0o600)
        else:  # char, block
            os.mknod(dst, stat.S_IFMT(st.st_mode) | 0o600, st.st_rdev)
        _copy_xattrs(src, dst)
        if linked:
            self._first[(st.st_dev, st.st_ino)] = (dst, rel, sha)
            self._groups[rel] = [rel]
        meta = meta or e
        e = Entry(path=rel, type=e.type, mode=meta.mode, uid=meta.uid, gid=meta.gid, mtime_ns=meta.mtime_ns,
                  size=e.size, sha256=sha, target=e.target, rdev=e.rdev, xattrs=e.xattrs)
        if e.type == "dir":
            self._dirs.append((dst, e))
        else:
            _set_meta(dst, e)
        self.entries.append(e)
        self.on_entry(e)
        return e

    def copy_tree(self, src: str, dst: str, rel: str, *, volatile: bool = False) -> None:
        """`src` and everything under it, depth-first by name. `volatile`: an entry that vanishes between
        listing and copying is skipped (the state dir's own files); otherwise it is an error (an image
        version is immutable: one that vanishes was removed while the backup ran)."""
        try:
            e = self.copy(src, dst, rel)
        except FileNotFoundError:
            if volatile:
                return
            raise BackupError(f"{display(src)} vanished while it was copied (removed meanwhile?)") from None
        if e.type != "dir":
            return
        try:
            names = sorted(os.listdir(src), key=lambda n: n.encode("utf-8", "surrogateescape"))
        except OSError as err:
            raise BackupError(f"cannot list {display(src)}: {err.strerror}") from None
        for name in names:
            self.copy_tree(os.path.join(src, name), os.path.join(dst, name), f"{rel}/{name}", volatile=volatile)

    def record(self, path: str, rel: str) -> Entry:
        """A file made in place (the database snapshot): hash it and list it."""
        e = entry_of(path, rel, os.lstat(path))
        if e.type == "file":
            with open(path, "rb", buffering=0) as f:
                digest = hashlib.file_digest(f, "sha256").hexdigest()
            e = Entry(**{**{f: getattr(e, f) for f in e.__struct_fields__}, "sha256": digest})
        self.entries.append(e)
        self.on_entry(e)
        return e

    def finish(self) -> None:
        """Give the directories their metadata, deepest first."""
        for dst, e in reversed(self._dirs):
            with contextlib.suppress(FileNotFoundError):
                _set_meta(dst, e)
        self._dirs.clear()
