"""Image versions on disk and in the store, from the CLI (offline: its own SQLite connection).

The CLI writes the store directly rather than asking the daemon: a capture can take an hour and
must not depend on the daemon running. SQLite in WAL mode makes the committed row visible to a
running daemon at once (its rsync supervisor re-reads the catalog every couple of seconds); the
daemon's own writes and ours are serialised by SQLite's lock (busy timeout 10 s).

Registration is the one step that must be atomic: the tree is renamed from images/.staging/ to
images/NAME/vN inside the transaction that inserts the row, with SIGINT/SIGTERM/SIGHUP held off,
so there is never a row without its tree, nor (short of a crash in between) a tree without a row.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from appliance.images import manifest
from appliance.images.arch import tree_arch
from domain.errors import Conflict, Invalid, NotFound
from protocols.names import image_name
from state.db import connect, db_path, transaction
from state.images import ImageVersion, delete_version, get_version, hosts_using, insert_version, list_versions, newest

_HELD_SIGNALS = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}


class ImageError(RuntimeError):
    """An image operation cannot be done; the message says why and what to do."""


# The kinds a front end tells apart (the CLI's exit codes 2, 3 and 4; the API's 400, 404 and 409): each is
# also the domain's error of that kind. A plain ImageError is a failure (a copy that failed, an interrupt).
class BadVersion(ImageError, Invalid):
    """Not a version number."""


class ImageNotFound(ImageError, NotFound):
    """No such image, version or work tree."""


class ImageBusy(ImageError, Conflict):
    """It exists already, or another capture or commit of it is running."""


def parse_version(text: str) -> int:
    m = re.fullmatch(r"v?(\d+)", text.strip())
    if not m or int(m.group(1)) < 1:
        raise BadVersion(f"{text!r} is not a version (v1, v2, ... or 1, 2, ...)")
    return int(m.group(1))


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def held_signals() -> Iterator[None]:
    """Delay SIGINT/SIGTERM/SIGHUP across a few system calls that must happen together."""
    old = signal.pthread_sigmask(signal.SIG_BLOCK, _HELD_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


@dataclass(frozen=True, slots=True)
class ImagePaths:
    state_dir: Path

    @property
    def images(self) -> Path:
        return self.state_dir / "images"

    @property
    def staging(self) -> Path:
        return self.images / ".staging"

    @property
    def work(self) -> Path:
        return self.images / ".work"

    @property
    def trash(self) -> Path:
        return self.images / ".trash"

    @property
    def scripts(self) -> Path:
        return self.state_dir / "scripts"

    def tree(self, name: str, version: int) -> Path:
        return self.images / name / f"v{version}"

    def manifest(self, name: str, version: int) -> Path:
        return self.images / name / f"v{version}.manifest.gz"

    def script(self, name: str) -> Path:
        return self.scripts / f"{name}.master"


class Catalog:
    """The images of one state directory: rows in the store and trees under images/."""

    def __init__(self, state_dir: Path, clock: Any = time.time) -> None:
        self.paths = ImagePaths(state_dir)
        self.clock = clock
        self._conn: sqlite3.Connection | None = None

    @property
    def conn(self) -> sqlite3.Connection:
        if self._conn is None:
            self._conn = connect(db_path(self.paths.state_dir))
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    # -- reading ----------------------------------------------------------------------------------

    def versions(self, name: str | None = None) -> list[ImageVersion]:
        return list_versions(self.conn, name)

    def get(self, name: str, version: int | None = None) -> ImageVersion:
        iv = newest(self.conn, name) if version is None else get_version(self.conn, name, version)
        if iv is None:
            known = sorted({v.name for v in self.versions()})
            if version is None or not self.versions(name):
                raise ImageNotFound(f"no image named {name!r}" + (f" (images: {', '.join(known)})" if known else
                                                               " (no images yet: use getimage)"))
            have = ", ".join(f"v{v.version}" for v in self.versions(name))
            raise ImageNotFound(f"image {name} has no version v{version} (it has {have})")
        return iv

    def newest(self, name: str) -> ImageVersion | None:
        return newest(self.conn, name)

    def hosts_using(self, name: str, version: int) -> list[str]:
        return hosts_using(self.conn, name, version)

    def next_version(self, name: str) -> int:
        """One past the highest version in the store or on disk (an orphaned tree is never overwritten)."""
        top = newest(self.conn, name)
        n = top.version if top else 0
        folder = self.paths.images / name
        if folder.is_dir():
            for child in folder.iterdir():
                m = re.fullmatch(r"v(\d+)", child.name)
                if m:
                    n = max(n, int(m.group(1)))
        return n + 1

    # -- staging ----------------------------------------------------------------------------------

    @contextlib.contextmanager
    def lock(self, name: str) -> Iterator[None]:
        """One capture/commit per image name at a time."""
        self.paths.staging.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.paths.staging / f"{name}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise ImageBusy(f"another getimage or commit of image {name} is running") from None
            yield
        finally:
            os.close(fd)

    def new_staging(self, name: str) -> Path:
        self.paths.staging.mkdir(parents=True, exist_ok=True)
        os.chmod(self.paths.staging, 0o700)  # half-pulled trees are nobody's business
        path = self.paths.staging / f"{name}.{os.getpid()}"
        if path.exists():
            remove_tree(path)
        path.mkdir()
        return path

    def clean_stale_staging(self) -> list[Path]:
        """Remove staging left by a capture that died (its pid is gone)."""
        removed = []
        if not self.paths.staging.is_dir():
            return removed
        for child in self.paths.staging.iterdir():
            if child.name.endswith(".lock"):
                continue
            m = re.fullmatch(r".+\.(\d+)(?:\.[a-z]+(?:\.gz)?)?", child.name)
            if m and not _pid_alive(int(m.group(1))):
                remove_tree(child)
                removed.append(child)
        return removed

    # -- registering ------------------------------------------------------------------------------

    def register(self, name: str, staged: Path, *, source: str, layout_json: str | None,
                 note: str | None = None, previous: ImageVersion | None = None,
                 version: int | None = None, arch: str | None = None) -> ImageVersion:
        """Make `staged` the next version of `name` (or `version`: a satellite keeps its primary's
        numbers): manifest, then row + rename in one transaction. Its architecture is the tree's own (its
        ELF binaries), else `arch` (what the master reported)."""
        image_name(name)  # it becomes a directory and rsync module names: InvalidName if it cannot
        arch = tree_arch(staged) or arch
        reuse: dict[tuple[int, int, int], str] = {}
        if previous is not None:
            with contextlib.suppress(manifest.ManifestError):
                reuse = manifest.reuse_table(manifest.read(self.paths.manifest(previous.name, previous.version)))
        if version is None:
            version = self.next_version(name)
        elif (version < 1 or get_version(self.conn, name, version) is not None
              or self.paths.tree(name, version).exists()):
            raise ImageBusy(f"image {name} v{version} exists already (or is not a version number)")
        staged_manifest = staged.with_name(staged.name + ".manifest.gz")
        summary = manifest.write(staged_manifest, manifest.walk(staged, reuse),
                                 {"image": name, "version": version, "source": source})
        final = self.paths.tree(name, version)
        final.parent.mkdir(parents=True, exist_ok=True)
        iv = ImageVersion(name=name, version=version, path=str(final), created=self.clock(), source=source,
                          files=summary.files, bytes=summary.bytes, layout=layout_json, note=note, arch=arch)
        conn = self.conn
        with held_signals():
            moved = False
            try:
                with transaction(conn):
                    insert_version(conn, iv)
                    os.rename(staged, final)
                    moved = True
                    os.rename(staged_manifest, self.paths.manifest(name, version))
            except BaseException:
                if moved:
                    os.rename(final, staged)
                raise
        return iv

    # -- removing ---------------------------------------------------------------------------------

    def remove(self, name: str, version: int) -> ImageVersion:
        """Remove the version's row and tree (which versions may go: domain.images.versions_to_remove)."""
        iv = self.get(name, version)
        self.paths.trash.mkdir(parents=True, exist_ok=True)
        trash = self.paths.trash / f"{name}.v{version}.{os.getpid()}"
        tree = Path(iv.path)
        conn = self.conn
        with held_signals():
            moved = False
            try:
                with transaction(conn):
                    delete_version(conn, name, version)
                    if tree.exists():
                        os.rename(tree, trash)
                        moved = True
            except BaseException:
                if moved:
                    os.rename(trash, tree)
                raise
        remove_tree(trash)
        with contextlib.suppress(FileNotFoundError):
            self.paths.manifest(name, version).unlink()
        if not self.versions(name):
            with contextlib.suppress(OSError):
                (self.paths.images / name).rmdir()
            with contextlib.suppress(FileNotFoundError):
                self.paths.script(name).unlink()
        return iv

    # -- clone and commit -------------------------------------------------------------------------

    def work_tree(self, name: str) -> Path:
        return self.paths.work / name

    def clone(self, name: str, version: int, new_name: str) -> Path:
        """A writable copy of NAME vN at images/.work/NEW_NAME, to chroot into and edit.

        `cp -a --reflink=auto` copies (sharing blocks copy-on-write where the filesystem can): unlike a
        hard-link copy, editing a file in place can never change the registered version.
        """
        image_name(new_name)
        iv = self.get(name, version)
        work = self.work_tree(new_name)
        if work.exists():
            raise ImageBusy(f"{work} exists: commit it (images commit {new_name}) or remove it first")
        self.paths.work.mkdir(parents=True, exist_ok=True)
        os.chmod(self.paths.work, 0o700)
        tmp = self.paths.work / f".{new_name}.{os.getpid()}"
        try:
            result = subprocess.run(["cp", "-a", "--reflink=auto", f"{iv.path}/.", f"{tmp}/"],
                                    capture_output=True, text=True)
            if result.returncode != 0:
                raise ImageError(f"copying {iv.path} failed: {result.stderr.strip()}")
            (self.paths.work / f"{new_name}.json").write_text(json.dumps(
                {"from": name, "version": version, "created": self.clock()}))
            os.rename(tmp, work)
        finally:
            if tmp.exists():
                remove_tree(tmp)
        return work

    def work_origin(self, new_name: str) -> tuple[str, int]:
        meta = self.paths.work / f"{new_name}.json"
        try:
            data = json.loads(meta.read_text())
            return str(data["from"]), int(data["version"])
        except (OSError, ValueError, KeyError) as e:
            raise ImageNotFound(f"no clone named {new_name} in {self.paths.work} ({e})") from None

    def drop_work(self, new_name: str) -> None:
        remove_tree(self.work_tree(new_name))
        with contextlib.suppress(FileNotFoundError):
            (self.paths.work / f"{new_name}.json").unlink()


def remove_tree(path: Path) -> None:
    """rm -rf (as root every entry is removable; a missing path is fine)."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()
