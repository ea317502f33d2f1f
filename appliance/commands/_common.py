"""Shared bits for subcommands: config option, table printing, JSON output."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from appliance.apiclient import ApiClient
    from appliance.config import Config

T = TypeVar("T")


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


class CommandFailed(RuntimeError):
    """The daemon (or the offline rules) refused: the message is for the user, `problems` its details."""

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems = problems or []


def ask_daemon(cfg: Config, online: Callable[[ApiClient], T]) -> tuple[bool, T | None]:
    """Run `online` against the running daemon's admin API: (True, its result), or (False, None) when the
    daemon is not answering, after telling the user that the state database will be used directly.

    A refusal by the daemon (an HTTP error) is a CommandFailed: falling back offline would bypass it.
    """
    from appliance.apiclient import ApiClient, ApiError, ApiUnavailable

    if cfg.http.enabled:
        try:
            return True, online(ApiClient.from_config(cfg))
        except ApiError as e:
            raise CommandFailed(e.message) from None
        except ApiUnavailable:
            pass
    print(f"imageserver: the daemon is not answering; using the state database in {cfg.state_dir} directly",
          file=sys.stderr)
    return False, None
