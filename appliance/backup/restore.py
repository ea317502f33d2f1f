"""`imageserver restore DIR`: a verified backup into an empty state dir; nothing changes unless it is whole.

Order: (1) the manifest and every file are checked (present, size, mode, hard links, SHA-256, schema not
newer than ours): a failure names the first bad file and leaves everything as it was; (2) the state dir
is checked: nobody may hold its lock (a daemon running on it) and it must be empty, unless --force, when
it is moved aside (never deleted); (3) the state is copied into a new sibling directory, holding its lock
from the start, its image paths re-homed, and renamed into place in one step.

The config file of the backup is written only where there is none (a new box): an existing config is the
site's (its interface and addresses may differ from the old box's) and is kept.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from appliance.backup.copier import Copier
from appliance.backup.manifest import CONFIG, STATE, BackupError, Manifest, load, verify
from appliance.backup.progress import Progress
from appliance.config import load_config
from appliance.tls import TLS_DIR
from state.backup import CURRENT_SCHEMA, rehome_images
from state.db import DB_NAME, StoreError
from state.statelock import LOCK_NAME, StateLock, StateLocked, acquire, holder


@dataclass(frozen=True, slots=True)
class Summary:
    state_dir: str
    files: int
    bytes: int
    images: int
    versions: int
    schema_version: int
    seconds: float
    moved_aside: str | None  # where the old state went (--force)
    config: str  # "written FILE" | "kept FILE" | "none in the backup"


class Refused(BackupError):
    """The target is in use or not empty: a conflict, not a bad backup."""


def check(backup: Path, progress: Progress | None = None) -> Manifest:
    """Load and verify a backup (changes nothing)."""
    progress = progress or Progress(enabled=False)
    manifest = load(backup)
    progress.start("verify", manifest.stored_bytes())
    try:
        verify(backup, manifest, CURRENT_SCHEMA, progress.bytes)
    finally:
        progress.end()
    return manifest


def target_config(backup: Path, manifest: Manifest, config_path: Path) -> tuple[Path, bool]:
    """(the state dir to restore into, whether the backup's config is to be written at `config_path`)."""
    if config_path.exists():
        return load_config(config_path).state_dir, False
    if manifest.config is None:
        raise BackupError(f"there is no config file {config_path} and the backup holds none: write one (imageserver "
                          "init) naming the state dir, then restore")
    return load_config(backup / manifest.config).state_dir, True


@contextlib.contextmanager
def _hold(state_dir: Path) -> Iterator[StateLock | None]:
    """The lock of an existing state dir (a daemon or a CLI writer holding it: Refused)."""
    if not state_dir.exists():
        yield None
        return
    try:
        lock = acquire(state_dir, "restore")
    except StateLocked as e:
        raise Refused(f"the state dir {state_dir} is in use by {e.holder}: stop the daemon "
                      "(systemctl stop imageserver) before restoring") from None
    with lock:
        yield lock


def restore(backup: Path, config_path: Path, *, force: bool = False, progress: Progress | None = None) -> Summary:
    started = time.monotonic()
    progress = progress or Progress(enabled=False)
    if config_path.exists():  # a daemon on the target is refused before the (long) check, and again under the lock
        early = load_config(config_path).state_dir
        running = holder(early) if early.is_dir() else None
        if running is not None:
            raise Refused(f"the state dir {early} is in use by {running}: stop the daemon "
                          "(systemctl stop imageserver) before restoring")
    manifest = check(backup, progress)
    state_dir, write_config = target_config(backup, manifest, config_path)
    state_dir = state_dir.absolute()
    with _hold(state_dir):
        old = sorted(p.name for p in state_dir.iterdir() if p.name != LOCK_NAME) if state_dir.exists() else []
        if old and not force:
            listing = ", ".join(old[:3]) + (" ..." if len(old) > 3 else "")
            raise Refused(f"the state dir {state_dir} is not empty ({listing}): restore into an empty one, or use "
                          "--force to move the old state aside")
        state_dir.parent.mkdir(parents=True, exist_ok=True)
        staging = state_dir.parent / f".{state_dir.name}.restoring.{os.getpid()}"
        staging.mkdir(mode=0o700)
        try:
            with acquire(staging, "restore"):  # the lock file moves with the rename: held throughout
                _copy_state(backup, manifest, staging, progress)
                try:
                    rehome_images(staging / DB_NAME, state_dir / "images")
                except StoreError as e:
                    raise BackupError(str(e)) from None
                aside = None
                if old:
                    aside = state_dir.with_name(f"{state_dir.name}.pre-restore-{time.strftime('%Y%m%dT%H%M%S')}")
                    os.rename(state_dir, aside)
                elif state_dir.exists():
                    with contextlib.suppress(FileNotFoundError):
                        (state_dir / LOCK_NAME).unlink()
                    state_dir.rmdir()
                os.rename(staging, state_dir)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    config = _restore_config(backup, manifest, config_path, write_config)
    return Summary(state_dir=str(state_dir), files=len(manifest.files), bytes=manifest.bytes,
                   images=len({i.name for i in manifest.images}), versions=len(manifest.images),
                   schema_version=manifest.schema_version, seconds=round(time.monotonic() - started, 3),
                   moved_aside=str(aside) if aside else None, config=config)


def _copy_state(backup: Path, manifest: Manifest, staging: Path, progress: Progress) -> None:
    """The backup's state/ into `staging` with the manifest's owners, modes and mtimes."""
    progress.start("restore", manifest.stored_bytes(STATE))
    copier = Copier(progress=progress.bytes, on_entry=progress.file)
    root = None
    try:
        for e in manifest.files:
            if e.path == STATE:
                root = e
                continue
            if not e.path.startswith(STATE + "/"):
                continue
            copier.copy(str(backup / e.path), str(staging / e.path[len(STATE) + 1:]), e.path, meta=e)
        copier.finish()
        if root is not None:
            os.chown(staging, root.uid, root.gid)
            os.chmod(staging, root.mode)
    finally:
        progress.end()


def _restore_config(backup: Path, manifest: Manifest, config_path: Path, write: bool) -> str:
    if manifest.config is None:
        return "none in the backup"
    if not write:
        return f"kept {config_path}"
    entry = next(e for e in manifest.files if e.path == manifest.config)
    config_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = config_path.with_name(f".{config_path.name}.restoring")
    shutil.copyfile(backup / manifest.config, tmp)
    os.chmod(tmp, entry.mode)
    os.replace(tmp, config_path)
    tls, tls_target = backup / CONFIG / TLS_DIR, config_path.parent / TLS_DIR
    if tls.is_dir() and not tls_target.exists():  # the certificate init made beside the config (modes kept)
        shutil.copytree(tls, tls_target)
        shutil.copystat(tls, tls_target)
    return f"written {config_path}"

