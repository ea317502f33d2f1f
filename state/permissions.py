"""The state dir and its database are the appliance's secrets (install tokens, the admin token, every
lease): 0700 and 0600 whatever the umask or the service manager, also when an older version (or a hand
`mkdir`) left them looser."""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

DIR_MODE = 0o700
FILE_MODE = 0o600
DB_SUFFIXES = ("", "-wal", "-shm", "-journal")


def secure_state_dir(state_dir: Path) -> int | None:
    """Create the state dir 0700, or tighten an existing one; returns the old mode when it was looser."""
    state_dir.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    mode = stat.S_IMODE(os.stat(state_dir).st_mode)
    if mode & 0o077 == 0:
        return None
    os.chmod(state_dir, mode & ~0o077 | DIR_MODE)
    return mode


def private_database(db: Path) -> None:
    """Create the database file 0600 before SQLite does (it gives its WAL and SHM files the database's
    mode), and tighten the files an earlier run made with the umask's 0644."""
    # Never open (and so close) an existing database file here: closing any descriptor of a file drops
    # every POSIX lock this process holds on it, i.e. the locks of the daemon's other SQLite connections,
    # after which their commits were invisible to other processes until shutdown. O_EXCL: only a new file.
    with contextlib.suppress(FileExistsError):
        os.close(os.open(db, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, FILE_MODE))
    for suffix in DB_SUFFIXES:
        path = db.with_name(db.name + suffix)
        try:
            if stat.S_IMODE(os.stat(path).st_mode) & 0o077:
                os.chmod(path, FILE_MODE)
        except FileNotFoundError:
            pass
