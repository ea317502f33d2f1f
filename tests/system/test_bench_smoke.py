"""Every bench runs, once, in smoke mode (bench/_smoke.py: tiny sizes, one short round, no target judged).

The benches are not part of the suite otherwise, so one that stopped running (a product change it did not
follow) was found only when its numbers were wanted. Here each runs as `bench/<name>.py --smoke`, a
subprocess of this interpreter, against the real peers that are installed (a missing peer is skipped by
the bench itself, with a message): it must exit 0 and print its result table. One test per bench, so a
failure names it. System tests: the benches need root for namespaces and privileged ports.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lab.netns import lab_unavailable_reason

pytestmark = pytest.mark.system

REPO = Path(__file__).resolve().parents[2]
BENCH = REPO / "bench"

# A line of each bench's result table: printed only once it measured something.
RESULT_LINE = {
    "bootstorm": r"^ +\d+ imageserver +[\d.]+ s ",  # N, then seconds until the last machine has its initrd
    "dhcp": r"^imageserver/asyncio +\d+ +\d+ +fsync'd",  # clean DORA/s, then CPU µs per DORA
    "dhcp_codec": r"^ +service path \(DhcpServer\.handle\) +[\d.]+ us",
    "dns": r"^miss +\( *\d+ distinct\) +imageserver +\d+ q/s",
    "fanout": r"^ +\d+( +[\d.]+){3}",  # N, then the seconds of rsync, bittorrent, multicast
    "fleet": r"^DORA rate big store / empty store: [\d.]+x",
    "http": r"^ +imageserver +\d+ MiB/s",
    "tftp": r"^window 16  blksize 1468: imageserver +[\d.]+ MiB/s",
}
TIMEOUT = 300  # seconds; a smoke run takes 1-30 s on a quiet 2-core box


def test_every_bench_has_a_smoke_run() -> None:
    benches = {p.stem for p in BENCH.glob("[!_]*.py")}  # bench/_*.py are helpers
    assert benches == set(RESULT_LINE), "each bench needs its result line here (and a --smoke mode)"


@pytest.mark.parametrize("bench", sorted(RESULT_LINE))
def test_bench_smoke(bench: str) -> None:
    reason = lab_unavailable_reason()
    if reason:
        pytest.skip(reason)
    started = time.monotonic()
    proc = subprocess.run([sys.executable, str(BENCH / f"{bench}.py"), "--smoke"], cwd=REPO, capture_output=True,
                          text=True, timeout=TIMEOUT)
    elapsed = time.monotonic() - started
    output = f"--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr[-4000:]}"
    print(output)
    print(f"[timing] bench/{bench}.py --smoke: {elapsed:.1f} s")
    assert proc.returncode == 0, f"bench/{bench}.py --smoke exited {proc.returncode}\n{output}"
    assert re.search(RESULT_LINE[bench], proc.stdout, re.MULTILINE), \
        f"bench/{bench}.py --smoke printed no result table\n{output}"
