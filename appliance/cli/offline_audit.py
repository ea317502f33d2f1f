"""The audit log of the offline CLI: a command that wrote the state database itself (under the state dir's
lock, commands/_common.offline_writer) leaves one entry once it is done, with its exit code.

Changes made through the running daemon are recorded by the daemon (services/routes.record_change), with the
token the CLI sent ("admin": <state_dir>/admin.token on the appliance).
"""

from __future__ import annotations

import argparse
import getpass
import os
import socket
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field

from appliance.config import Config
from state import audit
from state.db import connect, db_path
from state.statelock import StateLocked, acquire


@dataclass
class OfflineWrites:
    """The state databases one CLI run wrote offline (state dir -> its config), recorded when it is done."""
    configs: dict[str, Config] = field(default_factory=dict)


# The run's writes, set by main() around one command: a context variable rather than a module dict, so each
# run (and each test calling main()) has its own and nothing outlives the run.
_RUN: ContextVar[OfflineWrites | None] = ContextVar("imageserver_offline_writes", default=None)


@contextmanager
def run_scope() -> Iterator[OfflineWrites]:
    """One CLI run: the databases its command writes offline are collected here."""
    writes = OfflineWrites()
    token = _RUN.set(writes)
    try:
        yield writes
    finally:
        _RUN.reset(token)


def wrote(cfg: Config) -> None:
    """This run writes cfg's state database offline (called when it takes the state dir's lock)."""
    writes = _RUN.get()
    if writes is not None:  # outside main() (a command called directly) there is no run to record
        writes.configs[str(cfg.state_dir)] = cfg


def who() -> str:
    """The person at the keyboard: sudo's caller where there is one, else the login."""
    try:
        return os.environ.get("SUDO_USER") or getpass.getuser()
    except (KeyError, OSError):
        return f"uid {os.getuid()}"


def record(writes: OfflineWrites, args: argparse.Namespace, argv: Sequence[str], exit_code: int) -> None:
    """One entry per state database this run wrote offline: the command and verb, the name it was given."""
    verb = getattr(args, "verb", None) or getattr(args, "action", None)  # the commands name their verbs so
    operation = " ".join(["imageserver", *(w for w in (args.command, verb) if w)])
    target = getattr(args, "name", None) or getattr(args, "nodes", None) or getattr(args, "mac", None)
    for cfg in writes.configs.values():
        entry = audit.AuditEntry(at=time.time(), who=who(), via="cli", peer=socket.gethostname(),
                                 operation=operation, target=str(target) if target else None,
                                 fields={"argv": " ".join(argv)}, outcome=f"exit {exit_code}")
        try:
            with acquire(cfg.state_dir, "cli"):
                conn = connect(db_path(cfg.state_dir))
                try:
                    with conn:
                        audit.record_op(entry, max_entries=cfg.audit.max_entries, max_age=cfg.audit.max_age)(conn)
                finally:
                    conn.close()
        except (StateLocked, OSError) as e:  # the daemon started meanwhile: the change stands, say so
            print(f"imageserver: the audit log could not record this change: {e}", file=sys.stderr)
