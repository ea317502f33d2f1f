"""CPU time of a server under a bench, the figure that holds on a shared box where rates swing with whatever
else runs: a process's user + system seconds from /proc (every thread of it), or this process's own."""

from __future__ import annotations

import os
import resource
from pathlib import Path


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system, all threads) process `pid` has used so far, from /proc/PID/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main_thread_cpu(pid: int) -> float:
    """CPU seconds (user + system) of process `pid`'s main thread alone (its other threads: process_cpu minus
    this), from /proc/PID/task/PID/stat: the event loop's share beside, say, a writer thread's."""
    fields = Path(f"/proc/{pid}/task/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def own_cpu() -> float:
    """CPU seconds (user + system) this process has used so far (a server run in the bench's own loop)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime
