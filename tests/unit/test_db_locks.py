"""Opening another connection never drops the locks this process's open connections hold.

POSIX locks belong to the process: closing ANY descriptor of the database file releases all of them.
A permissions helper that opened and closed the file on every connect() did exactly that. Then another
process (the CLI, sqlite3) that wrote and closed believed itself the last user, checkpointed and removed
the WAL, and every later commit of the daemon went into the removed WAL: invisible to everyone, and lost
on a crash, until the daemon stopped.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from state.db import connect

OTHER = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], timeout=10, isolation_level=None)
if sys.argv[2] == "write":
    conn.execute("INSERT INTO lock_probe VALUES (-1)")
print(conn.execute("SELECT count(*) FROM lock_probe").fetchone()[0])
conn.close()
"""


def other_process(db: Path, action: str) -> int:
    out = subprocess.run([sys.executable, "-c", OTHER, str(db), action], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    return int(out.stdout)


def test_commits_stay_visible_after_another_connect_and_a_foreign_writer(tmp_path: Path) -> None:
    db = tmp_path / "imageserver.db"
    reader = connect(db)  # the daemon's first connection (its reader) ...
    try:
        reader.execute("CREATE TABLE lock_probe (n INTEGER)")
        writer = connect(db)  # ... and its writer thread's, opened later
        try:
            assert other_process(db, "write") == 1  # a CLI writes offline and closes
            writer.execute("INSERT INTO lock_probe VALUES (1)")
            assert other_process(db, "read") == 2, "the daemon's commit went into a WAL nobody else reads"
        finally:
            writer.close()
    finally:
        reader.close()
