"""Whether a process listens on a TCP port, read from /proc (net/tcp, net/tcp6 and its fds).

A child daemon that logs "listening" before it binds (rsync does) is only ready once the kernel shows
its socket in LISTEN; reading the tables asks that without opening a connection to the daemon, and
matching the socket's inode to the process's descriptors tells its socket from another's on that port.
"""

from __future__ import annotations

import os
from pathlib import Path

PROC = Path("/proc")
TCP_LISTEN = "0A"  # include/net/tcp_states.h: TCP_LISTEN = 10


def listening_sockets(table: str) -> dict[int, set[int]]:
    """Port -> socket inodes in state LISTEN, from one /proc/net/tcp{,6} table (its header line included)."""
    found: dict[int, set[int]] = {}
    for line in table.splitlines()[1:]:
        fields = line.split()
        if len(fields) > 9 and fields[3] == TCP_LISTEN and ":" in fields[1]:
            found.setdefault(int(fields[1].rsplit(":", 1)[1], 16), set()).add(int(fields[9]))
    return found


def socket_inodes(pid: int, proc: Path = PROC) -> set[int]:
    inodes: set[int] = set()
    try:
        names = os.listdir(proc / str(pid) / "fd")
    except OSError:
        return inodes
    for name in names:
        try:
            target = os.readlink(proc / str(pid) / "fd" / name)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(int(target[8:-1]))
    return inodes


def listens(pid: int, port: int, proc: Path = PROC) -> bool:
    """Process `pid` holds a socket listening on TCP `port` (in its own network namespace)."""
    inodes: set[int] = set()
    for name in ("tcp", "tcp6"):
        try:
            inodes |= listening_sockets((proc / str(pid) / "net" / name).read_text()).get(port, set())
        except OSError:
            continue
    return bool(inodes & socket_inodes(pid, proc))
