"""`imageserver backup DIR`: a whole backup of a (running) appliance, or none.

What goes in, under DIR/state/: the database (SQLite's online backup API, state/backup.py: a snapshot as
of one commit while the daemon keeps writing), the image versions registered in that snapshot with their
manifests (copied with hard links kept), and the rest of the state dir — admin and satellite tokens (modes
kept), the master scripts, the boot environment. Left out: what the daemon makes again at start or what is
in flight (the lock, rsyncd's config/secrets/pid, multicast keys, torrents, images in staging, clones being
edited, the trash). DIR/config/ holds the config file (and the HTTPS certificate `init` made beside it).

Everything is written into DIR/.partial, the manifest last; then state/, config/ and finally manifest.json
are moved up into DIR. A backup that stopped anywhere has no DIR/manifest.json, so it never looks whole.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from appliance.backup.copier import Copier
from appliance.backup.manifest import CONFIG, MANIFEST, STATE, BackupError, ImageRef, Manifest, write
from appliance.backup.progress import Progress
from appliance.config import Config
from appliance.daemon.runtime import VERSION
from appliance.images.catalog import ImagePaths
from appliance.tls import TLS_DIR
from state.backup import snapshot
from state.db import DB_NAME, StoreError

PARTIAL = ".partial"
# Names at the top of the state dir that a backup leaves out (made again by the daemon, or in flight).
SKIPPED = frozenset({DB_NAME, f"{DB_NAME}-wal", f"{DB_NAME}-shm", f"{DB_NAME}-journal", "imageserver.lock",
                     "rsyncd.conf", "rsyncd.secrets", "rsyncd.lock", "rsyncd.pid", "multicast", "torrents"})


@dataclass(frozen=True, slots=True)
class Summary:
    path: str
    files: int
    bytes: int
    images: int
    versions: int
    schema_version: int
    seconds: float


def _prepare(dest: Path) -> Path:
    """DIR must be new or empty (a stale DIR/.partial of a backup that stopped is removed)."""
    if dest.exists():
        if not dest.is_dir():
            raise BackupError(f"{dest} exists and is not a directory")
        others = sorted(p.name for p in dest.iterdir() if p.name != PARTIAL)
        if others:
            raise BackupError(f"{dest} is not empty ({', '.join(others[:3])}{' ...' if len(others) > 3 else ''}): "
                              "give a new directory for each backup")
    partial = dest / PARTIAL
    if partial.exists():
        shutil.rmtree(partial)
    partial.mkdir(mode=0o700, parents=True)
    return partial


def _skipped(name: str) -> bool:
    return name in SKIPPED or name.endswith(".tmp")


def take_backup(cfg: Config, dest: Path, progress: Progress | None = None) -> Summary:
    started = time.monotonic()
    progress = progress or Progress(enabled=False)
    state_dir = cfg.state_dir
    if not state_dir.is_dir():
        raise BackupError(f"no state dir {state_dir} (config {cfg.source})")
    partial = _prepare(dest)
    try:
        progress.start("backup")
        copier = Copier(progress=progress.bytes, on_entry=progress.file)
        # The state dir itself (its mode and owner), then the database snapshot: what it lists decides
        # which image versions are in the backup.
        copier.copy(str(state_dir), str(partial / STATE), STATE)
        try:
            snap = snapshot(state_dir / DB_NAME, partial / STATE / DB_NAME)
        except StoreError as e:
            raise BackupError(str(e)) from None
        copier.record(str(partial / STATE / DB_NAME), f"{STATE}/{DB_NAME}")
        for child in sorted(os.listdir(state_dir)):
            if _skipped(child):
                continue
            if child == "images":
                _copy_images(copier, ImagePaths(state_dir), partial, snap.images)
                continue
            copier.copy_tree(str(state_dir / child), str(partial / STATE / child), f"{STATE}/{child}",
                             volatile=True)
        config_rel = None
        if cfg.source is not None and cfg.source.is_file():
            (partial / CONFIG).mkdir(mode=0o700)
            copier.record(str(partial / CONFIG), CONFIG)
            config_rel = f"{CONFIG}/{cfg.source.name}"
            copier.copy(str(cfg.source), str(partial / config_rel), config_rel)
            # The HTTPS certificate `init` made beside the config (the state dir's own tls/ is copied above):
            # restored with the config, so workstations and satellites that pinned it still know the box.
            tls_dir = cfg.source.parent / TLS_DIR
            if cfg.https.cert is not None and cfg.https.cert.parent == tls_dir and tls_dir.is_dir():
                copier.copy_tree(str(tls_dir), str(partial / CONFIG / TLS_DIR), f"{CONFIG}/{TLS_DIR}")
        copier.finish()
        os.sync()  # every copied file on disk before the manifest says the backup is whole
        manifest = Manifest(format=1, imageserver_version=VERSION, schema_version=snap.schema_version,
                            created=time.time(), source_state_dir=str(state_dir), config=config_rel,
                            images=[ImageRef(name, version) for name, version, _ in snap.images],
                            files=copier.entries, links=copier.links)
        write(partial, manifest)
        for name in (STATE, CONFIG, MANIFEST):  # manifest.json last: the backup is whole from that rename on
            if (partial / name).exists():
                os.rename(partial / name, dest / name)
        os.rmdir(partial)
        _fsync_dir(dest)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    finally:
        progress.end()
    return Summary(path=str(dest), files=len(manifest.files), bytes=manifest.bytes,
                   images=len({i.name for i in manifest.images}), versions=len(manifest.images),
                   schema_version=manifest.schema_version, seconds=round(time.monotonic() - started, 3))


def _copy_images(copier: Copier, paths: ImagePaths, partial: Path, images: list[tuple[str, int, str]]) -> None:
    """images/ and, for each version of the snapshot, images/NAME/vN and its manifest (nothing else there:
    staging, clones and trash are work in flight)."""
    root = partial / STATE / "images"
    copier.copy(str(paths.images), str(root), f"{STATE}/images")
    for name in sorted({n for n, _, _ in images}):
        copier.copy(str(paths.images / name), str(root / name), f"{STATE}/images/{name}")
    for name, version, tree in images:
        rel = f"{STATE}/images/{name}/v{version}"
        if not os.path.isdir(tree):
            raise BackupError(f"image {name} v{version}: its tree {tree} is missing (removed while the backup "
                              "ran?); run the backup again")
        copier.copy_tree(tree, str(root / name / f"v{version}"), rel)
        recorded = paths.manifest(name, version)
        if recorded.exists():
            copier.copy(str(recorded), str(root / name / recorded.name), f"{STATE}/images/{name}/{recorded.name}")


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
