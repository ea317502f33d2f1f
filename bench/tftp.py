"""TFTP throughput, ours vs dnsmasq's, measured side by side in the same run.

Both servers serve the same 32 MiB file on loopback; atftp fetches it at blksize 1468, once in
lock-step and once with windowsize 16 (RFC 7440). Prints MiB/s (best of --runs) and ratios.
dnsmasq's TFTP port is fixed at 69, so the bench re-executes itself in a private network
namespace (`unshare --net`, root needed): only that namespace's loopback carries traffic and
nothing else on the machine can collide with the port.

Run: python3 bench/tftp.py [--runs 3] [--size-mib 32] [--smoke]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from appliance.daemon.eventloop import loop_factory
from bench._cpu import own_cpu, process_cpu
from bench._smoke import parse_args, peer_available
from domain.settings import ApplianceConfig
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


@dataclass(slots=True)
class Sample:
    seconds: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)  # server CPU seconds per fetch

    def mib_s(self, size: int) -> float:
        return size / min(self.seconds) / (1 << 20)

    def cpu_us_per_mib(self, size: int) -> float:
        return statistics.median(self.cpu) / (size / (1 << 20)) * 1e6


async def _measure(port: int, options: list[str], cpu: Callable[[], float], sample: Sample) -> None:
    before = cpu()
    sample.seconds.append(await _fetch(port, options))
    sample.cpu.append(cpu() - before)


async def _main(runs: int, size_mib: int, dnsmasq_too: bool, smoke: bool) -> None:
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    with tempfile.TemporaryDirectory(prefix="tftp-bench-") as tmp:
        root = Path(tmp)
        root.chmod(0o755)  # dnsmasq drops to an unprivileged user
        size = size_mib << 20
        (root / FILE_NAME).write_bytes(os.urandom(size))
        (root / FILE_NAME).chmod(0o644)
        dnsmasq = None if not dnsmasq_too else subprocess.Popen(
            ["dnsmasq", "--no-daemon", "--conf-file=/dev/null", "--port=0", "--enable-tftp",
             f"--tftp-root={root}", "--listen-address=127.0.0.1", "--bind-interfaces",
             "--pid-file=", "--quiet-tftp", "--log-facility=/dev/null"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )
        server = TftpServer(root=root, host="127.0.0.1", port=0)
        await server.start()
        try:
            if dnsmasq is not None:
                await asyncio.sleep(0.3)  # let dnsmasq bind
                if dnsmasq.poll() is not None:
                    raise RuntimeError(f"dnsmasq exited: {dnsmasq.stderr.read().decode() if dnsmasq.stderr else ''}")
            cases = {
                "lock-step  blksize 1468": ["blksize 1468"],
                "window 16  blksize 1468": ["blksize 1468", "windowsize 16"],
            }
            print(f"file {size_mib} MiB, atftp client, best of {runs} (runs interleaved), private netns loopback")
            print("server CPU is the median per fetch (ours: this process; dnsmasq: its /proc stat)")
            ours_best: dict[str, float] = {}
            dnsmasq_best: dict[str, float] = {}
            for label, options in cases.items():
                ours, theirs = Sample(), Sample()
                for _ in range(runs):  # interleaved, so a noisy neighbour hits both alike
                    await _measure(server.port, options, own_cpu, ours)
                    if dnsmasq is not None:
                        await _measure(69, options, partial(process_cpu, dnsmasq.pid), theirs)
                ours_best[label] = ours.mib_s(size)
                line = (f"{label}: imageserver {ours.mib_s(size):7.1f} MiB/s "
                        f"({ours.cpu_us_per_mib(size) / 1000:5.1f} ms CPU/MiB)")
                if dnsmasq is not None:
                    dnsmasq_best[label] = theirs.mib_s(size)
                    line += (f"   dnsmasq {theirs.mib_s(size):7.1f} MiB/s "
                             f"({theirs.cpu_us_per_mib(size) / 1000:5.1f} ms CPU/MiB)   "
                             f"ratio {ours.mib_s(size) / theirs.mib_s(size):5.2f}x")
                print(line)
            if dnsmasq_best and not smoke:
                ours_window = ours_best["window 16  blksize 1468"]
                best_dnsmasq = max(dnsmasq_best.values())
                print(f"imageserver windowsize 16 vs dnsmasq's best: {ours_window / best_dnsmasq:5.2f}x "
                      "(target >= 1.0x)")
        finally:
            await server.stop()
            if dnsmasq is not None:
                dnsmasq.terminate()
                dnsmasq.wait(timeout=5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--size-mib", type=int, default=32)
    args = parse_args(parser, {"runs": 1, "size_mib": 1})
    if shutil.which("atftp") is None:
        sys.exit("bench/tftp.py needs atftp (the client)")
    _reexec_in_private_netns()
    dnsmasq_too = peer_available("bench/tftp.py", "dnsmasq", "dnsmasq-base", args.smoke)
    # The daemon's default loop; IMAGESERVER_EVENT_LOOP=uvloop (or asyncio) to measure the other one.
    name, factory = loop_factory(ApplianceConfig().event_loop)
    print(f"event loop: {name}")
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(_main(args.runs, args.size_mib, dnsmasq_too, args.smoke))


if __name__ == "__main__":
    main()
