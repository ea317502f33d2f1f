"""DNS queries per second, ours vs dnsmasq, side by side in the same run.

Both servers know the same N host names (ours from hosts rows in a fresh state directory, served by the
real daemon `imageserver serve`; dnsmasq from an --addn-hosts file, authoritative for the domain with
--local), both listen on 127.0.0.1 ephemeral ports, and the same query file is replayed against each by
`dnsperf` (100 queries in flight), or by a small asyncio client when dnsperf is not installed. Rounds
alternate between the servers so both see the same machine load; the best round counts.

Three query mixes, because our server caches whole answers per zone (a repeated question, up to letter
case, is a dict lookup):
  known   A for every name and PTR for every address, shuffled: what installed hosts ask (cache hits);
  case    the same with random letter case (what resolvers using 0x20 encoding send): still cache hits;
  miss    unique names that do not exist (NXDOMAIN): every query takes the full dnslib parse/decide/pack.
Prints queries/s for both, the ratio ours/dnsmasq, the share of answers with the expected rcode, and each
server's CPU per query (from /proc; the lowest of the rounds), which a loaded box disturbs far less than the rate.

Run: python3 bench/dns.py [--names 1000] [--seconds 3] [--runs 2] [--mode known|case|miss|all]
                          [--client dnsperf|python] [--misses 400000] [--smoke]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from ipaddress import IPv4Address
from pathlib import Path

# This file is named dns.py: drop its own directory from the path (it would shadow a `dns` package,
# e.g. dnspython) and put the repository root there instead.
sys.path.pop(0)
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from dnslib import DNSRecord  # noqa: E402

from bench._cpu import process_cpu  # noqa: E402
from bench._smoke import parse_args, peer_available  # noqa: E402
from state.db import connect, db_path  # noqa: E402

DOMAIN = "bench.test"
FIRST = int(IPv4Address("10.200.0.10"))


def free_port() -> int:
    """A loopback port free for both UDP and TCP right now."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u, socket.socket() as t:
            u.bind(("127.0.0.1", 0))
            port = int(u.getsockname()[1])
            try:
                t.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port


def names(n: int) -> list[tuple[str, IPv4Address]]:
    return [(f"host{i:05d}", IPv4Address(FIRST + i)) for i in range(n)]


MODES = ("known", "case", "miss")
EXPECTED = {"known": "NOERROR", "case": "NOERROR", "miss": "NXDOMAIN"}


def write_queries(path: Path, hosts: list[tuple[str, IPv4Address]], mode: str,
                  misses: int) -> list[tuple[str, str]]:
    rng = random.Random(1)
    if mode == "miss":
        # More unique names than a run can send (--misses), so none repeats while it is measured.
        queries = [(f"miss{i:07d}.{DOMAIN}", "A") for i in range(misses)]
    else:
        queries = [(f"{name}.{DOMAIN}", "A") for name, _ in hosts]
        queries += [(".".join(reversed(str(ip).split("."))) + ".in-addr.arpa", "PTR") for _, ip in hosts]
        if mode == "case":
            queries = [("".join(c.upper() if rng.random() < 0.5 else c for c in q), t)
                       for q, t in queries for _ in range(20)]
    rng.shuffle(queries)
    path.write_text("".join(f"{q} {t}\n" for q, t in queries))
    return queries


def start_ours(tmp: Path, hosts: list[tuple[str, IPv4Address]], port: int) -> subprocess.Popen[bytes]:
    state = tmp / "state"
    conn = connect(db_path(state))
    with conn:
        conn.execute("BEGIN")
        conn.executemany("INSERT INTO hosts(name, ip, created, updated) VALUES(?, ?, 0, 0)",
                         [(name, int(ip)) for name, ip in hosts])
    conn.close()
    cfg = tmp / "imageserver.toml"
    cfg.write_text(f"""
[appliance]
state_dir = "{state}"
address = "127.0.0.1"
domain = "{DOMAIN}"
log_level = "warning"
[tftp]
enabled = false
[http]
enabled = false
[rsyncd]
enabled = false
[dns]
enabled = true
port = {port}
""")
    return subprocess.Popen([sys.executable, "-m", "appliance.cli", "serve", "--config", str(cfg)], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=(tmp / "daemon.log").open("wb"))


def start_dnsmasq(tmp: Path, hosts: list[tuple[str, IPv4Address]], port: int) -> subprocess.Popen[bytes]:
    hosts_file = tmp / "hosts"
    hosts_file.write_text("".join(f"{ip} {name}.{DOMAIN} {name}\n" for name, ip in hosts))
    hosts_file.chmod(0o644)
    tmp.chmod(0o755)  # dnsmasq drops to an unprivileged user
    return subprocess.Popen(
        ["dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null", f"--port={port}",
         "--listen-address=127.0.0.1", "--bind-interfaces", "--no-resolv", "--no-hosts", f"--local=/{DOMAIN}/",
         f"--addn-hosts={hosts_file}", "--pid-file=", "--log-facility=/dev/null"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def wait_answering(port: int, proc: subprocess.Popen[bytes], name: str, timeout: float = 20.0) -> None:
    q = DNSRecord.question(f"host00000.{DOMAIN}").pack()
    deadline = time.monotonic() + timeout
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(0.2)
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode}")
            s.sendto(q, ("127.0.0.1", port))
            try:
                reply = DNSRecord.parse(s.recv(4096))
            except TimeoutError:
                continue
            if reply.rr:
                return
    raise RuntimeError(f"{name} did not answer within {timeout}s")


def run_dnsperf(port: int, queries: Path, seconds: float, expected: str) -> tuple[float, float, int]:
    out = subprocess.run(["dnsperf", "-s", "127.0.0.1", "-p", str(port), "-d", str(queries), "-l", str(seconds),
                          "-q", "100", "-t", "2"], capture_output=True, text=True, check=True).stdout
    qps = re.search(r"Queries per second:\s+([\d.]+)", out)
    sent = re.search(r"Queries sent:\s+(\d+)", out)
    good = re.search(rf"{expected} (\d+)", out)
    if not (qps and sent):
        raise RuntimeError(f"cannot read dnsperf output:\n{out}")
    ok = int(good.group(1)) / int(sent.group(1)) if good and int(sent.group(1)) else 0.0
    return float(qps.group(1)), ok, int(sent.group(1))


async def _python_client(port: int, queries: list[tuple[str, str]], seconds: float, expected: str,
                         in_flight: int = 100) -> tuple[float, float, int]:
    """Keep `in_flight` queries outstanding over one UDP socket for `seconds`; count answers."""
    loop = asyncio.get_running_loop()
    packets = [DNSRecord.question(q, t).pack() for q, t in queries]
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setblocking(False)
    sock.connect(("127.0.0.1", port))
    answered = ok = 0
    nxt = 0
    deadline = time.monotonic() + seconds

    def send() -> None:
        nonlocal nxt
        p = bytearray(packets[nxt % len(packets)])
        p[0:2] = (nxt & 0xFFFF).to_bytes(2, "big")
        nxt += 1
        sock.send(p)

    for _ in range(in_flight):
        send()
    start = time.monotonic()
    while time.monotonic() < deadline:
        try:
            data = await asyncio.wait_for(loop.sock_recv(sock, 4096), 1.0)
        except TimeoutError:
            for _ in range(in_flight):  # lost queries: refill the window
                send()
            continue
        answered += 1
        ok += (data[3] & 0xF) == (3 if expected == "NXDOMAIN" else 0)
        send()
    sock.close()
    elapsed = time.monotonic() - start
    return answered / elapsed, ok / max(answered, 1), nxt


def measure(client: str, port: int, pid: int, qfile: Path, queries: list[tuple[str, str]], seconds: float,
            expected: str) -> tuple[float, float, float]:
    """(queries/s, share of the expected rcode, the server's CPU µs per query sent): the CPU figure holds
    on a loaded box, where the rate swings with whatever else runs."""
    before = process_cpu(pid)
    if client == "dnsperf":
        qps, ok, sent = run_dnsperf(port, qfile, seconds, expected)
    else:
        qps, ok, sent = asyncio.run(_python_client(port, queries, seconds, expected))
    return qps, ok, (process_cpu(pid) - before) / max(sent, 1) * 1e6


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--names", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--mode", choices=(*MODES, "all"), default="all")
    parser.add_argument("--client", choices=("dnsperf", "python"),
                        default="dnsperf" if shutil.which("dnsperf") else "python")
    parser.add_argument("--misses", type=int, default=400_000, help="distinct names of the miss mix")
    args = parse_args(parser, {"names": 20, "seconds": 0.5, "runs": 1, "misses": 5_000})
    dnsmasq = peer_available("bench/dns.py", "dnsmasq", "dnsmasq-base", args.smoke)
    hosts = names(args.names)
    modes = MODES if args.mode == "all" else (args.mode,)
    with tempfile.TemporaryDirectory(prefix="dns-bench-") as tmp_name:
        tmp = Path(tmp_name)
        ours_port, theirs_port = free_port(), free_port()
        ours = start_ours(tmp, hosts, ours_port)
        theirs = start_dnsmasq(tmp, hosts, theirs_port) if dnsmasq else None
        servers = {"imageserver": (ours_port, ours.pid),
                   **({"dnsmasq": (theirs_port, theirs.pid)} if theirs else {})}
        try:
            wait_answering(ours_port, ours, "imageserver")
            if theirs is not None:
                wait_answering(theirs_port, theirs, "dnsmasq")
            print(f"{args.names} names, client {args.client} (100 in flight), {args.seconds:g} s per round, "
                  f"best of {args.runs}, loopback, {os.cpu_count()} cores shared by client and servers")
            for mode in modes:
                qfile = tmp / f"queries-{mode}.txt"
                queries = write_queries(qfile, hosts, mode, args.misses)
                best = dict.fromkeys(servers, (0.0, 0.0, 0.0))
                cpu: dict[str, list[float]] = {label: [] for label in servers}
                for _ in range(args.runs):
                    for label, (port, pid) in servers.items():
                        result = measure(args.client, port, pid, qfile, queries, args.seconds, EXPECTED[mode])
                        cpu[label].append(result[2])
                        if result[0] > best[label][0]:
                            best[label] = result
                q_ours, ok_ours, _ = best["imageserver"]
                us_ours = min(cpu["imageserver"])
                line = (f"{mode:6s} ({len(queries):6d} distinct)  imageserver {q_ours:8.0f} q/s ({ok_ours:6.1%} "
                        f"{EXPECTED[mode]}, {us_ours:5.1f} us CPU/q)")
                if "dnsmasq" in best:
                    q_theirs, ok_theirs, _ = best["dnsmasq"]
                    us_theirs = min(cpu["dnsmasq"])
                    line += (f"   dnsmasq {q_theirs:8.0f} q/s ({ok_theirs:6.1%}, {us_theirs:5.1f} us CPU/q)   "
                             f"ratio {q_ours / q_theirs:4.2f}x (CPU/q {us_ours / max(us_theirs, 1e-9):4.2f}x)")
                print(line)
        finally:
            stop(ours)
            if theirs is not None:
                stop(theirs)


if __name__ == "__main__":
    main()
