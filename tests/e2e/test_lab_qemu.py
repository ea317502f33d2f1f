"""QEMU in the lab: a Debian kernel with an initrd built by appliance.boot.bootenv boots, loads virtio_net,
gets an address from busybox udhcpd in the server namespace, reports it on the serial console and
powers off. Once directly (-kernel/-initrd) and once through the NIC's iPXE ROM over HTTP."""

from __future__ import annotations

import gzip
import ipaddress
import shutil
import time
from pathlib import Path

import pytest

from appliance.boot.bootenv import InitrdSpec, Kernel, build_initrd, read_newc, resolve_modules
from lab.clients import UDHCPC_HOOK
from lab.netns import Lab
from lab.qemu import DEFAULT_APPEND, Vm, VmConfig, qemu_unavailable_reason, start_ra_sender, vm_network
from lab.servers import start_httpd, start_udhcpd

pytestmark = pytest.mark.e2e

MARKER = r"LAB-BOOTED ip=(\S+) kernel=(\S+)"

# The initrd's /init: modprobe resolves virtio_net's dependencies from the modules.dep bootenv wrote.
INIT = """#!/bin/sh
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
modprobe virtio_net || echo "LAB-FAILED modprobe virtio_net"
ip link set lo up
ip link set eth0 up
udhcpc -i eth0 -f -q -n -t 5 -T 2 -s /lab/udhcpc-hook.sh || echo "LAB-FAILED udhcpc"
address=$(ip -4 -o addr show dev eth0 | awk '{print $4}')
echo "LAB-BOOTED ip=${address:-none} kernel=$(uname -r)" >/dev/console
poweroff -f
"""


@pytest.fixture(autouse=True)
def _needs_qemu() -> None:
    reason = qemu_unavailable_reason()
    if reason:
        pytest.skip(reason)


@pytest.fixture(scope="module")
def kernel_and_initrd(debian_kernel: Kernel, bootenv_cache: Path) -> tuple[Kernel, Path]:
    started = time.monotonic()
    spec = InitrdSpec(
        init=INIT,
        modules=["virtio_net"],
        kernel=debian_kernel,
        files={"lab/udhcpc-hook.sh": UDHCPC_HOOK},
    )
    initrd = build_initrd(spec, bootenv_cache)
    print(f"\n[timing] initrd ready in {time.monotonic() - started:.2f} s ({initrd.stat().st_size} bytes)")
    return debian_kernel, initrd


def test_modules_resolve_dependencies_first_and_the_initrd_carries_them_uncompressed(
    kernel_and_initrd: tuple[Kernel, Path],
) -> None:
    kernel, initrd = kernel_and_initrd
    ext4 = [path.name.split(".")[0] for path in resolve_modules(kernel, ["ext4"])]
    members = {entry.name: entry for entry in read_newc(gzip.decompress(initrd.read_bytes()))}
    load_order = members["etc/initrd-modules"].data.decode().split()
    names = [Path(path).name for path in load_order]
    modules_dep = members[f"lib/modules/{kernel.release}/modules.dep"].data.decode()

    assert ext4[-1] == "ext4" and {"jbd2", "mbcache"} <= set(ext4)
    assert names[-1] == "virtio_net.ko"
    assert names.index("failover.ko") < names.index("net_failover.ko") < names.index("virtio_net.ko")
    for path in load_order:
        assert members[path.lstrip("/")].data[:4] == b"\x7fELF", f"{path} is not a plain ELF module"
    virtio_line = next(
        line for line in modules_dep.splitlines() if line.startswith("kernel/drivers/net/virtio_net.ko:")
    )
    assert "kernel/drivers/net/net_failover.ko" in virtio_line and ".xz" not in modules_dep


def assert_booted_with_lease(match_ip: str, match_kernel: str, kernel: Kernel, pool: tuple[object, object]) -> None:
    address = ipaddress.IPv4Interface(match_ip)
    assert pool[0] <= address.ip <= pool[1], f"{address} not from udhcpd's pool {pool}"
    assert address.network.prefixlen == 24
    assert match_kernel == kernel.release


def test_debian_kernel_with_bootenv_initrd_gets_a_lease_from_udhcpd(
    lab: Lab, kernel_and_initrd: tuple[Kernel, Path]
) -> None:
    kernel, initrd = kernel_and_initrd
    net = vm_network(lab)
    server = start_udhcpd(net.server, net.server_if, net.server_ip, net.subnet)

    vm = Vm(net, VmConfig(boot="kernel", kernel=kernel.vmlinuz, initrd=initrd, append=DEFAULT_APPEND))
    with vm:
        match = vm.wait_for(MARKER, timeout=120)
        booted_after = vm.elapsed()
        exit_status = vm.wait_exit(timeout=30)
    print(f"\n[timing] direct kernel boot: QEMU start to marker {booted_after:.2f} s")

    assert "LAB-FAILED" not in vm.log()
    assert_booted_with_lease(match.group(1), match.group(2), kernel, (server.pool_start, server.pool_end))
    assert exit_status == 0, "the guest powered off, so QEMU exits normally"


def test_ipxe_rom_boots_the_same_kernel_over_http(lab: Lab, kernel_and_initrd: tuple[Kernel, Path]) -> None:
    kernel, initrd = kernel_and_initrd
    net = vm_network(lab)
    root = lab.tmp_path("www")
    root.mkdir()
    shutil.copyfile(kernel.vmlinuz, root / "vmlinuz")
    shutil.copyfile(initrd, root / "initrd.img")
    base = f"http://{net.server_ip}"
    (root / "boot.ipxe").write_text(f"#!ipxe\nkernel {base}/vmlinuz {DEFAULT_APPEND}\ninitrd {base}/initrd.img\nboot\n")
    start_httpd(net.server, net.server_ip, root)
    # Option 175 sub-option 176 = 1 ("no ProxyDHCP"): iPXE would otherwise wait ~3 s for a ProxyDHCP offer.
    server = start_udhcpd(
        net.server,
        net.server_if,
        net.server_ip,
        net.subnet,
        boot_file=f"{base}/boot.ipxe",
        extra_lines=["opt 175 b00101"],
    )
    start_ra_sender(net.server, net.server_if)  # iPXE would otherwise wait ~13 s for IPv6 autoconfiguration

    vm = Vm(net, VmConfig(boot="network"))
    with vm:
        match = vm.wait_for(MARKER, timeout=180)
        booted_after = vm.elapsed()
        vm.wait_exit(timeout=30)
    print(f"\n[timing] iPXE ROM + HTTP boot: QEMU start to marker {booted_after:.2f} s")

    assert "LAB-FAILED" not in vm.log()
    assert_booted_with_lease(match.group(1), match.group(2), kernel, (server.pool_start, server.pool_end))
