"""HTTP boot-file throughput, ours vs nginx, side by side in the same run.

Both servers serve the same 32 MiB file on loopback ephemeral ports; one curl process fetches it
100 times in parallel (`--parallel --parallel-immediate`: 100 connections at once) into /dev/null.
Prints aggregate MiB/s per server (best of --runs, rounds alternated so both see the same machine
load) and the ratio ours/nginx. nginx runs with one worker (like-for-like: our server is one
process) and, for reference, with `worker_processes auto`.

Each download comes from its own loopback source address (127.10.0.1, .2, ...), as each of 100 PXE
machines has its own address: our server then runs with its shipped [http] limits, the per-client
connection cap included (32, which one address opening 100 connections would hit), and nginx sees the
very same traffic. Raising the cap for the bench instead would measure a configuration no one runs.

Run: python3 bench/http.py [--runs 3] [--clients 100] [--size-mib 32] [--smoke]
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# This file is named http.py: drop its own directory from the path (it would shadow the stdlib's http
# module that aiohttp imports) and put the repository root there instead.
sys.path.pop(0)
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from appliance.daemon.eventloop import loop_factory
from bench._smoke import parse_args, peer_available
from domain.settings import ApplianceConfig
from services.http import HttpServer

FILE_NAME = "bench.bin"
FIRST_CLIENT = ipaddress.IPv4Address("127.10.0.1")  # the clients' source addresses: all of 127/8 is loopback


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _nginx_conf(tmp: Path, root: Path, port: int, workers: str) -> Path:
    conf = tmp / f"nginx-{workers}.conf"
    conf.write_text(f"""
daemon off;
master_process on;
worker_processes {workers};
user root root;
pid {tmp}/nginx-{workers}.pid;
error_log {tmp}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    server {{
        listen 127.0.0.1:{port} backlog=1024;
        location /boot/files/ {{ alias {root}/; }}
    }}
}}
""")
    return conf


async def _wait_listening(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.05)


async def _round(port: int, clients: int, size: int, tmp: Path) -> float:
    """One round: `clients` parallel downloads, each from its own source address; returns aggregate MiB/s
    (after checking every size)."""
    url = f"http://127.0.0.1:{port}/boot/files/{FILE_NAME}"
    config = tmp / "curl.cfg"
    # One transfer per `next` group; a group's options (the source address among them) are its own.
    config.write_text("next\n".join(
        f'silent\nshow-error\nfail\ninterface = "{FIRST_CLIENT + i}"\nwrite-out = "%{{size_download}}\\n"\n'
        f'url = "{url}"\noutput = "/dev/null"\n' for i in range(clients)))
    started = time.perf_counter()
    proc = await asyncio.create_subprocess_exec(
        "curl", "--parallel", "--parallel-immediate", "--parallel-max", str(clients), "-K", str(config),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    elapsed = time.perf_counter() - started
    sizes = [int(x) for x in out.split()]
    if proc.returncode != 0 or sizes != [size] * clients:
        raise RuntimeError(f"curl failed ({proc.returncode}), sizes {set(sizes)}: {err.decode(errors='replace')}")
    return clients * size / elapsed / (1 << 20)


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--size-mib", type=int, default=32)
    args = parse_args(parser, {"runs": 1, "clients": 8, "size_mib": 1})
    if shutil.which("curl") is None:
        sys.exit("bench/http.py needs curl (the client)")
    nginx = peer_available("bench/http.py", "nginx", "nginx-light", args.smoke)
    size = args.size_mib << 20
    tmp = Path(tempfile.mkdtemp(prefix=f"isl-{os.getpid()}-httpbench-"))
    nginx_procs: list[subprocess.Popen[bytes]] = []
    ours: HttpServer | None = None
    try:
        root = tmp / "boot"
        root.mkdir()
        with open(root / FILE_NAME, "wb") as f:
            for _ in range(args.size_mib):
                f.write(os.urandom(1 << 20))
        ours = HttpServer(host="127.0.0.1", port=0, boot_root=root)
        await ours.start()
        ports: dict[str, int] = {"imageserver": ours.port}
        for workers in ("1", "auto") if nginx else ():
            port = _free_port()
            conf = _nginx_conf(tmp, root, port, workers)
            nginx_procs.append(subprocess.Popen(["nginx", "-c", str(conf), "-p", str(tmp)],
                                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            await _wait_listening(port)
            ports[f"nginx ({workers} worker{'s' if workers == 'auto' else ''})"] = port
        results: dict[str, list[float]] = {name: [] for name in ports}
        for _ in range(args.runs):
            for name, port in ports.items():
                results[name].append(await _round(port, args.clients, size, tmp))
        best = {name: max(values) for name, values in results.items()}
        print(f"{args.clients} concurrent downloads of a {args.size_mib} MiB file over loopback, "
              f"best of {args.runs} (all rounds: MiB/s)")
        for name, value in best.items():
            rounds = " ".join(f"{v:.0f}" for v in results[name])
            print(f"  {name:22s} {value:8.0f} MiB/s   [{rounds}]")
        mine = best["imageserver"]
        for name, value in best.items():
            if name != "imageserver":
                print(f"  ratio imageserver / {name}: {mine / value:.2f}x")
        if nginx and not args.smoke:
            ratio = mine / best["nginx (1 worker)"]
            print(f"  target >= 0.80x vs nginx (1 worker): {'met' if ratio >= 0.8 else 'NOT met'}")
        return 0
    finally:
        if ours is not None:
            await ours.stop()
        for proc in nginx_procs:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    # The daemon's default loop; IMAGESERVER_EVENT_LOOP=uvloop (or asyncio) to measure the other one.
    name, factory = loop_factory(ApplianceConfig().event_loop)
    print(f"event loop: {name}")
    with asyncio.Runner(loop_factory=factory) as runner:
        sys.exit(runner.run(main()))
