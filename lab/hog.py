"""A CPU and disk hog to run beside the suite, for flakes that only a busy box shows (issue: the suite green
every time). `python -m lab.hog --cpu 2 --io 1 --seconds 3600`: N processes spinning, M writing and fsyncing
a file in a private temp directory; all stop after the time given or on Ctrl-C/SIGTERM, files removed.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import signal
import tempfile
import time
from pathlib import Path


def spin(until: float) -> None:
    n = 0
    while time.monotonic() < until:
        n = (n * 1103515245 + 12345) % 2**31


def write(until: float, directory: Path, chunk: int = 4 << 20, keep: int = 64 << 20) -> None:
    """Write and fsync in a ring of `keep` bytes: writeback pressure without filling the disk."""
    block = os.urandom(chunk)
    path = directory / f"hog-{os.getpid()}.bin"
    with open(path, "wb") as f:
        while time.monotonic() < until:
            if f.tell() >= keep:
                f.seek(0)
            f.write(block)
            os.fsync(f.fileno())
    path.unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cpu", type=int, default=2, help="spinning processes (default 2)")
    p.add_argument("--io", type=int, default=1, help="processes writing and fsyncing (default 1)")
    p.add_argument("--seconds", type=float, default=3600, help="stop after this long (default 3600)")
    args = p.parse_args(argv)
    until = time.monotonic() + args.seconds
    with tempfile.TemporaryDirectory(prefix="imageserver-hog-") as tmp:
        procs = [multiprocessing.Process(target=spin, args=(until,)) for _ in range(args.cpu)]
        procs += [multiprocessing.Process(target=write, args=(until, Path(tmp))) for _ in range(args.io)]
        for proc in procs:
            proc.start()

        def stop(signum: int, frame: object) -> None:
            for proc in procs:
                proc.terminate()

        signal.signal(signal.SIGTERM, stop)
        try:
            for proc in procs:
                proc.join()
        except KeyboardInterrupt:
            stop(signal.SIGINT, None)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
