"""`imageserver restore DIR`: a backup, verified first, into an empty state dir (the daemon stopped)."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from appliance.backup.manifest import BackupError
from appliance.backup.progress import Progress, human
from appliance.backup.restore import Refused, check, restore
from appliance.cli.commands._common import add_config_option, add_json_option, config_path, fail, print_json
from appliance.cli.exitcodes import REFUSED

DESCRIPTION = """\
Check the backup in DIR against its manifest (every file present, sizes, modes, hard links and SHA-256
as recorded; its database schema not newer than this imageserver's) and, only if it is whole, copy it
into the state dir of the config (--config). A truncated or tampered backup is refused naming the first
bad file, and nothing is changed.

The state dir must be empty or absent and no daemon may run on it (stop it first). With --force a
non-empty state dir is moved aside to STATE_DIR.pre-restore-<time>, never deleted. The backup's config
file is written only when there is no config file yet (a new box); an existing one is kept. The daemon
migrates an older schema when it starts. `--verify-only` checks the backup and changes nothing.

Exit 0 restored (or verified), 1 the backup is bad or the copy failed, 4 refused: the state dir is in
use or not empty."""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("restore", help="restore a backup made by `imageserver backup` into an empty state dir",
                       description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dir", metavar="DIR", type=Path, help="the backup directory (holding manifest.json)")
    p.add_argument("--force", action="store_true",
                   help="restore into a non-empty state dir, moving the old state aside (not deleted)")
    p.add_argument("--verify-only", action="store_true", help="check the backup against its manifest; change nothing")
    add_config_option(p)
    add_json_option(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    progress = Progress()
    try:
        if args.verify_only:
            manifest = check(args.dir, progress)
            if args.json:
                print_json({"verified": str(args.dir), "files": len(manifest.files), "bytes": manifest.bytes,
                            "images": len({i.name for i in manifest.images}), "versions": len(manifest.images),
                            "schema_version": manifest.schema_version})
            else:
                print(f"backup {args.dir} is whole: {len(manifest.files):,} files, {human(manifest.bytes)}")
            return 0
        summary = restore(args.dir, config_path(args), force=args.force, progress=progress)
    except Refused as e:
        return fail(f"restore refused: {e}", REFUSED)
    except BackupError as e:
        return fail(f"restore failed, nothing was changed: {e}")
    except OSError as e:
        return fail(f"restore failed: {e.filename or ''}: {e.strerror}")
    if args.json:
        print_json(dataclasses.asdict(summary))
    else:
        aside = f"; the old state is in {summary.moved_aside}" if summary.moved_aside else ""
        print(f"restored {summary.files:,} files, {human(summary.bytes)}, {summary.images} images "
              f"({summary.versions} versions) into {summary.state_dir} in {summary.seconds:.1f} s; "
              f"config: {summary.config}{aside}")
    return 0
