"""Supervised children that never outlive the imageserver, and the one a killed imageserver left behind.

die_with_parent(): the preexec for a child that must end when we do, kill -9 included:
PR_SET_PDEATHSIG (Linux) sends it SIGTERM when the thread that forked it exits, so children are
forked from the event loop's thread, which lives as long as the process. (The signal is sent on the
forking thread's exit, and is kept across exec unless the program is set-uid.)

A pid file records the child (pid and its start time, so a reused pid is never mistaken for it);
reap_stale() at the next start ends the recorded process only if it is still the same process and its
command line is what we ran (`match`), e.g. an rsync left by a version without the death signal.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from state.eventlog import EventLog

log = EventLog("imageserver.childproc")

PR_SET_PDEATHSIG = 1


def die_with_parent(sig: int = signal.SIGTERM) -> Callable[[], None]:
    """A preexec_fn: the child gets `sig` when we die. libc is loaded here, in the parent: the child only
    makes the one system call (no imports, no allocation between fork and exec)."""
    libc = ctypes.CDLL(None, use_errno=True)
    prctl = libc.prctl
    parent = os.getpid()

    def preexec() -> None:
        prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0)
        if os.getppid() != parent:  # we died between fork and prctl: nobody will send the signal now
            os._exit(1)

    return preexec


def start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (/proc/PID/stat field 22), or None if it is
    gone or a zombie (dead, waiting to be reaped by a parent that may never do it)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: fields are counted after the last ')'.
    fields = stat[stat.rfind(")") + 2:].split()
    if len(fields) <= 19 or fields[0] in ("Z", "X"):
        return None
    return fields[19]


def cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [a.decode(errors="replace") for a in raw.split(b"\0") if a]


def write_pid_file(path: Path, pid: int) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(f"{pid} {start_time(pid) or '?'}\n")
    os.replace(tmp, path)


def remove_pid_file(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def reap_stale(path: Path, match: Callable[[Sequence[str]], bool], *, wait: float = 5.0) -> int | None:
    """End the process group the pid file names when it is still that process and `match`es its command
    line; returns the pid ended (None: nothing to do). The pid file is removed either way."""
    try:
        pid_text, started = path.read_text().split()[:2]
        pid = int(pid_text)
    except (OSError, ValueError):
        remove_pid_file(path)
        return None
    remove_pid_file(path)
    if pid <= 1 or pid == os.getpid() or start_time(pid) != started or not match(cmdline(pid)):
        return None  # gone, a reused pid, or not ours: leave it alone
    log.warning("stale-child-reaped", pid=pid, cmdline=" ".join(cmdline(pid)))
    _signal_group(pid, signal.SIGTERM)
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline and start_time(pid) == started:
        time.sleep(0.05)
    if start_time(pid) == started:
        _signal_group(pid, signal.SIGKILL)
    return pid


def _signal_group(pid: int, sig: int) -> None:
    # The child was started in its own session (pgid == pid): its per-connection children go with it.
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)
