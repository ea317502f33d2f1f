"""Version operations beyond capture: commit a clone, compare two versions, verify one.

The chroot-editing flow (SystemImager's "edit the image in place", made safe):
    imageserver images clone web v3 web-tuned   # writable copy at images/.work/web-tuned (cp -a, no hard links)
    chroot /var/lib/imageserver/images/.work/web-tuned   # edit, install packages ...
    imageserver images commit web-tuned          # -> image web-tuned v1 (or its next version)
Committing copies the work tree into staging with --link-dest to the newest version of the target
image (or the version it was cloned from), so unchanged files share inodes, then registers it like
getimage does and removes the work tree. Cloning an image onto its own name (clone web v3 web) makes
web's next version.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from appliance.images import manifest
from appliance.images.catalog import Catalog, ImageError, ImageNotFound, remove_tree
from appliance.images.getimage import RSYNC_FLAGS, Interrupt, catching_signals, run_rsync
from state.images import ImageVersion


def commit(catalog: Catalog, new_name: str, rsync: str = "rsync") -> ImageVersion:
    origin_name, origin_version = catalog.work_origin(new_name)
    work = catalog.work_tree(new_name)
    if not work.is_dir():
        raise ImageNotFound(f"no work tree {work}: clone first (images clone NAME vN {new_name})")
    try:
        origin: ImageVersion | None = catalog.get(origin_name, origin_version)
    except ImageError:
        origin = None  # removed since the clone: no layout to inherit, nothing to link against
    interrupt = Interrupt()
    with catching_signals(interrupt), catalog.lock(new_name):
        previous = catalog.newest(new_name) or origin
        staging = catalog.new_staging(new_name)
        try:
            argv = [rsync, *RSYNC_FLAGS]
            if previous is not None:
                argv.append(f"--link-dest={previous.path}")
            result = run_rsync([*argv, f"{work}/", f"{staging}/"], interrupt)
            if interrupt.signum is not None:
                raise ImageError("interrupted; nothing was registered (the work tree is kept)")
            if result.code != 0:
                raise ImageError(f"copying the work tree failed ({result.reason()}); nothing was registered")
            iv = catalog.register(new_name, staging, source=f"clone:{origin_name}/v{origin_version}",
                                  layout_json=origin.layout if origin else None, previous=previous)
        finally:
            remove_tree(staging)
            remove_tree(staging.with_name(staging.name + ".manifest.gz"))
    catalog.drop_work(new_name)
    return iv


def diff(catalog: Catalog, name: str, a: int, b: int) -> list[manifest.Change]:
    catalog.get(name, a)
    catalog.get(name, b)
    return manifest.compare(manifest.read(catalog.paths.manifest(name, a)),
                            manifest.read(catalog.paths.manifest(name, b)))


def verify(catalog: Catalog, name: str, version: int, tree: Path | None = None,
           ignore: Sequence[str] = ()) -> list[manifest.Change]:
    """Differences between a version's manifest and its tree now (every file hashed again), or another
    tree: an installed machine's disk, mounted. `ignore`: paths (a trailing "/" = everything under it)
    left out on both sides, such as the files an install writes for the machine itself."""
    iv = catalog.get(name, version)
    recorded = manifest.read(catalog.paths.manifest(name, version))
    root = Path(iv.path) if tree is None else tree
    if not root.is_dir():
        raise ImageError(f"{root} is not a directory")
    return [c for c in manifest.compare(recorded, list(manifest.walk(root))) if not _ignored(c.path, ignore)]


def _ignored(path: str, ignore: Sequence[str]) -> bool:
    return any(path == p.rstrip("/") or (p.endswith("/") and path.startswith(p)) for p in ignore)
