"""Many machines at once, without VMs: the whole provisioning path, and the daemon with a big store.

Part 1 (fleet): N fake machines (default 50) in a few client namespaces on the provisioning bridge walk
the path a real machine walks, all at once:
  dhcp_rom      DISCOVER/REQUEST as a BIOS PXE ROM (options 60, 93, 94, 97) -> boot file undionly.kpxe
  tftp          curl tftp:// fetch of that file from the leased address
  dhcp_ipxe     DISCOVER/REQUEST as iPXE (user class "iPXE", option 175) -> the boot script URL
  http_script   GET of the boot script (the discovery rule made the machine a host: it says install)
  dhcp_installer DISCOVER/REQUEST as the installer's udhcpc -> the same address
  install_script GET /install/<mac>/script with the fetch nonce from the boot script, as the installer's
                init does; the script carries the install token the later steps use
  rsync         the image from the supervised rsync daemon into a tmp dir (rsync --address <lease>), as the
                host's rsync user with its password from the install script
  done          POST /install/<mac>/events {"stage": "done"}
It prints p50/p99 per stage and the aggregate throughput, next to raw parallel rsync of the same image
by the same machines in the same run (the ceiling the path could reach): all at once, but never more than
the daemon's [rsyncd] max_connections (split over the client namespaces), so none waits in line (the path's
machines do, when they arrive past the cap). The "done" report ends a host's rsync credentials, so for that
run the bench makes the hosts due to install again, their tokens kept.

Part 2 (scale): a store with 10,000 hosts (each seen, each with a finished install) and 100,000 leases:
p50/p99 of GET /api/v1/status, /api/v1/hosts (first page, 100 hosts), /api/v1/machines (first page) and
/metrics over HTTP (target p99 < 50 ms each), and the highest clean perfdhcp DORA rate (< 0.1 % drops),
each next to the same daemon on an empty store
(target >= 0.9x); both stores climb one rate ladder, interleaved, so drifting load hits both alike.

Run (root): python3 bench/fleet.py [--machines 50] [--image-mb 32] [--skip-fleet] [--skip-scale] [--skip-ladder]
                               [--smoke]
(internally, `--agent` runs the machines of one client namespace.) It exits 1 if any machine failed its path.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import shutil
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench._smoke import parse_args  # noqa: E402
from domain.settings import RsyncdConfig  # noqa: E402
from protocols.dhcp.codec import DhcpError, DhcpPacket, decode, encode  # noqa: E402

HTTP_PORT = 8080
IMAGE = "fleet"
MAC_PREFIX = "02:f1"
STAGES = ("dhcp_rom", "tftp", "dhcp_ipxe", "http_script", "dhcp_installer", "install_script", "rsync", "done")
BROADCAST_FLAG = 0x8000
PXE_CLASS = b"PXEClient:Arch:00000:UNDI:002001"


# ============================================================================ the agent (in a namespace)


class DhcpClient:
    """One UDP socket on port 68 for all machines of this namespace; replies are matched by xid."""

    def __init__(self, iface: str) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, iface.encode())
        sock.bind(("0.0.0.0", 68))
        sock.setblocking(False)
        self.sock = sock
        self.waiting: dict[tuple[int, int], asyncio.Future[DhcpPacket]] = {}
        asyncio.get_running_loop().add_reader(sock.fileno(), self._readable)

    def _readable(self) -> None:
        while True:
            try:
                data = self.sock.recv(4096)
            except BlockingIOError:
                return
            try:
                reply = decode(data)
            except DhcpError:
                continue
            fut = self.waiting.pop((reply.xid, reply.message_type or 0), None)
            if fut is not None and not fut.done():
                fut.set_result(reply)

    async def exchange(self, packet: DhcpPacket, expect: int, tries: int = 4, timeout: float = 2.0) -> DhcpPacket:
        for _ in range(tries):
            fut = asyncio.get_running_loop().create_future()
            self.waiting[(packet.xid, expect)] = fut
            self.sock.sendto(encode(packet), ("255.255.255.255", 67))
            try:
                return await asyncio.wait_for(fut, timeout)
            except TimeoutError:
                continue
        raise RuntimeError(f"no DHCP message type {expect} for xid {packet.xid:#x}")

    async def dora(self, mac: str, options: dict[int, bytes]) -> DhcpPacket:
        chaddr = bytes.fromhex(mac.replace(":", "")).ljust(16, b"\x00")
        xid = random.getrandbits(32)
        offer = await self.exchange(DhcpPacket(xid=xid, flags=BROADCAST_FLAG, chaddr=chaddr,
                                               options={53: b"\x01", **options}), expect=2)
        request = DhcpPacket(xid=xid, flags=BROADCAST_FLAG, chaddr=chaddr,
                             options={53: b"\x03", 50: offer.yiaddr.packed, 54: offer.options[54], **options})
        return await self.exchange(request, expect=5)


async def run(*argv: str, timeout: float = 300, env: dict[str, str] | None = None) -> str:
    proc = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE,
                                                env=None if env is None else {**os.environ, **env})
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        raise RuntimeError(f"{argv[0]} timed out") from None
    if proc.returncode != 0:
        raise RuntimeError(f"{argv[0]} ... {argv[-1]} failed ({proc.returncode}): "
                           f"{err.decode(errors='replace')[-300:].strip()}")
    return out.decode(errors="replace")


async def machine(dhcp: DhcpClient, iface: str, server: str, mac: str, work: Path) -> dict[str, Any]:
    times: dict[str, list[float]] = {}
    result: dict[str, Any] = {"mac": mac, "stages": times, "ok": False}
    uuid = bytes(16 - 6) + bytes.fromhex(mac.replace(":", ""))

    async def stage(name: str, coro: Any) -> Any:
        start = time.monotonic()
        value = await coro
        times[name] = [start, time.monotonic()]
        return value

    try:
        rom = {60: PXE_CLASS, 93: b"\x00\x00", 94: b"\x01\x02\x01", 97: b"\x00" + uuid}
        ack = await stage("dhcp_rom", dhcp.dora(mac, rom))
        ip = str(ack.yiaddr)
        boot_file = ack.options.get(67, ack.file).rstrip(b"\x00").decode()
        await run("ip", "addr", "add", f"{ip}/24", "dev", iface)  # the first one brings the subnet route
        kpxe = work / f"{mac.replace(':', '')}.kpxe"
        await stage("tftp", run("curl", "-sS", "--interface", ip, "--tftp-blksize", "1468", "--max-time", "60",
                                "-o", str(kpxe), f"tftp://{server}/{boot_file}"))
        result["tftp_bytes"] = kpxe.stat().st_size
        ipxe = {**rom, 77: b"iPXE", 175: bytes.fromhex("b10501")}
        ack2 = await stage("dhcp_ipxe", dhcp.dora(mac, ipxe))
        # iPXE expands its settings in the filename; the URL names the machine by ${mac}.
        url = ack2.options.get(67, b"").decode().replace("${net0/mac}", mac).replace("${mac}", mac)
        if str(ack2.yiaddr) != ip or not url.startswith("http"):
            raise RuntimeError(f"iPXE got {ack2.yiaddr} {url!r}")
        script = await stage("http_script", run("curl", "-sS", "--fail", "--interface", ip, "--max-time", "30", url))
        # The boot script carries only a fetch nonce, bound to this MAC and address (boot files are readable
        # by anyone); it opens the install script, which carries the install token.
        nonce = re.search(r"INSTALL_NONCE=(\S+)", script)
        if nonce is None:
            raise RuntimeError(f"boot script says no install: {script[:200]!r}")
        ack3 = await stage("dhcp_installer", dhcp.dora(mac, {60: b"udhcp 1.35.0", 61: b"\x01" + bytes.fromhex(
            mac.replace(":", ""))}))
        if str(ack3.yiaddr) != ip:
            raise RuntimeError(f"installer got {ack3.yiaddr}, ROM got {ip}")
        base = f"http://{server}:{HTTP_PORT}/install/{mac}"
        install = await stage("install_script", run("curl", "-sS", "--fail", "--interface", ip, "--max-time", "30",
                                                    "-H", f"Authorization: Bearer {nonce.group(1)}",
                                                    f"{base}/script"))
        served = served_values(install)
        if not {"INSTALL_TOKEN", "RSYNC_USER", "RSYNC_PASSWORD", "MODULE"} <= served.keys():
            raise RuntimeError(f"install script lacks this install's values: {install[:300]!r}")
        auth = f"Authorization: Bearer {served['INSTALL_TOKEN']}"
        creds = {"ip": ip, "user": served["RSYNC_USER"], "password": served["RSYNC_PASSWORD"],
                 "module": served["MODULE"]}
        dest = work / mac.replace(":", "")
        result["rsync_refused"] = await stage("rsync", rsync_as(server, creds, dest))
        shutil.rmtree(dest, ignore_errors=True)
        await stage("done", run("curl", "-sS", "--fail", "--interface", ip, "--max-time", "30", "-H", auth,
                                "-H", "Content-Type: application/json", "-d", '{"stage": "done"}', f"{base}/events"))
        result["rsync"] = creds
        result["token"] = served["INSTALL_TOKEN"]
        result["ok"] = True
    except Exception as e:
        result["error"] = f"{type(e).__name__}: {e}"
    return result


def served_values(script: str) -> dict[str, str]:
    """The imageserver's values for this host at the head of its install script ("KEY='value'; export KEY"
    lines), as the installer's init reads them."""
    return dict(re.findall(r"^([A-Z_][A-Z0-9_]*)='([^']*)'; export \1$", script, re.MULTILINE))


async def rsync_as(server: str, creds: dict[str, str], dest: Path) -> int:
    """rsync of the image from the lease's address as the host's rsync user (the password in the environment),
    waiting in line while the daemon is full ([rsyncd] max_connections), as the installer's rsync_in_line
    does: a jittered pause doubling from 2 s up to 30 s. Returns how many times it was refused."""
    refused, pause = 0, 2.0
    while True:
        try:
            await run("rsync", "-a", "--address", creds["ip"],
                      f"rsync://{creds['user']}@{server}/{creds['module']}/", f"{dest}/",
                      env={"RSYNC_PASSWORD": creds["password"]})
            return refused
        except RuntimeError as e:
            if "max connections" not in str(e):
                raise
        refused += 1
        await asyncio.sleep(pause + random.uniform(0, pause))
        pause = min(2 * pause, 30.0)


async def raw_rsync(server: str, machines: list[dict[str, str]], work: Path, slots: int) -> dict[str, Any]:
    """The same image to the same addresses by plain parallel rsync, `slots` at once (this namespace's share
    of the daemon's connection cap: no retry pauses): the ceiling of the rsync stage."""
    running = asyncio.Semaphore(slots)

    async def one(creds: dict[str, str]) -> None:
        dest = work / f"raw-{creds['ip']}"
        async with running:
            await rsync_as(server, creds, dest)
        shutil.rmtree(dest, ignore_errors=True)

    start = time.monotonic()
    await asyncio.gather(*(one(creds) for creds in machines))
    return {"start": start, "end": time.monotonic()}


async def agent(iface: str, server: str, spec: dict[str, Any]) -> dict[str, Any]:
    work = Path(spec["work"])
    if spec.get("raw_rsync"):
        return await raw_rsync(server, spec["machines"], work, spec["slots"])
    dhcp = DhcpClient(iface)
    start_at = spec["start_at"]  # every agent starts at the same moment (CLOCK_MONOTONIC is system-wide)
    await asyncio.sleep(max(0.0, start_at - time.monotonic()))
    results = await asyncio.gather(*(machine(dhcp, iface, server, mac, work) for mac in spec["macs"]))
    return {"machines": results}


# ============================================================================ the orchestrator


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))] if ordered else float("nan")


@dataclass
class Fleet:
    lab: Any
    srv: Any
    clients: list[tuple[Any, str]]  # (namespace, interface)
    bridge: str
    subnet: IPv4Network
    server_ip: IPv4Address


def build_fleet_lab(lab: Any, namespaces: int) -> Fleet:
    srv = lab.namespace("srv")
    bridge = lab.ifname("br")
    ports, clients = [], []
    for _ in range(namespaces):
        ns = lab.namespace("fleet")
        s_if, c_if = lab.ifname("vs"), lab.ifname("vc")
        lab.veth(srv, s_if, ns, c_if)
        ports.append(s_if)
        clients.append((ns, c_if))
    lab.bridge(srv, bridge, ports)
    subnet = lab.random_subnet()
    server_ip = subnet.network_address + 1
    srv.add_address(bridge, f"{server_ip}/24")
    return Fleet(lab, srv, clients, bridge, subnet, server_ip)


def make_image(state: Path, megabytes: int, files: int) -> int:
    """A tree of `files` random files, `megabytes` in all, registered as image `fleet` v1; returns its bytes."""
    from appliance.images.catalog import Catalog

    catalog = Catalog(state)
    try:
        staged = catalog.new_staging(IMAGE)
        rng = random.Random(7)
        total = 0
        per = max(1, megabytes * 1024 * 1024 // files)
        for i in range(files):
            sub = staged / f"d{i % 20:02}"
            sub.mkdir(exist_ok=True)
            size = rng.randint(per // 2, per * 3 // 2)
            (sub / f"f{i:05}").write_bytes(os.urandom(size))
            total += size
        catalog.register(IMAGE, staged, source="bench/fleet.py", layout_json=None)
    finally:
        catalog.close()
    scripts = state / "scripts"
    scripts.mkdir(parents=True, exist_ok=True)
    (scripts / f"{IMAGE}.master").write_text("#!/bin/sh\n# bench/fleet.py: fetched, not run\n")
    return total


def fleet_config(f: Fleet, state: Path) -> str:
    net = f.subnet.network_address
    return f"""
[appliance]
state_dir = "{state}"
interface = "{f.bridge}"
address = "{f.server_ip}"
log_level = "{os.environ.get("FLEET_LOG_LEVEL", "warning")}"

[dhcp]
subnet = "{f.subnet}"
pool = "{net + 10}-{net + 250}"
conflict_probe = false
rogue_probe = 0

[tftp]
enabled = true

[http]
port = {HTTP_PORT}

[rsyncd]
enabled = true

[discovery]
policy = "auto"

[[discovery.rules]]
mac_prefix = "{MAC_PREFIX}"
hostname = "fleet{{n:04}}"
image = "{IMAGE}"
"""


def start_daemon(ns: Any, config: Path, timeout: float = 120) -> Any:
    """`imageserver serve` (log level warning, as a busy appliance would run) until its API answers."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONDONTWRITEBYTECODE": "1"}
    proc = ns.popen([sys.executable, "-m", "appliance.cli", "serve", "--config", str(config)], env=env)
    deadline = time.monotonic() + timeout
    while ns.run(["curl", "-s", "-o", "/dev/null", "--max-time", "2", f"http://127.0.0.1:{HTTP_PORT}/api/v1/status"],
                 check=False).returncode != 0:
        if not proc.alive() or time.monotonic() > deadline:
            raise RuntimeError(f"imageserver did not start: {proc.output()[-3000:]}")
        time.sleep(0.1)
    return proc


def run_agents(f: Fleet, specs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONDONTWRITEBYTECODE": "1"}
    procs = [ns.popen([sys.executable, str(Path(__file__).resolve()), "--agent", iface, str(f.server_ip),
                       json.dumps(spec)], env=env) for (ns, iface), spec in zip(f.clients, specs, strict=True)]
    out = []
    for proc in procs:
        proc.wait(900)
        text = proc.output().strip().splitlines()
        if proc.popen.returncode != 0 or not text:
            raise RuntimeError(f"agent failed: {proc.output()[-2000:]}")
        out.append(json.loads(text[-1]))
    return out


def wait_rsyncd(ns: Any, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not ns.run(["ss", "-Hltn", "sport = :873"]).stdout.strip():
        if time.monotonic() > deadline:
            raise RuntimeError("the supervised rsync daemon is not listening")
        time.sleep(0.1)


def due_again(state: Path, tokens: dict[str, str], timeout: float = 30) -> None:
    """The hosts due to install again with the same tokens (so the same rsync passwords), and rsyncd's
    credentials following them (its refresh loop reads the hosts table every 2 s)."""
    from state import installs
    from state.db import connect, db_path

    conn = connect(db_path(state))
    try:
        for name, token in tokens.items():
            installs.reinstall_op(name, token, time.time())(conn)
    finally:
        conn.close()
    secrets = state / "rsyncd.secrets"
    deadline = time.monotonic() + timeout
    while not tokens.keys() <= {line.split(":", 1)[0] for line in secrets.read_text().splitlines()}:
        if time.monotonic() > deadline:
            raise RuntimeError(f"rsyncd never took the {len(tokens)} hosts due again")
        time.sleep(0.1)


def fleet_part(args: argparse.Namespace) -> bool:
    """Part 1; True if every machine completed the path."""
    from lab.netns import Lab

    n = args.machines
    if not 1 <= n <= 240:
        sys.exit("--machines must be 1..240 (one /24 pool)")
    with Lab() as lab:
        f = build_fleet_lab(lab, min(args.namespaces, n))
        state = lab.tmp_path("state")
        image_bytes = make_image(state, args.image_mb, args.files)
        config = lab.tmp_path("imageserver.toml")
        config.write_text(fleet_config(f, state))
        proc = start_daemon(f.srv, config)
        wait_rsyncd(f.srv)
        macs = [f"{MAC_PREFIX}:{(i >> 16) & 0xff:02x}:{(i >> 8) & 0xff:02x}:{i & 0xff:02x}:01" for i in range(n)]
        start_at = time.monotonic() + 3.0
        specs = []
        for k, (_ns, _iface) in enumerate(f.clients):
            work = lab.tmp_path(f"work{k}")
            work.mkdir()
            specs.append({"macs": macs[k::len(f.clients)], "work": str(work), "start_at": start_at})
        print(f"fleet: {n} machines in {len(f.clients)} namespaces, image {image_bytes / 2**20:.1f} MiB "
              f"in {args.files} files", flush=True)
        spy = None
        if args.profile:  # where the daemon's time goes while the fleet runs (py-spy, flamegraph SVG)
            fmt = ["--format", "raw"] if args.profile.endswith(".txt") else []  # .txt: collapsed stacks
            spy = subprocess.Popen(["py-spy", "record", "-o", args.profile, "-p", str(proc.pid), "-r", "100", *fmt],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        per_agent = [out["machines"] for out in run_agents(f, specs)]
        if spy is not None:
            spy.send_signal(2)
            spy.wait(60)
            print(f"daemon profile: {args.profile}")
        results = [m for machines in per_agent for m in machines]
        failed = [m for m in results if not m["ok"]]
        for m in failed[:5]:
            print(f"  FAILED {m['mac']}: {m.get('error')}")
        ok = [m for m in results if m["ok"]]
        print(f"{len(ok)}/{n} machines completed the path")
        if not ok:
            proc.stop()
            return False
        print(f"{'stage':16} {'p50 ms':>10} {'p99 ms':>10} {'max ms':>10}")
        for name in STAGES:
            d = [(m["stages"][name][1] - m["stages"][name][0]) * 1000 for m in ok if name in m["stages"]]
            print(f"{name:16} {pct(d, 50):10.1f} {pct(d, 99):10.1f} {max(d):10.1f}")
        first = min(m["stages"]["dhcp_rom"][0] for m in ok)
        last = max(m["stages"]["done"][1] for m in ok)
        r0 = min(m["stages"]["rsync"][0] for m in ok)
        r1 = max(m["stages"]["rsync"][1] for m in ok)
        whole = last - first
        print(f"whole path: {whole:.2f} s for {len(ok)} machines ({len(ok) / whole:.1f} machines/s); "
              f"rsync stage: {len(ok) * image_bytes / 2**20 / (r1 - r0):.1f} MiB/s aggregate")
        queued = [m["rsync_refused"] for m in ok if m["rsync_refused"]]
        if queued:
            print(f"  {len(queued)} machines waited in line for an rsync slot ([rsyncd] max_connections), "
                  f"refused up to {max(queued)} times")

        # Raw parallel rsync of the same image by the same machines (their leased addresses), same daemon.
        due_again(state, {m["rsync"]["user"]: m["token"] for m in ok})
        cap = RsyncdConfig().max_connections or n  # the daemon runs with the default (0: no cap)
        raw_specs = []
        for k, machines in enumerate(per_agent):  # each namespace rsyncs from the addresses it holds
            raw_specs.append({"raw_rsync": True, "machines": [m["rsync"] for m in machines if m["ok"]],
                              "work": specs[k]["work"], "slots": max(1, cap // len(per_agent))})
        try:
            raw = run_agents(f, raw_specs)
        except RuntimeError:
            print("daemon log:\n" + proc.output()[-3000:])
            raise
        t0, t1 = min(r["start"] for r in raw), max(r["end"] for r in raw)
        raw_rate = len(ok) * image_bytes / 2**20 / (t1 - t0)
        path_rate = len(ok) * image_bytes / 2**20 / whole
        print(f"raw parallel rsync: {t1 - t0:.2f} s, {raw_rate:.1f} MiB/s aggregate")
        print(f"whole path aggregate {path_rate:.1f} MiB/s = {path_rate / raw_rate:.2f}x raw parallel rsync")
        status = json.loads(f.srv.run(["curl", "-sS", f"http://127.0.0.1:{HTTP_PORT}/api/v1/status"]).stdout)
        print(f"daemon: {json.dumps(status['counts'])}")
        if "Traceback" in proc.output():
            print("WARNING: the daemon logged a traceback:\n" + proc.output()[-3000:])
        proc.stop()
        return not failed


# ---------------------------------------------------------------------------- part 2: a big store

GET_PROBE = """
import http.client, json, sys, time
conn = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]), timeout=10)
# The lists need a token (the reader role): the appliance's admin token, as its CLI and dashboard send one.
headers = {"Authorization": "Bearer " + open(sys.argv[3]).read().strip()}
out = {}
for path in sys.argv[4:]:
    times = []
    for i in range(int(sys.argv[2]) + 20):
        t = time.perf_counter()
        conn.request("GET", path, headers=headers)
        response = conn.getresponse()
        body = response.read()
        if response.status != 200:
            raise SystemExit(f"GET {path}: {response.status} {body[:200]!r}")
        if i >= 20:
            times.append((time.perf_counter() - t) * 1000)
    out[path] = times
print(json.dumps(out))
"""
# What the dashboard and a Prometheus scraper poll: each p99 < 50 ms with the big store.
PROBED = ("/api/v1/status", "/api/v1/hosts", "/api/v1/machines", "/metrics")

STORE_NET = IPv4Network("100.64.0.0/14")  # apart from the lab links (10/8) and the relay (172.31/16)


def populate(state: Path, hosts: int, leases: int, now: float) -> None:
    """hosts (installed, each seen on the wire and with a finished install) and leases, through state/'s bulk
    loader into a migrated database (as years of operation would leave them)."""
    from state.bulkload import bulk_load
    from state.db import connect, db_path
    from state.hosts import Host
    from state.lease_rows import Lease
    from state.sightings import Machine

    conn = connect(db_path(state))
    base = int(STORE_NET.network_address) + 10

    def mac(kind: int, i: int) -> str:
        return f"02:{kind:02x}:{i >> 16 & 255:02x}:{i >> 8 & 255:02x}:{i & 255:02x}:01"

    names = [f"node{i:05}" for i in range(hosts)]
    bulk_load(
        conn,
        hosts=(Host(names[i], mac(0xaa, i), IPv4Address(base + leases + i), IMAGE, None, "installed",
                    now - 86400, now - 86400, now - 600, running_version=1) for i in range(hosts)),
        leases=(Lease(mac(0xbb, i), IPv4Address(base + i), str(STORE_NET), now - 3000,
                      now + (3600 if i % 5 else -60)) for i in range(leases)),
        machines=(Machine(mac(0xaa, i), now - 86400, now - 600 - i, arch=0) for i in range(hosts)),
        events=((names[i], mac(0xaa, i), now - 86400 + k * 60 + (i % 7) * 30, stage)
                for i in range(hosts) for k, stage in enumerate(("installer", "script", "rsync", "done"))))
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # (bench code: the store is closed right after)
    conn.close()


def scale_config(state: Path, iface: str, link: IPv4Network, relay: IPv4Network, pool: tuple[str, str]) -> str:
    net = link.network_address
    return f"""
[appliance]
state_dir = "{state}"
interface = "{iface}"
address = "{net + 1}"
log_level = "{os.environ.get("FLEET_LOG_LEVEL", "warning")}"

[dhcp]
subnet = "{link}"
pool = "{net + 100}-{net + 150}"
conflict_probe = false
rogue_probe = 0
lease_time = 3600

[[dhcp.subnets]]
subnet = "{relay}"
pool = "{pool[0]}-{pool[1]}"

[[dhcp.subnets]]
subnet = "{STORE_NET}"
pool = "{STORE_NET.network_address + 10}-{STORE_NET.broadcast_address - 1}"

[tftp]
enabled = false

[rsyncd]
enabled = false

[http]
port = {HTTP_PORT}

[discovery]
max_machines = 20000
"""


def scale_part(args: argparse.Namespace) -> None:
    """Empty store vs big store: the same rate ladder, the two stores interleaved at every step (the load on a
    shared box drifts; neighbouring runs see about the same). A store's DORA rate is the highest offered rate
    perfdhcp completed with < 0.1 % drops (a failing step is tried twice before the store is out)."""
    from bench import dhcp as dhcpbench
    from lab.netns import Lab

    with Lab() as lab:
        topo = dhcpbench.Topology.build(lab)
        template = lab.tmp_path("populated")
        t0 = time.monotonic()
        populate(template, args.hosts, args.leases, time.time())
        big = f"{args.hosts} hosts/{args.leases} leases"
        ladder = list(range(args.ladder_start, args.ladder_max + 1, args.ladder_step))
        print(f"scale: store with {args.hosts} hosts and {args.leases} leases built in {time.monotonic() - t0:.1f} s; "
              f"perfdhcp {args.seconds} s per step, offered DORA/s {ladder[0]}..{ladder[-1]}", flush=True)
        stores = {"empty store": None, big: template}

        states: list[Path] = []

        def started(source: Path | None) -> Any:
            state = lab.tmp_path("state")
            states.append(state)
            if source is not None:
                shutil.copytree(source, state)
            config = lab.tmp_path("imageserver.toml")
            config.write_text(scale_config(state, topo.srv_if, topo.link, dhcpbench.RELAY_NET, dhcpbench.POOL))
            return start_daemon(topo.srv, config)

        gets: dict[str, dict[str, list[float]]] = {}
        for name, source in stores.items():
            proc = started(source)
            try:
                raw = topo.srv.run([sys.executable, "-c", GET_PROBE, str(HTTP_PORT), str(args.status_requests),
                                    str(states[-1] / "admin.token"), *PROBED], timeout=600).stdout
                gets[name] = json.loads(raw)
            finally:
                proc.stop()
        print()
        for path in PROBED:
            for name in stores:
                t = gets[name][path]
                print(f"GET {path:18} {name:28} p50 {statistics.median(t):6.1f} ms  p99 {pct(t, 99):6.1f} ms")
            p99, empty = pct(gets[big][path], 99), pct(gets["empty store"][path], 99)
            print(f"GET {path:18} p99 with the big store: {p99:.1f} ms = {p99 / empty:.1f}x the empty store "
                  f"(target < 50 ms): {'ok' if p99 < 50 else 'MISSED'}", flush=True)
        if args.skip_ladder:
            return
        best: dict[str, float] = {name: 0.0 for name in stores}
        out: set[str] = set()
        for rate in ladder:
            for name, source in stores.items():
                if name in out:
                    continue
                for _attempt in range(2):
                    proc = started(source)
                    try:
                        run = dhcpbench.perfdhcp(topo, rate, args.seconds)
                    finally:
                        proc.stop()
                    print(f"  {name:28} offered {rate:6}/s -> {run.dora_s:7.0f} DORA/s (drops {run.drop_ratio:6.2%})",
                          flush=True)
                    if run.clean:
                        best[name] = max(best[name], run.dora_s)
                        break
                else:
                    out.add(name)
            if len(out) == len(stores):
                break
        print()
        for name in stores:
            print(f"{name:28} max clean DORA/s {best[name]:7.0f}")
        ratio = best[big] / best["empty store"] if best["empty store"] else 0.0
        print(f"DORA rate big store / empty store: {ratio:.2f}x (target >= 0.9x): {'ok' if ratio >= 0.9 else 'MISSED'}")


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--agent":
        iface, server, spec = sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
        print(json.dumps(asyncio.run(agent(iface, server, spec))))
        return 0
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--machines", type=int, default=50)
    parser.add_argument("--namespaces", type=int, default=5, help="client namespaces the machines are spread over")
    parser.add_argument("--image-mb", type=int, default=32)
    parser.add_argument("--files", type=int, default=400)
    parser.add_argument("--hosts", type=int, default=10_000)
    parser.add_argument("--leases", type=int, default=100_000)
    parser.add_argument("--status-requests", type=int, default=300)
    parser.add_argument("--seconds", type=int, default=4, help="perfdhcp run length")
    parser.add_argument("--ladder-start", type=int, default=1000, help="first offered DORA/s")
    parser.add_argument("--ladder-step", type=int, default=500)
    parser.add_argument("--ladder-max", type=int, default=12000)
    parser.add_argument("--profile", metavar="FILE",
                        help="py-spy the daemon during the fleet run into FILE (.svg flamegraph, .txt stacks)")
    parser.add_argument("--skip-fleet", action="store_true")
    parser.add_argument("--skip-scale", action="store_true")
    parser.add_argument("--skip-ladder", action="store_true", help="scale part: only the GET timings")
    args = parse_args(parser, {"machines": 3, "namespaces": 2, "image_mb": 1, "files": 20, "hosts": 200,
                               "leases": 2000, "status_requests": 20, "seconds": 1, "ladder_start": 100,
                               "ladder_step": 100, "ladder_max": 100})
    from lab.netns import lab_unavailable_reason

    reason = lab_unavailable_reason()
    if reason:
        sys.exit(f"bench/fleet.py: {reason}")
    complete = args.skip_fleet or fleet_part(args)
    if not args.skip_scale:
        scale_part(args)
    return 0 if complete else 1


if __name__ == "__main__":
    sys.exit(main())
