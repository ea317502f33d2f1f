"""Smoke mode, shared by every bench: tiny sizes, one round, short runs, no target judged.

`make test` runs each bench once this way (tests/system/test_bench_smoke.py), so a bench that stops
running fails CI instead of being found broken the day someone wants its numbers. A smoke run still
takes the real code path end to end, against the real peer when that peer is installed; a missing peer
is skipped with a message (our side always runs).

Asked for by `--smoke` on the command line or BENCH_SMOKE=1 in the environment. The bench's own
arguments given explicitly still win over the smoke sizes.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from collections.abc import Mapping, Sequence

ENV = "BENCH_SMOKE"


def parse_args(parser: argparse.ArgumentParser, smoke: Mapping[str, object],
               argv: Sequence[str] | None = None) -> argparse.Namespace:
    """parser's arguments plus --smoke; in smoke mode `smoke` replaces the defaults (args.smoke is True)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    parser.add_argument("--smoke", action="store_true",
                        help=f"tiny sizes, one short round, no target judged: checks the bench runs (or {ENV}=1)")
    if "--smoke" in argv or os.environ.get(ENV) == "1":
        parser.set_defaults(**smoke, smoke=True)
    return parser.parse_args(argv)


def peer_available(bench: str, tool: str, package: str, smoke: bool) -> bool:
    """True if the peer's program is installed. A full run without it exits (the comparison is its point);
    a smoke run says that the peer's side is skipped and goes on with ours."""
    if shutil.which(tool) is not None:
        return True
    message = f"{bench}: peer {tool} is not installed (apt-get install {package})"
    if not smoke:
        sys.exit(message)
    print(f"{message}: its side is skipped in smoke mode", flush=True)
    return False
