"""QEMU virtual machines inside a lab: network boot (iPXE ROM), disk boot, or direct kernel boot.

Topology (LAB.md "QEMU PXE boot"): the VM's tap sits on a bridge inside a "vm" namespace, and a
veth joins that bridge to the server namespace, where the servers under test listen:

    server ns: [server_if 10.x.y.1/24] ==veth== vm ns: [uplink]-[bridge]-[tap]-- QEMU (virtio-net)

QEMU runs inside the vm namespace (the tap lives there) with `-accel tcg` (KVM fails on these
machines), its serial console written to a file that `Vm.wait_for` watches for a marker. The lab
kills QEMU at the end whatever happens; `Vm` also works as a context manager.

Two iPXE stalls and their cures (measured here, iPXE ROM + HTTP boot to an initrd marker):
- iPXE waits ~13 s for IPv6 autoconfiguration unless the link sees a router advertisement: run
  `start_ra_sender(net.server, net.server_if)` (RA with lifetime 0, M=0, O=0, no prefix) before
  network-booting. 22.8 s without it, 6.4 s with it.
- iPXE waits ~3 s for a ProxyDHCP offer unless the DHCP offer carries option 175 with sub-option
  176 = 1 (udhcpd: `opt 175 b00101`). 9.4 s without it.
"""

from __future__ import annotations

import ipaddress
import os
import re
import secrets
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from lab.netns import Lab, LabError, Namespace, Proc

QEMU = "qemu-system-x86_64"
# arm64 machines (LAB.md): QEMU's virt board with a Cortex-A57 under TCG and Debian's AAVMF firmware, whose
# own PXE (there is no arm64 iPXE ROM) asks DHCP with option 93 = 11.
QEMU_AARCH64 = "qemu-system-aarch64"
AAVMF = Path("/usr/share/qemu-efi-aarch64/QEMU_EFI.fd")
RA_SCRIPT = Path(__file__).with_name("ra.py")
DEFAULT_APPEND = "console=ttyS0 panic=-1"

BootFrom = Literal["network", "disk", "kernel"]


class VmError(LabError):
    """The VM did not show the expected serial output in time (or QEMU failed); carries the log tail."""


def qemu_unavailable_reason() -> str | None:
    if shutil.which(QEMU) is None:
        return f"{QEMU} is not installed (Debian package qemu-system-x86)"
    if not os.path.exists("/dev/net/tun"):
        return "/dev/net/tun is missing (tap devices unavailable)"
    return None


def aarch64_unavailable_reason() -> str | None:
    if shutil.which(QEMU_AARCH64) is None:
        return f"{QEMU_AARCH64} is not installed (Debian package qemu-system-arm)"
    if not AAVMF.exists():
        return f"{AAVMF} is missing (Debian package qemu-efi-aarch64)"
    if not os.path.exists("/dev/net/tun"):
        return "/dev/net/tun is missing (tap devices unavailable)"
    return None


def random_mac() -> str:
    """A locally administered QEMU-style MAC (52:54:00:xx:xx:xx)."""
    return "52:54:00:" + ":".join(f"{byte:02x}" for byte in secrets.token_bytes(3))


@dataclass(slots=True)
class VmNetwork:
    """A server namespace and a vm namespace with a bridge; each VM gets its own tap on the bridge."""

    lab: Lab = field(repr=False)
    server: Namespace
    vmns: Namespace
    server_if: str
    bridge: str
    subnet: ipaddress.IPv4Network
    server_ip: ipaddress.IPv4Address

    def new_tap(self) -> str:
        tap = self.lab.ifname("tp")
        self.lab.tap(self.vmns, tap, self.bridge)
        return tap

    def host(self, number: int) -> ipaddress.IPv4Address:
        return self.subnet.network_address + number

    def machine_at(self, ip: ipaddress.IPv4Address) -> Namespace:
        """A plain machine on the LAN at `ip` (its own namespace, a veth on the bridge): a host's own address
        without booting the host, e.g. to run updateclient against its mounted disk as the host would (the
        host's credentials are good only from its address)."""
        ns = self.lab.namespace("mach")
        inside, outside = self.lab.ifname("mi"), self.lab.ifname("mo")
        self.lab.veth(ns, inside, self.vmns, outside)
        self.vmns.ip("link", "set", outside, "master", self.bridge)
        ns.add_address(inside, f"{ip}/{self.subnet.prefixlen}")
        return ns


def vm_network(lab: Lab) -> VmNetwork:
    """Server ns with <random /24>.1 on its veth end; vm ns with a bridge holding the other end."""
    server = lab.namespace("srv")
    vmns = lab.namespace("vm")
    server_if, uplink, bridge = lab.ifname("vs"), lab.ifname("vu"), lab.ifname("br")
    lab.veth(server, server_if, vmns, uplink)
    lab.bridge(vmns, bridge, [uplink])
    subnet = lab.random_subnet()
    server_ip = subnet.network_address + 1
    server.add_address(server_if, f"{server_ip}/{subnet.prefixlen}")
    return VmNetwork(lab, server, vmns, server_if, bridge, subnet, server_ip)


def start_ra_sender(ns: Namespace, iface: str, interval: float = 1.0) -> Proc:
    """Advertise "no IPv6 router" on `iface` inside `ns` until the lab stops it (see ra.py)."""
    proc = ns.popen([sys.executable, str(RA_SCRIPT), iface, "--interval", str(interval)])
    deadline = time.monotonic() + 10
    while "advertising" not in proc.output():
        if not proc.alive() or time.monotonic() > deadline:
            raise LabError(f"RA sender did not start: {proc.output().strip()}")
        time.sleep(0.02)
    return proc


@dataclass(frozen=True, slots=True)
class VmConfig:
    """What to boot. boot="network": the NIC's iPXE ROM first; "disk": the first disk;
    "kernel": -kernel/-initrd/-append (the NIC gets no option ROM then)."""

    boot: BootFrom = "kernel"
    kernel: Path | None = None
    initrd: Path | None = None
    append: str = DEFAULT_APPEND
    disks: Sequence[Path] = ()
    mac: str = field(default_factory=random_mac)
    memory_mb: int = 1024
    cpu: str | None = None  # e.g. "max" for SSE4.2 (crc32c-intel) under TCG
    nic_rom: Path | None = None  # None: QEMU's default iPXE ROM for virtio-net (from ipxe-qemu)
    option_rom: bool = True  # False: no NIC option ROM (OVMF's own virtio-net driver and PXE do the boot)
    extra_args: Sequence[str] = ()
    arch: Literal["x86_64", "aarch64"] = "x86_64"  # aarch64: virt + cortex-a57 + AAVMF, never a NIC ROM


def qemu_argv(config: VmConfig, tap: str, serial_log: Path) -> list[str]:
    """The QEMU command line for `config` (LAB.md's, which worked here)."""
    arm = config.arch == "aarch64"
    argv = [
        QEMU_AARCH64 if arm else QEMU, "-accel", "tcg", "-m", str(config.memory_mb), "-smp", "1",
        *(("-M", "virt", "-cpu", "cortex-a57", "-bios", str(AAVMF)) if arm else ("-vga", "none")),
        "-nodefaults", "-display", "none", "-no-reboot",
        "-serial", f"file:{serial_log}",
        "-netdev", f"tap,id=n0,ifname={tap},script=no,downscript=no",
    ]  # fmt: skip
    if config.cpu:
        argv += ["-cpu", config.cpu]
    nic = f"virtio-net-pci,netdev=n0,mac={config.mac}"
    if config.boot == "network":
        nic += ",bootindex=1"
    if config.boot == "kernel" or not config.option_rom or arm:
        nic += ",romfile="  # no option ROM: nothing boots from it, and it costs TCG time
    elif config.nic_rom is not None:
        nic += f",romfile={config.nic_rom}"
    argv += ["-device", nic]
    for number, disk in enumerate(config.disks):
        argv += ["-drive", f"file={disk},format=raw,if=none,id=d{number}"]
        device = f"virtio-blk-pci,drive=d{number}"
        if number == 0 and config.boot != "kernel":
            device += f",bootindex={1 if config.boot == 'disk' else 2}"
        argv += ["-device", device]
    if config.boot == "kernel":
        if config.kernel is None:
            raise ValueError('boot="kernel" needs a kernel')
        argv += ["-kernel", str(config.kernel), "-append", config.append]
        if config.initrd is not None:
            argv += ["-initrd", str(config.initrd)]
    elif config.boot == "disk" and not config.disks:
        raise ValueError('boot="disk" needs a disk')
    return [*argv, *config.extra_args]


OVMF_DIR = Path("/usr/share/OVMF")
OVMF_SECBOOT_CODE = OVMF_DIR / "OVMF_CODE_4M.secboot.fd"  # Debian package ovmf: needs SMM (q35, smm=on)
OVMF_MS_VARS = OVMF_DIR / "OVMF_VARS_4M.ms.fd"  # Secure Boot on, Microsoft's keys enrolled (trusts shim)


def secure_boot_unavailable_reason() -> str | None:
    missing = [str(p) for p in (OVMF_SECBOOT_CODE, OVMF_MS_VARS) if not p.exists()]
    return f"{', '.join(missing)} missing (Debian package ovmf)" if missing else None


def secure_boot_args(vars_file: Path) -> tuple[str, ...]:
    """QEMU arguments for OVMF with Secure Boot enforcing: q35 with SMM (the secboot build keeps its
    variables in SMM-protected flash, so the OS cannot rewrite the keys), read-only code, and the
    machine's own copy of the variable store (make it with a copy of OVMF_MS_VARS; it is the machine's
    NVRAM, so keep it across that machine's boots). SMM needs TCG here (this KVM cannot do SMM)."""
    return ("-machine", "q35,smm=on", "-global", "driver=cfi.pflash01,property=secure,value=on",
            "-drive", f"if=pflash,format=raw,unit=0,readonly=on,file={OVMF_SECBOOT_CODE}",
            "-drive", f"if=pflash,format=raw,unit=1,file={vars_file}")


@dataclass(slots=True)
class Vm:
    """One QEMU process on its own tap of `net`."""

    net: VmNetwork
    config: VmConfig
    tap: str = ""
    serial_log: Path = field(init=False)
    proc: Proc | None = None
    started_at: float = 0.0

    def __post_init__(self) -> None:
        self.serial_log = self.net.lab.tmp_path(f"vm-{self.config.mac.replace(':', '')}.serial")

    def start(self) -> Vm:
        if not self.tap:
            self.tap = self.net.new_tap()
        self.serial_log.touch()
        self.started_at = time.monotonic()
        self.proc = self.net.vmns.popen(qemu_argv(self.config, self.tap, self.serial_log))
        return self

    def __enter__(self) -> Vm:
        return self.start() if self.proc is None else self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def log(self) -> str:
        return self.serial_log.read_text(errors="replace") if self.serial_log.exists() else ""

    def _failure(self, why: str) -> VmError:
        qemu_output = self.proc.output().strip() if self.proc else ""
        tail = "\n".join(self.log().splitlines()[-40:])
        return VmError(f"{why}\n--- qemu: {qemu_output}\n--- serial log tail:\n{tail}")

    def wait_for(self, pattern: str | re.Pattern[str], timeout: float = 60) -> re.Match[str]:
        """Wait until the serial log matches `pattern` (a regex); the match gives access to groups and the log."""
        if self.proc is None:
            raise VmError("VM not started")
        regex = re.compile(pattern) if isinstance(pattern, str) else pattern
        deadline = time.monotonic() + timeout
        while True:
            match = regex.search(self.log())
            if match:
                return match
            if not self.proc.alive():
                # QEMU may exit right after printing: read the log once more before failing.
                match = regex.search(self.log())
                if match:
                    return match
                raise self._failure(f"QEMU exited ({self.proc.popen.returncode}) before {regex.pattern!r}")
            if time.monotonic() > deadline:
                raise self._failure(f"no {regex.pattern!r} on the serial console within {timeout} s")
            time.sleep(0.1)

    def wait_exit(self, timeout: float = 30) -> int:
        """Wait for the guest to power off (QEMU exits); returns QEMU's exit status."""
        if self.proc is None:
            raise VmError("VM not started")
        try:
            return self.proc.wait(timeout)
        except Exception as exc:
            raise self._failure(f"QEMU still running {timeout} s after the wait began") from exc

    def elapsed(self) -> float:
        return time.monotonic() - self.started_at

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop(grace=2.0)
