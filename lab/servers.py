"""Reference servers run inside a lab namespace: busybox udhcpd (a real DHCP server) and busybox httpd.

They are peers for proving the harness and the clients, and for booting VMs before our own
servers exist; tests of the imageserver itself use the imageserver.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from lab.netns import LabError, Namespace, Proc

BUSYBOX = "busybox"


def wait_for_listener(ns: Namespace, proto: str, port: int, proc: Proc, timeout: float = 10) -> None:
    """Wait until something in `ns` listens on `port` (proto "udp" or "tcp"); fail early if `proc` died."""
    flag = "-Hlun" if proto == "udp" else "-Hltn"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not proc.alive():
            raise LabError(f"{proc.argv[0]} exited ({proc.popen.returncode}): {proc.output().strip()}")
        if ns.run(["ss", flag, f"sport = :{port}"]).stdout.strip():
            return
        time.sleep(0.05)
    raise LabError(f"nothing listens on {proto}/{port} in {ns.name} after {timeout} s: {proc.output().strip()}")


@dataclass(frozen=True, slots=True)
class Udhcpd:
    """A running busybox udhcpd and what it was told to hand out."""

    proc: Proc
    config: Path
    pool_start: ipaddress.IPv4Address
    pool_end: ipaddress.IPv4Address
    router: ipaddress.IPv4Address
    dns: tuple[ipaddress.IPv4Address, ...]
    lease_time: int
    server_id: ipaddress.IPv4Address
    domain: str

    def in_pool(self, address: ipaddress.IPv4Address) -> bool:
        return self.pool_start <= address <= self.pool_end


def start_udhcpd(
    ns: Namespace,
    iface: str,
    server_ip: ipaddress.IPv4Address,
    subnet: ipaddress.IPv4Network,
    *,
    pool: tuple[int, int] = (100, 150),
    lease_time: int = 600,
    domain: str = "lab.test",
    boot_file: str | None = None,
    extra_lines: Sequence[str] = (),
) -> Udhcpd:
    """busybox udhcpd on `iface` in `ns` handing out <subnet>.pool[0]..pool[1] with router and DNS = server_ip.

    Config, lease and pid files live in the lab's tmp dir. `boot_file` sets siaddr/boot_file for PXE.
    """
    lab = ns.lab
    pool_start, pool_end = subnet.network_address + pool[0], subnet.network_address + pool[1]
    lines = [
        f"interface {iface}",
        f"start {pool_start}",
        f"end {pool_end}",
        f"lease_file {lab.tmp_path('udhcpd.leases')}",
        f"pidfile {lab.tmp_path('udhcpd.pid')}",
        f"option subnet {subnet.netmask}",
        f"option router {server_ip}",
        f"option dns {server_ip}",
        f"option domain {domain}",
        f"option lease {lease_time}",
    ]
    if boot_file:
        lines += [f"siaddr {server_ip}", f"boot_file {boot_file}"]
    lines += list(extra_lines)
    config = lab.tmp_path("udhcpd.conf")
    config.write_text("\n".join(lines) + "\n")
    # `-a 100`: the ARP probe before each offer waits 2 s by default; a fresh namespace has no other hosts.
    proc = ns.popen([BUSYBOX, "udhcpd", "-f", "-a", "100", str(config)])
    wait_for_listener(ns, "udp", 67, proc)
    return Udhcpd(
        proc=proc,
        config=config,
        pool_start=pool_start,
        pool_end=pool_end,
        router=server_ip,
        dns=(server_ip,),
        lease_time=lease_time,
        server_id=server_ip,
        domain=domain,
    )


@dataclass(frozen=True, slots=True)
class Httpd:
    proc: Proc
    root: Path
    url: str


def start_httpd(ns: Namespace, address: ipaddress.IPv4Address, root: Path, port: int = 80) -> Httpd:
    """busybox httpd serving `root` on address:port inside `ns` (for iPXE scripts, kernels, initrds)."""
    proc = ns.popen([BUSYBOX, "httpd", "-f", "-vv", "-p", f"{address}:{port}", "-h", str(root)])
    wait_for_listener(ns, "tcp", port, proc)
    return Httpd(proc=proc, root=root, url=f"http://{address}:{port}")
