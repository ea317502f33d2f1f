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
from collections.abc import Sequence

from appliance.config import Config
from state import audit
from state.db import connect, db_path
from state.statelock import StateLocked, acquire

_WROTE: dict[str, Config] = {}  # state dir -> its config: the databases this run wrote offline


def wrote(cfg: Config) -> None:
    """This run writes cfg's state database offline (called when it takes the state dir's lock)."""
    _WROTE[str(cfg.state_dir)] = cfg


def who() -> str:
    """The person at the keyboard: sudo's caller where there is one, else the login."""
    try:
        return os.environ.get("SUDO_USER") or getpass.getuser()
    except (KeyError, OSError):
        return f"uid {os.getuid()}"


def record(args: argparse.Namespace, argv: Sequence[str], exit_code: int) -> None:
    """One entry per state database this run wrote offline: the command and verb, the name it was given."""
    verb = getattr(args, "verb", None) or getattr(args, "action", None)  # the commands name their verbs so
    operation = " ".join(["imageserver", *(w for w in (args.command, verb) if w)])
    target = getattr(args, "name", None) or getattr(args, "nodes", None) or getattr(args, "mac", None)
    for cfg in list(_WROTE.values()):
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
    _WROTE.clear()
