"""Pure parts of the test lab: hook records, DHCP lease files, router advertisements, QEMU command lines."""

from __future__ import annotations

import ipaddress
import struct
from pathlib import Path

import pytest

from lab.clients import DhcpClientError, lease_from_dhcp_message, parse_events
from lab.hostguard import HostSnapshot
from lab.qemu import VmConfig, qemu_argv, random_mac
from lab.ra import build_router_advertisement, parse_router_advertisement


def test_hook_record_parses_into_events_in_order() -> None:
    text = "--- BOUND\nip=10.1.2.3\ndns=10.1.2.1 10.1.2.2\n--- RELEASE\nip=10.1.2.3\nrouter=\n"
    assert parse_events(text) == [
        ("BOUND", {"ip": "10.1.2.3", "dns": "10.1.2.1 10.1.2.2"}),
        ("RELEASE", {"ip": "10.1.2.3", "router": ""}),
    ]


def _dhcp_ack(options: bytes) -> bytes:
    header = bytearray(236)
    header[0] = 2  # BOOTREPLY
    header[16:20] = ipaddress.IPv4Address("10.9.8.7").packed
    return bytes(header) + b"\x63\x82\x53\x63" + options + b"\xff"


def test_a_raw_dhcp_ack_becomes_a_lease() -> None:
    options = (
        b"\x35\x01\x05"  # ACK
        + b"\x01\x04" + bytes([255, 255, 255, 0])
        + b"\x03\x04" + bytes([10, 9, 8, 1])
        + b"\x06\x08" + bytes([10, 9, 8, 1, 10, 9, 8, 2])
        + b"\x33\x04" + struct.pack("!I", 3600)
        + b"\x36\x04" + bytes([10, 9, 8, 1])
        + b"\x00"  # pad
        + b"\x0f\x08lab.test"
    )  # fmt: skip
    lease = lease_from_dhcp_message("dhcpcd", "vc1-x", _dhcp_ack(options))

    assert lease.address == ipaddress.IPv4Interface("10.9.8.7/24")
    assert lease.router == ipaddress.IPv4Address("10.9.8.1")
    assert lease.dns == (ipaddress.IPv4Address("10.9.8.1"), ipaddress.IPv4Address("10.9.8.2"))
    assert (lease.lease_time, lease.domain) == (3600, "lab.test")
    assert lease.server_id == ipaddress.IPv4Address("10.9.8.1")


def test_a_file_without_the_dhcp_cookie_is_rejected() -> None:
    with pytest.raises(DhcpClientError, match="not a DHCP message"):
        lease_from_dhcp_message("dhcpcd", "x", b"\0" * 300)


def test_router_advertisement_says_no_router_no_prefix_no_dhcpv6() -> None:
    packet = build_router_advertisement(bytes.fromhex("525400123456"))
    fields = parse_router_advertisement(packet)

    assert fields["lifetime"] == 0 and fields["managed"] == 0 and fields["other"] == 0
    assert fields["has_prefix"] == 0 and fields["has_source_lladdr"] == 1
    assert packet[-6:] == bytes.fromhex("525400123456")
    assert len(packet) == 24


def test_direct_kernel_boot_command_line() -> None:
    config = VmConfig(boot="kernel", kernel=Path("/k/vmlinuz"), initrd=Path("/k/initrd"), mac="52:54:00:00:00:01")
    argv = qemu_argv(config, "tp1-abc", Path("/tmp/serial.log"))

    assert argv[:3] == ["qemu-system-x86_64", "-accel", "tcg"]
    assert "-no-reboot" in argv and "-nodefaults" in argv
    assert argv[argv.index("-serial") + 1] == "file:/tmp/serial.log"
    assert argv[argv.index("-netdev") + 1] == "tap,id=n0,ifname=tp1-abc,script=no,downscript=no"
    assert argv[argv.index("-device") + 1] == "virtio-net-pci,netdev=n0,mac=52:54:00:00:00:01,romfile="
    assert argv[argv.index("-kernel") + 1] == "/k/vmlinuz"
    assert argv[argv.index("-initrd") + 1] == "/k/initrd"
    assert argv[argv.index("-append") + 1] == "console=ttyS0 panic=-1"


def test_network_boot_puts_the_nic_first_and_the_disk_second() -> None:
    config = VmConfig(boot="network", disks=[Path("/d.img")], mac="52:54:00:00:00:02")
    argv = qemu_argv(config, "tp", Path("/s"))
    devices = [argv[i + 1] for i, arg in enumerate(argv) if arg == "-device"]

    assert devices == [
        "virtio-net-pci,netdev=n0,mac=52:54:00:00:00:02,bootindex=1",
        "virtio-blk-pci,drive=d0,bootindex=2",
    ]
    assert "file=/d.img,format=raw,if=none,id=d0" in argv
    assert "-kernel" not in argv


def test_arm64_network_boot_is_virt_with_aavmf_and_no_nic_rom() -> None:
    config = VmConfig(boot="network", disks=[Path("/d.img")], mac="52:54:00:00:00:03", arch="aarch64")
    argv = qemu_argv(config, "tp", Path("/s"))
    assert argv[0] == "qemu-system-aarch64"
    assert argv[argv.index("-M") + 1] == "virt" and argv[argv.index("-cpu") + 1] == "cortex-a57"
    assert argv[argv.index("-bios") + 1] == "/usr/share/qemu-efi-aarch64/QEMU_EFI.fd" and "-vga" not in argv
    devices = [argv[i + 1] for i, arg in enumerate(argv) if arg == "-device"]
    # AAVMF's own PXE does the boot (no arm64 iPXE ROM exists): no option ROM on the NIC
    assert devices == ["virtio-net-pci,netdev=n0,mac=52:54:00:00:00:03,bootindex=1,romfile=",
                       "virtio-blk-pci,drive=d0,bootindex=2"]


def test_disk_boot_needs_a_disk_and_boots_it_first() -> None:
    with pytest.raises(ValueError, match="needs a disk"):
        qemu_argv(VmConfig(boot="disk"), "tp", Path("/s"))
    argv = qemu_argv(VmConfig(boot="disk", disks=[Path("/d.img")]), "tp", Path("/s"))
    assert "virtio-blk-pci,drive=d0,bootindex=1" in argv


def test_random_macs_are_qemu_locally_administered_and_vary() -> None:
    macs = {random_mac() for _ in range(20)}
    assert len(macs) > 1 and all(mac.startswith("52:54:00:") and len(mac) == 17 for mac in macs)


def test_host_snapshot_reports_what_changed(tmp_path: Path) -> None:
    before = HostSnapshot(files=(("/etc/resolv.conf", "sha256:aa"),), hostname="box")
    after = HostSnapshot(files=(("/etc/resolv.conf", "sha256:bb"),), hostname="other")
    assert after.changes_since(before) == ["/etc/resolv.conf: sha256:aa -> sha256:bb", "hostname: box -> other"]
    assert before.changes_since(before) == []
