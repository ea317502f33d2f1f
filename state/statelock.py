"""One writer per state dir: an exclusive flock on `<state_dir>/imageserver.lock`.

`serve` holds it for its whole life; the CLI takes it (without waiting) before it writes the database
itself. Whoever cannot take it is told who holds it: the holder writes its pid and role into the file.
flock is per open file and dies with the process (kill -9 included), so a crashed daemon never leaves a
stale lock; the descriptor is not inherited by children (O_CLOEXEC), so the supervised rsync cannot keep it.
"""

from __future__ import annotations

import fcntl
import os
from dataclasses import dataclass
from pathlib import Path

LOCK_NAME = "imageserver.lock"


class StateLocked(RuntimeError):
    """Another process holds the state dir; `holder` is its pid and role as it wrote them (or '?')."""

    def __init__(self, state_dir: Path, holder: str) -> None:
        super().__init__(f"state dir {state_dir} is in use by {holder} (lock {state_dir / LOCK_NAME})")
        self.state_dir = state_dir
        self.holder = holder


def lock_path(state_dir: Path) -> Path:
    return state_dir / LOCK_NAME


@dataclass
class StateLock:
    """A held lock; release() (or process exit) frees it."""

    path: Path
    fd: int | None

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing the only descriptor drops the flock
            self.fd = None

    def __enter__(self) -> StateLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def acquire(state_dir: Path, role: str) -> StateLock:
    """Take the state dir's lock now or raise StateLocked naming the holder (never waits)."""
    path = lock_path(state_dir)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _read_holder(fd)
        os.close(fd)
        raise StateLocked(state_dir, holder) from None
    except BaseException:
        os.close(fd)
        raise
    # Ours now: say who we are (the file stays; only the flock means anything).
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"pid={os.getpid()} role={role}\n".encode(), 0)
    return StateLock(path, fd)


def holder(state_dir: Path) -> str | None:
    """Who holds the lock ('pid=N role=serve'), or None when nobody does (probed without keeping it)."""
    try:
        lock = acquire(state_dir, "probe")
    except StateLocked as e:
        return e.holder
    except FileNotFoundError:
        return None  # no state dir yet: nobody can be using it
    lock.release()
    return None


def _read_holder(fd: int) -> str:
    try:
        text = os.pread(fd, 200, 0).decode(errors="replace").strip()
    except OSError:
        text = ""
    return text or "?"
