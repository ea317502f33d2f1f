"""`imageserver backup DIR`: a whole copy of the appliance (database, images, tokens, config), daemon running."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from appliance.backup.manifest import BackupError
from appliance.backup.progress import Progress, human
from appliance.backup.take import take_backup
from appliance.cli.commands._common import add_config_option, add_json_option, fail, load, print_json

DESCRIPTION = """\
Copy the appliance into DIR (new or empty), while the daemon runs: the state database through SQLite's
online backup API (a snapshot as of one commit), every registered image version with its hard links kept,
the admin and satellite tokens (mode 0600 kept), the master scripts, the boot environment and the config
file. DIR/manifest.json, written last, lists every file with its size, SHA-256 and mode, the hard-link
groups, the schema version and the imageserver version: a backup without it is incomplete (one that was
stopped leaves only DIR/.partial). Restore it with `imageserver restore DIR`.

Progress is shown on stderr when it is a terminal. Exit 0 when the backup is whole, 1 when it failed
(nothing that looks whole is left behind), 2 on a bad config."""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("backup", help="back up the state (database, images, tokens) and the config into DIR",
                       description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dir", metavar="DIR", type=Path, help="where to write the backup (new or empty directory)")
    add_config_option(p)
    add_json_option(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    cfg = load(args)
    try:
        summary = take_backup(cfg, args.dir, Progress())
    except BackupError as e:
        return fail(f"backup failed: {e}")
    except OSError as e:
        return fail(f"backup failed: {e.filename or ''}: {e.strerror}")
    if args.json:
        print_json(dataclasses.asdict(summary))
    else:
        print(f"backup {summary.path}: {summary.files:,} files, {human(summary.bytes)}, {summary.images} images "
              f"({summary.versions} versions), schema {summary.schema_version}, {summary.seconds:.1f} s")
    return 0
