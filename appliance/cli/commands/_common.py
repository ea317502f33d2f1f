"""Shared bits for subcommands: config option and loading, table printing, JSON output, the daemon-or-offline choice."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from appliance.cli import offline_audit, remote
from appliance.cli.apiclient import ApiClient, ApiError, ApiUnavailable
from appliance.cli.exitcodes import UNREACHABLE, CommandFailed, exit_code
from appliance.config import DEFAULT_CONFIG_PATH, Config, load_config, parse_config
from state.statelock import StateLock, StateLocked, acquire, holder

T = TypeVar("T")


def config_path(args: argparse.Namespace) -> Path:
    """--config FILE, else $IMAGESERVER_CONFIG, else the default path."""
    if getattr(args, "config", None):
        return Path(args.config)
    env = os.environ.get("IMAGESERVER_CONFIG")
    return Path(env) if env else DEFAULT_CONFIG_PATH


def load(args: argparse.Namespace) -> Config:
    """Load the config named on the command line; ConfigError is turned into exit code 2 by appliance.cli.main().
    Asking a remote server (--server), a workstation has no config: the defaults, unless one is named."""
    if remote.selected() is not None and not getattr(args, "config", None) and not os.environ.get("IMAGESERVER_CONFIG"):
        return parse_config({})
    return load_config(config_path(args))


def add_config_option(parser: argparse.ArgumentParser) -> None:
    """Let `--config` also follow the subcommand (`imageserver leases --config F`)."""
    parser.add_argument("-c", "--config", metavar="FILE", default=argparse.SUPPRESS,
                        help="configuration file (default: $IMAGESERVER_CONFIG or /etc/imageserver/imageserver.toml)")


def add_json_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON for scripts instead of a table")


def print_json(data: Any) -> None:
    json.dump(data, sys.stdout, indent=2, sort_keys=False, default=str)
    sys.stdout.write("\n")


def print_table(rows: Iterable[dict[str, Any]], columns: Sequence[str],
                headers: Sequence[str] | None = None,
                formatters: dict[str, Callable[[Any], str]] | None = None) -> None:
    """A plain aligned table (no colours: it goes into logs and tickets too)."""
    formatters = formatters or {}
    headers = list(headers or [c.upper() for c in columns])
    body = [[formatters.get(c, _cell)(row.get(c)) for c in columns] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in body]) for i, h in enumerate(headers)]
    print("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip())
    for r in body:
        print("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip())


def _cell(v: Any) -> str:
    if v is None:
        return "-"
    return str(v)


def fail(message: str, code: int = 1) -> int:
    print(f"imageserver: {message}", file=sys.stderr)
    return code


def ask_daemon(cfg: Config, online: Callable[[ApiClient], T], *, writes: bool = False) -> tuple[bool, T | None]:
    """Run `online` against the running daemon's admin API: (True, its result), or (False, None) when no
    daemon holds the state dir, after telling the user that the state database will be used directly.

    A refusal by the daemon (an HTTP error) is a CommandFailed: falling back offline would bypass it. So is
    a daemon that runs but does not answer (busy, API off or unreachable) when the command `writes`: the
    state dir's lock, not a timeout, decides that nobody else is writing (see state/statelock.py). A read
    falls back to the database as last committed.
    """
    reason = "its HTTP API is disabled"
    if remote.selected() is not None:  # a remote server answers or the command fails: no local state dir
        try:
            return True, online(ApiClient.from_config(cfg))
        except ApiError as e:
            raise CommandFailed(e.message, code=exit_code(e)) from None
    if cfg.http.enabled:
        try:
            return True, online(ApiClient.from_config(cfg))
        except ApiError as e:
            raise CommandFailed(e.message, code=exit_code(e)) from None
        except ApiUnavailable as e:
            reason = str(e)
    try:
        running = holder(cfg.state_dir)
    except OSError as e:  # e.g. not root: the state dir is 0700
        raise CommandFailed(f"cannot check who uses the state dir {cfg.state_dir}: {e.strerror}") from None
    if running is not None:
        if writes:
            raise CommandFailed(daemon_busy(cfg, running, reason), code=UNREACHABLE)
        print(f"imageserver: the state dir is held by {running} but {reason}; showing the state database "
              f"in {cfg.state_dir} as last committed", file=sys.stderr)
        return False, None
    print("imageserver: the daemon is not answering (not running: nobody holds the state dir); using the state "
          f"database in {cfg.state_dir} directly", file=sys.stderr)
    return False, None


def daemon_busy(cfg: Config, running: str, reason: str) -> str:
    """Why an offline write is refused: `running` holds the state dir's lock ('pid=N role=serve|cli')."""
    if "role=serve" not in running:
        return (f"another process ({running}) is writing the state database in {cfg.state_dir}. Nothing was "
                "written by this command; try again when it is done")
    return (f"the daemon ({running}) is running but did not answer: {reason}. Nothing was written by this "
            f"command: the state database in {cfg.state_dir} belongs to the running daemon (a request that timed "
            "out may still be applied by it; check, then try again)")


def offline_writer(cfg: Config, reason: str = "it does not answer") -> StateLock:
    """The state dir's lock for an offline write (hold it while writing), or CommandFailed naming the
    process that holds it: the daemon started meanwhile, or another CLI is writing."""
    try:
        cfg.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        lock = acquire(cfg.state_dir, "cli")
        offline_audit.wrote(cfg)  # main() records the command in the audit log once it is done
        return lock
    except StateLocked as e:
        raise CommandFailed(daemon_busy(cfg, e.holder, reason), code=UNREACHABLE) from None
    except OSError as e:
        raise CommandFailed(f"cannot lock the state dir {cfg.state_dir}: {e.strerror}") from None
