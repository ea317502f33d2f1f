"""DHCP DORA rate, ours vs ISC Kea (memfile), measured side by side in the same run with perfdhcp.

Each server runs in its own lab network namespace; perfdhcp runs in another as a relay (giaddr on a
/16 behind a route), like the storm system test. For each server the bench steps the offered rate up
(doubling, then bisecting) and reports the highest rate at which perfdhcp saw fewer than 0.1 % drops
(DISCOVER-OFFER and REQUEST-ACK together), as completed DORA exchanges per second. The two ladders
run interleaved, one step of ours then one of Kea's, so a busy minute on a shared box hits both.

Durability differs and is printed: every ACK of ours waits for its lease's fsync'd commit (group
commit); Kea's memfile appends leases to a CSV file without fsync.

Each step also prints how many replies the kernel dropped at perfdhcp's own socket (its receive buffer
full): group commit releases ACKs in bursts, so near the limit these are most of our "drops".

Ours runs once per event loop asked for (--event-loop both: asyncio and uvloop, each its own ladder), so the
table shows what the loop is worth in the same run.

Run (root): python3 bench/dhcp.py [--seconds 4] [--start 500] [--max 16000] [--steps 8] [--resolution 0.01]
                                  [--tries 2] [--event-loop both|asyncio|uvloop] [--smoke]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import shutil
import statistics
import sys
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from appliance.daemon.eventloop import ENV as EVENT_LOOP_ENV
from bench._cpu import main_thread_cpu, process_cpu
from bench._smoke import parse_args, peer_available
from lab.netns import Lab, Namespace, Proc, lab_unavailable_reason

RELAY_NET = IPv4Network("172.31.0.0/16")
RELAY = IPv4Address("172.31.0.1")
POOL = ("172.31.0.10", "172.31.255.250")
DROP_LIMIT = 0.001
REPO = Path(__file__).resolve().parent.parent


@dataclass(frozen=True, slots=True)
class Run:
    offered: int  # -r
    dora_s: float  # ACKs received per second of the run
    sent: int
    drops: int
    client_overflows: int = 0  # replies the kernel dropped at perfdhcp's socket (its receive buffer was full)
    acks: int = 0  # DORA exchanges completed in the run
    cpu_s: float = 0.0  # the server's CPU seconds (user + system, every thread) during the run
    main_cpu_s: float = 0.0  # of them, its main thread's (the event loop; the rest: e.g. our durable writer)

    @property
    def cpu_us_per_dora(self) -> float:
        """The server's CPU per completed DORA: the figure that tells servers apart when perfdhcp and the
        server share two cores and the clean rate stops at the same rung for both."""
        return self.cpu_s / self.acks * 1e6 if self.acks else float("inf")

    @property
    def main_us_per_dora(self) -> float:
        return self.main_cpu_s / self.acks * 1e6 if self.acks else float("inf")

    @property
    def drop_ratio(self) -> float:
        return self.drops / self.sent if self.sent else 1.0

    @property
    def clean(self) -> bool:
        return self.sent > 0 and self.drop_ratio < DROP_LIMIT


@dataclass(slots=True)
class Topology:
    lab: Lab
    srv: Namespace
    prf: Namespace
    srv_if: str
    link: IPv4Network

    @property
    def server_ip(self) -> IPv4Address:
        return self.link.network_address + 1

    @classmethod
    def build(cls, lab: Lab) -> Topology:
        srv, prf = lab.namespace("srv"), lab.namespace("prf")
        srv_if, prf_if = lab.ifname("vs"), lab.ifname("vp")
        lab.veth(srv, srv_if, prf, prf_if)
        link = lab.random_subnet()
        srv.add_address(srv_if, f"{link.network_address + 1}/{link.prefixlen}")
        prf.add_address(prf_if, f"{link.network_address + 2}/{link.prefixlen}")
        prf.add_address(prf_if, f"{RELAY}/{RELAY_NET.prefixlen}")
        srv.ip("route", "add", str(RELAY_NET), "via", str(link.network_address + 2))
        return cls(lab, srv, prf, srv_if, link)


class Server:
    name = ""
    proc: Proc | None = None

    def start(self) -> None: ...

    def cpu_seconds(self) -> float:
        assert self.proc is not None, "the server is not running"
        return process_cpu(self.proc.pid)

    def main_cpu_seconds(self) -> float:
        assert self.proc is not None, "the server is not running"
        return main_thread_cpu(self.proc.pid)

    def stop(self) -> None: ...


class Ours(Server):
    name = "imageserver"
    loop = "asyncio"  # IMAGESERVER_EVENT_LOOP of the daemon (see ours_on)

    def __init__(self, topo: Topology) -> None:
        self.topo = topo
        self.proc: Proc | None = None

    def start(self) -> None:
        t = self.topo
        state = t.lab.tmp_path("state")
        config = t.lab.tmp_path("imageserver.toml")
        config.write_text(f"""
[appliance]
state_dir = "{state}"
interface = "{t.srv_if}"
address = "{t.server_ip}"
log_level = "warning"

[dhcp]
subnet = "{t.link}"
pool = "{t.link.network_address + 100}-{t.link.network_address + 150}"
conflict_probe = false
lease_time = 3600
trusted_relays = ["{RELAY}"]  # perfdhcp is the relay agent: relayed packets are believed only from a named one

[[dhcp.subnets]]
subnet = "{RELAY_NET}"
pool = "{POOL[0]}-{POOL[1]}"

[tftp]
enabled = false

[http]
enabled = false
""")
        env = {**os.environ, "PYTHONPATH": str(REPO), EVENT_LOOP_ENV: self.loop}
        self.proc = t.srv.popen([sys.executable, "-m", "appliance.cli", "serve", "--config", str(config)], env=env)
        _wait_for(lambda: _listening(t.srv, 67), self.proc)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()


def ours_on(loop: str) -> type[Ours]:
    """Our server on one event loop, named for it in the table."""
    return type(f"Ours_{loop}", (Ours,), {"name": f"imageserver/{loop}", "loop": loop})


class Kea(Server):
    name = "kea-dhcp4 (memfile)"

    def __init__(self, topo: Topology) -> None:
        self.topo = topo
        self.proc: Proc | None = None

    def start(self) -> None:
        t = self.topo
        run_dir = t.lab.tmp_path("kea")
        run_dir.mkdir()
        config = run_dir / "kea-dhcp4.conf"
        config.write_text(json.dumps({"Dhcp4": {
            "interfaces-config": {"interfaces": [t.srv_if], "dhcp-socket-type": "udp"},
            "lease-database": {"type": "memfile", "persist": True, "name": str(run_dir / "leases4.csv"),
                               "lfc-interval": 0},
            "valid-lifetime": 3600,
            "subnet4": [
                {"id": 1, "subnet": str(t.link),
                 "pools": [{"pool": f"{t.link.network_address + 100} - {t.link.network_address + 150}"}]},
                {"id": 2, "subnet": str(RELAY_NET), "pools": [{"pool": f"{POOL[0]} - {POOL[1]}"}]},
            ],
            "loggers": [{"name": "kea-dhcp4", "output_options": [{"output": "stdout"}], "severity": "WARN"}],
        }}))
        env = {**os.environ, "KEA_PIDFILE_DIR": str(run_dir), "KEA_LOCKFILE_DIR": str(run_dir)}
        self.proc = t.srv.popen(["kea-dhcp4", "-c", str(config)], env=env)
        _wait_for(lambda: _listening(t.srv, 67), self.proc)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()


def _listening(ns: Namespace, port: int) -> bool:
    return bool(ns.run(["ss", "-Hlun", f"sport = :{port}"]).stdout.strip())


def _wait_for(cond: Callable[[], bool], proc: Proc, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if not proc.alive():
            raise RuntimeError(f"{proc.argv[0]} exited: {proc.output()[-2000:]}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{proc.argv[0]} not ready after {timeout} s: {proc.output()[-2000:]}")
        time.sleep(0.05)


def _udp_receive_buffer_errors(ns: Namespace) -> int:
    lines = [line.split() for line in ns.run(["cat", "/proc/net/snmp"]).stdout.splitlines() if line.startswith("Udp:")]
    return int(lines[1][lines[0].index("RcvbufErrors")])


def perfdhcp(topo: Topology, rate: int, seconds: int, cpu: Callable[[], float] = lambda: 0.0,
             main_cpu: Callable[[], float] = lambda: 0.0) -> Run:
    """One perfdhcp run at `rate`; `cpu` reads the server's CPU seconds, `main_cpu` its main thread's (the
    run's share is the difference)."""
    # -W: after the last request, wait up to 1 s (perfdhcp's drop time) for answers still in flight, so
    # a server whose ACKs wait for an fsync is not charged for the exchanges cut off at the end.
    overflows = _udp_receive_buffer_errors(topo.prf)
    cpu_before, main_before = cpu(), main_cpu()
    out = topo.prf.run(["perfdhcp", "-4", "-l", str(RELAY), "-R", "1000000", "-r", str(rate), "-p", str(seconds),
                        "-W", "1000000", str(topo.server_ip)], check=False, timeout=seconds + 60).stdout
    sent = sum(int(x) for x in re.findall(r"sent packets: (\d+)", out))
    drops = sum(int(x) for x in re.findall(r"drops: (\d+)", out))
    received = [int(x) for x in re.findall(r"received packets: (\d+)", out)]  # OFFERs, then ACKs
    cpu_s, main_cpu_s = cpu() - cpu_before, main_cpu() - main_before
    overflows = _udp_receive_buffer_errors(topo.prf) - overflows
    acks = received[1] if len(received) == 2 else 0
    # Not perfdhcp's "Rate:" line, which also counts the -W wait as run time.
    return Run(rate, acks / seconds, sent, drops, overflows, acks, cpu_s, main_cpu_s)


def ladder(args: argparse.Namespace) -> Generator[int, Run, Run | None]:
    """The rates one server is tried at: double until drops appear, then bisect (at most `steps` times)
    until the clean and the failing rate are within `resolution` of each other. Yields a rate, is sent
    that run's result, and returns the best clean run.

    A step with drops is tried again (up to --tries runs), the same for both servers: on a shared box
    one stall of the machine otherwise decides the result for the whole ladder.
    """

    def trial(rate: int) -> Generator[int, Run, Run]:
        for _ in range(max(1, args.tries)):
            run = yield rate
            if run.clean:
                break
        return run

    good: Run | None = None
    rate = args.start
    bad = None
    while rate <= args.max:
        run = yield from trial(rate)
        if not run.clean:
            bad = rate
            break
        good = run
        rate *= 2
    low = good.offered if good else 0
    for _ in range(args.steps if bad is not None else 0):
        mid = (low + bad) // 2
        if mid <= low or bad - low <= max(1, args.resolution * low):
            break
        run = yield from trial(mid)
        if run.clean:
            good, low = run, mid
        else:
            bad = mid
    return good


def run_once(make: type[Server], topo: Topology, rate: int, seconds: int) -> Run:
    """One perfdhcp run against a fresh server."""
    server = make(topo)
    server.start()
    try:
        run = perfdhcp(topo, rate, seconds, server.cpu_seconds, server.main_cpu_seconds)
    finally:
        server.stop()
    print(f"  {server.name:22} offered {rate:6}/s -> {run.dora_s:8.0f} DORA/s, drops {run.drop_ratio:7.3%}"
          f" (of them at perfdhcp's full receive buffer: {run.client_overflows}), "
          f"{run.cpu_us_per_dora:6.0f} µs CPU/DORA (main thread {run.main_us_per_dora:.0f})", flush=True)
    return run


def measure_side_by_side(makes: tuple[type[Server], ...], topo: Topology, args: argparse.Namespace,
                         history: dict[str, list[Run]] | None = None) -> dict[str, Run | None]:
    """Every server's ladder, run interleaved step by step (ours, Kea, ours, ...), so the load of a shared
    box changes both servers' numbers alike rather than only those of whichever ran in the busy minute.
    Every run is also appended to `history` (by server name), if given."""
    results: dict[str, Run | None] = {}
    ladders = {make: ladder(args) for make in makes}
    pending = {make: next(gen) for make, gen in ladders.items()}
    while pending:
        for make in list(pending):
            run = run_once(make, topo, pending[make], args.seconds)
            if history is not None:
                history.setdefault(make.name, []).append(run)
            try:
                pending[make] = ladders[make].send(run)
            except StopIteration as done:
                results[make.name] = done.value
                del pending[make]
    return results


def _median_cpu(runs: list[Run]) -> float:
    clean = [r.cpu_us_per_dora for r in runs if r.clean and r.acks] or [r.cpu_us_per_dora for r in runs if r.acks]
    return statistics.median(clean) if clean else float("inf")


def _cpu_figure(runs: list[Run]) -> str:
    cpu = _median_cpu(runs)
    return f"{cpu:.0f}" if cpu != float("inf") else "-"


def _same_rate(history: dict[str, list[Run]]) -> tuple[int, dict[str, float]] | None:
    """CPU per DORA of every server at the highest offered rate all of them ran clean: a server's CPU per
    DORA falls as its rate rises (a loop turn, a wakeup, a commit serve more exchanges), so figures taken
    at different rates do not compare. The doubling rungs are common to every ladder."""
    clean = {name: {r.offered for r in runs if r.clean and r.acks} for name, runs in history.items()}
    common = set.intersection(*clean.values()) if clean else set()
    if not common:
        return None
    rate = max(common)
    return rate, {name: statistics.median(r.cpu_us_per_dora for r in runs if r.offered == rate and r.clean and r.acks)
                  for name, runs in history.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=4, help="perfdhcp run length per step")
    parser.add_argument("--start", type=int, default=500, help="first offered rate (DORA/s)")
    parser.add_argument("--max", type=int, default=16000, help="highest offered rate tried")
    parser.add_argument("--steps", type=int, default=8, help="bisection steps at most after the first failing rate")
    parser.add_argument("--resolution", type=float, default=0.01,
                        help="bisect until the clean and the failing rate are this close (share of the clean one)")
    parser.add_argument("--tries", type=int, default=2, help="runs of a step before it counts as failed")
    parser.add_argument("--event-loop", choices=("both", "asyncio", "uvloop"), default="both",
                        help="the loop(s) our server runs on; both: one ladder each, side by side")
    # Smoke: one short step at a rate any box sustains, no ladder.
    args = parse_args(parser, {"seconds": 1, "start": 100, "max": 100, "steps": 0, "tries": 1, "resolution": 0.01})
    reason = lab_unavailable_reason()
    if reason:
        sys.exit(f"bench/dhcp.py: {reason}")
    if shutil.which("perfdhcp") is None:
        sys.exit("bench/dhcp.py needs perfdhcp (the client; apt-get install kea-admin)")
    loops = ["asyncio", "uvloop"] if args.event_loop == "both" else [args.event_loop]
    if "uvloop" in loops and importlib.util.find_spec("uvloop") is None:
        print("bench/dhcp.py: uvloop is not installed (pip install uvloop): ours runs on asyncio only", flush=True)
        loops.remove("uvloop")
        if not loops:
            loops = ["asyncio"]
    ours_makes = tuple(ours_on(loop) for loop in loops)
    kea_too = peer_available("bench/dhcp.py", "kea-dhcp4", "kea-dhcp4-server", args.smoke)
    with Lab() as lab:
        topo = Topology.build(lab)
        print(f"perfdhcp relayed from {RELAY} (pool {POOL[0]}-{POOL[1]}), {args.seconds} s per step, "
              f"clean = drops < {DROP_LIMIT:.1%}", flush=True)
        history: dict[str, list[Run]] = {}
        results = measure_side_by_side((*ours_makes, Kea) if kea_too else ours_makes, topo, args, history)
    kea = results.get(Kea.name)
    print()
    print(f"{'server':24} {'max clean DORA/s':>18} {'CPU µs/DORA':>12}  durability of an ACKed lease")
    for make in ours_makes:
        ours = results[make.name]
        print(f"{make.name:24} {ours.dora_s if ours else 0:18.0f} {_cpu_figure(history[make.name]):>12}  "
              "fsync'd (SQLite WAL, group commit) before the ACK")
    if kea_too:
        print(f"{Kea.name:24} {kea.dora_s if kea else 0:18.0f} {_cpu_figure(history[Kea.name]):>12}  "
              "appended to a CSV file, no fsync")
    for make in ours_makes:
        ours = results[make.name]
        if ours and kea and kea.dora_s:
            print(f"ratio {make.name} / kea: clean rate {ours.dora_s / kea.dora_s:.2f}, CPU per DORA "
                  f"{_median_cpu(history[make.name]) / _median_cpu(history[Kea.name]):.2f} (lower is better)")
    print("CPU per DORA: the median over the server's clean runs (each run's CPU from /proc over its ACKs)")
    same = _same_rate(history)
    if same is not None:
        rate, cpu = same
        kea_cpu = cpu.get(Kea.name)
        print(f"CPU µs per DORA at the same offered rate, {rate}/s (the highest every server ran clean): "
              + ", ".join(f"{name} {us:.0f}" + (f" ({us / kea_cpu:.2f}x kea)" if kea_cpu and name != Kea.name else "")
                          for name, us in cpu.items()))
    # A smoke step is too short to judge drops on a busy box; a server that completes no DORA is broken.
    if args.smoke:
        for make in ours_makes:
            if not any(run.dora_s for run in history[make.name]):
                sys.exit(f"bench/dhcp.py: {make.name} completed no DORA in the smoke run")
    return 0


if __name__ == "__main__":
    sys.exit(main())
