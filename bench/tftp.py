"""TFTP throughput, ours vs dnsmasq's, measured side by side in the same run.

Both servers serve the same 32 MiB file on loopback; atftp fetches it at blksize 1468, once in
lock-step and once with windowsize 16 (RFC 7440). Prints MiB/s (best of --runs) and ratios.
dnsmasq's TFTP port is fixed at 69, so the bench re-executes itself in a private network
namespace (`unshare --net`, root needed): only that namespace's loopback carries traffic and
nothing else on the machine can collide with the port.

Run: python3 bench/tftp.py [--runs 3] [--size-mib 32]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from services.tftp import TftpServer

_IN_NETNS = "IMAGESERVER_TFTP_BENCH_NETNS"
FILE_NAME = "bench.bin"


def _reexec_in_private_netns() -> None:
    if os.environ.get(_IN_NETNS) == "1":
        return
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        sys.exit("bench/tftp.py needs root and unshare(1) for a private network namespace")
    env = dict(os.environ, **{_IN_NETNS: "1"})
    os.execvpe("unshare", ["unshare", "--net", sys.executable, *sys.argv], env)


async def _fetch(port: int, options: list[str]) -> float:
    args = ["atftp", "-g", "-r", FILE_NAME, "-l", "/dev/null"]
    for option in options:
        args += ["--option", option]
    args += ["127.0.0.1", str(port)]
    started = time.perf_counter()
    proc = await asyncio.create_subprocess_exec(
        *args, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
    )
    _, err = await proc.communicate()
    elapsed = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(f"atftp failed ({proc.returncode}): {err.decode(errors='replace')}")
    return elapsed


async def _best(port: int, options: list[str], runs: int, size: int) -> float:
    best = min([await _fetch(port, options) for _ in range(runs)])
    return size / best / (1 << 20)


async def _main(runs: int, size_mib: int) -> None:
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    with tempfile.TemporaryDirectory(prefix="tftp-bench-") as tmp:
        root = Path(tmp)
        root.chmod(0o755)  # dnsmasq drops to an unprivileged user
        size = size_mib << 20
        (root / FILE_NAME).write_bytes(os.urandom(size))
        (root / FILE_NAME).chmod(0o644)
        dnsmasq = subprocess.Popen(
            ["dnsmasq", "--no-daemon", "--conf-file=/dev/null", "--port=0", "--enable-tftp",
             f"--tftp-root={root}", "--listen-address=127.0.0.1", "--bind-interfaces",
             "--pid-file=", "--quiet-tftp", "--log-facility=/dev/null"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )
        server = TftpServer(root=root, host="127.0.0.1", port=0)
        await server.start()
        try:
            await asyncio.sleep(0.3)  # let dnsmasq bind
            if dnsmasq.poll() is not None:
                raise RuntimeError(f"dnsmasq exited: {dnsmasq.stderr.read().decode() if dnsmasq.stderr else ''}")
            cases = {
                "lock-step  blksize 1468": ["blksize 1468"],
                "window 16  blksize 1468": ["blksize 1468", "windowsize 16"],
            }
            print(f"file {size_mib} MiB, atftp client, best of {runs}, private netns loopback")
            results: dict[str, tuple[float, float]] = {}
            for label, options in cases.items():
                ours = await _best(server.port, options, runs, size)
                theirs = await _best(69, options, runs, size)
                results[label] = (ours, theirs)
                print(f"{label}: imageserver {ours:7.1f} MiB/s   dnsmasq {theirs:7.1f} MiB/s   "
                      f"ratio {ours / theirs:5.2f}x")
            ours_window = results["window 16  blksize 1468"][0]
            best_dnsmasq = max(theirs for _, theirs in results.values())
            print(f"imageserver windowsize 16 vs dnsmasq's best: {ours_window / best_dnsmasq:5.2f}x (target >= 1.0x)")
        finally:
            await server.stop()
            dnsmasq.terminate()
            dnsmasq.wait(timeout=5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--size-mib", type=int, default=32)
    args = parser.parse_args()
    _reexec_in_private_netns()
    asyncio.run(_main(args.runs, args.size_mib))


if __name__ == "__main__":
    main()
