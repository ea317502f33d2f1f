"""The installer's inventory (lib/inventory.sh) on a made-up /sys and /proc: every field Ironic's inventory has
that we collect, read as busybox's sh would, and parsed by the route's own body type (domain.inventory);
and json_value, which reads the imageserver's answer in /init."""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
from pathlib import Path

import aiohttp.web
import pytest

from domain.bodies import parse_body
from domain.hardware import RootDeviceAnswer
from domain.inventory import Inventory
from services.routes import rendered
from tests.installer_sh import prelude

CPUINFO = """processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Gold 6338 CPU @ 2.00GHz
flags\t\t: fpu vme de pse tsc msr sse4_2 avx2

processor\t: 1
model name\t: Intel(R) Xeon(R) Gold 6338 CPU @ 2.00GHz
flags\t\t: fpu vme de pse tsc msr sse4_2 avx2
"""
MEMINFO = "MemTotal:        8012345 kB\nMemFree:         7000000 kB\n"
SHELLS = [s for s in ("dash", "busybox") if shutil.which(s)]


def _write(path: Path, text: str | bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)


def _link(path: Path, target: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    target.mkdir(parents=True, exist_ok=True)
    path.symlink_to(os.path.relpath(target, path.parent))


def _disk(sys: Path, name: str, sectors: int, device: Path | None, rotational: str = "0", ro: str = "0") -> Path:
    block = sys / "block" / name
    _write(block / "size", f"{sectors}\n")
    _write(block / "ro", f"{ro}\n")
    _write(block / "queue" / "rotational", f"{rotational}\n")
    if device is not None:
        _link(block / "device", device)
    return block


@pytest.fixture
def machine(tmp_path: Path) -> Path:
    return fake_machine(tmp_path)


def fake_machine(tmp_path: Path) -> Path:
    """A machine with a virtio disk, an NVMe disk, a SATA disk, the USB stick it booted from, and what
    list_disks leaves out (a loop device, a CD, a read-only and an empty disk); two NICs and lo."""
    sys, pci = tmp_path / "sys", tmp_path / "sys" / "devices" / "pci0000:00"
    vda = _disk(sys, "vda", 2 * 1024 * 1024, pci / "0000:00:04.0" / "virtio1", rotational="1")
    _write(vda / "serial", "VIRTIO-0002\n")
    nvme = _disk(sys, "nvme0n1", 4 * 1024 * 1024, pci / "0000:00:05.0" / "nvme" / "nvme0")
    _write(nvme / "nsid", "1\n")
    _write(nvme / "wwid", "eui.0123456789abcdef\n")
    _write(pci / "0000:00:05.0" / "nvme" / "nvme0" / "serial", "NVME-0001           \n")
    _write(pci / "0000:00:05.0" / "nvme" / "nvme0" / "model", "Samsung SSD 980 PRO 1TB\n")
    sata = pci / "0000:00:1f.2" / "ata1" / "host0" / "target0:0:0" / "0:0:0:0"
    _disk(sys, "sda", 8 * 1024 * 1024, sata, rotational="1")
    _write(sata / "vpd_pg80", b"\x00\x80\x00\x0c  WD-WCC4N1234\x00")
    _write(sata / "model", "WDC WD40EFRX-68N\n")
    _write(sata / "wwid", "naa.50014ee2b5f3c0de\n")
    _disk(sys, "sdb", 1024 * 1024, pci / "0000:00:14.0" / "usb1" / "1-1")  # the boot medium (MEDIA_DEVICE)
    _disk(sys, "loop0", 1024, None)
    _disk(sys, "sr0", 1024, None)
    _disk(sys, "sdc", 1024, None, ro="1")
    _disk(sys, "sdd", 0, None)
    for name, address, speed, carrier, slot, driver in (("eno1", "3c:ec:ef:00:00:01", "25000", "1", "0000:00:03.0",
                                                         "ice"),
                                                        ("eno2", "3c:ec:ef:00:00:02", "-1", "0", "0000:00:03.1",
                                                         "ice")):
        nic = sys / "class" / "net" / name
        _write(nic / "address", address + "\n")
        _write(nic / "speed", speed + "\n")
        _write(nic / "carrier", carrier + "\n")
        _link(nic / "device", pci / slot)
        _link(pci / slot / "driver", sys / "bus" / "pci" / "drivers" / driver)
    _write(sys / "class" / "net" / "lo" / "address", "00:00:00:00:00:00\n")
    dmi = sys / "class" / "dmi" / "id"
    for key, value in (("sys_vendor", "Supermicro"), ("product_name", "SYS-1029U-TR4"),
                       ("product_serial", 'S123456X "quoted"'),
                       ("product_uuid", "00000000-0000-0000-0000-ac1f6b000001")):
        _write(dmi / key, value + "\n")
    memory = sys / "devices" / "system" / "memory"
    _write(memory / "block_size_bytes", "8000000\n")  # 128 MiB, hex
    for n, online in enumerate(("1", "1", "1", "0")):
        _write(memory / f"memory{n}" / "online", online + "\n")
    (sys / "firmware" / "efi").mkdir(parents=True)
    _write(tmp_path / "proc" / "cpuinfo", CPUINFO)
    _write(tmp_path / "proc" / "meminfo", MEMINFO)
    ipmitool = tmp_path / "bin" / "ipmitool"
    _write(ipmitool, "#!/bin/sh\n[ \"$*\" = 'lan print' ] || exit 1\n"
                     "printf 'Set in Progress         : Set Complete\\nIP Address Source       : DHCP Address\\n"
                     "IP Address              : 10.20.0.7\\nSubnet Mask             : 255.255.0.0\\n'\n")
    ipmitool.chmod(0o755)
    return tmp_path


def _inventory(shell: str, root: Path, *, path: str | None = None) -> Inventory:
    script = prelude("common", "disks") + '. "$INSTALLER_LIB/lib/inventory.sh"\ninventory_json\n'
    argv = [shell, "sh"] if shell == "busybox" else [shell]
    env = {"PATH": path or f"{root / 'bin'}:{os.environ['PATH']}", "SYS_ROOT": str(root / "sys"),
           "PROC_ROOT": str(root / "proc"), "MEDIA_DEVICE": "/dev/sdb", "MAC": "3c:ec:ef:00:00:01"}
    out = subprocess.run([*argv, "-c", script], env=env, capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.count("\n") == 1, out.stdout
    return parse_body(Inventory, json.loads(out.stdout), unknown="refuse")  # every key it sends is declared


@pytest.mark.parametrize("shell", SHELLS)
def test_the_inventory_reads_every_field_from_sys_and_proc(shell: str, machine: Path) -> None:
    inv = _inventory(shell, machine)
    assert inv.cpu.model_name == "Intel(R) Xeon(R) Gold 6338 CPU @ 2.00GHz"
    assert inv.cpu.count == 2 and inv.cpu.architecture == platform.machine()
    assert inv.cpu.flags == ["fpu", "vme", "de", "pse", "tsc", "msr", "sse4_2", "avx2"]
    assert inv.memory.total == 8012345 * 1024 and inv.memory.physical_mb == 3 * 128
    disks = {d.name: d for d in inv.disks}
    assert list(disks) == ["/dev/nvme0n1", "/dev/sda", "/dev/vda"], "the kernel's order; no loop, CD, medium, ro, empty"
    nvme, sata, vda = disks["/dev/nvme0n1"], disks["/dev/sda"], disks["/dev/vda"]
    assert (nvme.size, nvme.serial, nvme.model, nvme.wwn, nvme.rotational, nvme.by_path) == (
        2 << 30, "NVME-0001", "Samsung SSD 980 PRO 1TB", "eui.0123456789abcdef", False, "pci-0000:00:05.0-nvme-1")
    assert (sata.size, sata.serial, sata.model, sata.wwn, sata.rotational, sata.by_path) == (
        4 << 30, "WD-WCC4N1234", "WDC WD40EFRX-68N", "naa.50014ee2b5f3c0de", True, "pci-0000:00:1f.2-scsi-0:0:0:0")
    assert (vda.size, vda.serial, vda.model, vda.wwn, vda.rotational, vda.by_path) == (
        1 << 30, "VIRTIO-0002", None, None, True, "pci-0000:00:04.0")
    assert [(n.name, n.mac_address, n.driver, n.speed_mbps, n.has_carrier) for n in inv.interfaces] == [
        ("eno1", "3c:ec:ef:00:00:01", "ice", 25000, True), ("eno2", "3c:ec:ef:00:00:02", "ice", None, False)]
    v = inv.system_vendor
    assert (v.manufacturer, v.product_name, v.serial_number, v.uuid) == (
        "Supermicro", "SYS-1029U-TR4", 'S123456X "quoted"', "00000000-0000-0000-0000-ac1f6b000001")
    assert (inv.boot.current_boot_mode, inv.boot.pxe_interface) == ("uefi", "3c:ec:ef:00:00:01")
    assert inv.bmc_address == "10.20.0.7"
    assert inv.summary() == ("Supermicro SYS-1029U-TR4, 2 x x86_64 Intel(R) Xeon(R) Gold 6338 CPU @ 2.00GHz".replace(
        "x86_64", platform.machine()) + ", 384 MiB, 3 disks, 2 NICs, uefi")


def test_a_bare_machine_gives_nulls_not_errors(tmp_path: Path) -> None:
    """No DMI, no memory blocks, no EFI, no disks, no ipmitool: the inventory still parses."""
    (tmp_path / "sys" / "block").mkdir(parents=True)
    _write(tmp_path / "proc" / "cpuinfo", "processor\t: 0\n")
    _write(tmp_path / "proc" / "meminfo", MEMINFO)
    inv = _inventory(SHELLS[0], tmp_path, path="/usr/bin:/bin")
    assert inv.disks == [] and inv.interfaces == [] and inv.bmc_address is None
    assert inv.cpu.count == 1 and inv.cpu.model_name is None and inv.cpu.flags == []
    assert inv.memory.physical_mb is None and inv.system_vendor.manufacturer is None
    assert inv.boot.current_boot_mode == "bios"


@pytest.mark.parametrize("shell", SHELLS)
def test_json_value_reads_the_answer_as_the_server_renders_it(shell: str, tmp_path: Path) -> None:
    failure = 'no disk matches the root-device hints serial=X"Y; candidates: /dev/vda (1.0 GiB, serial A\\B)'
    answer = RootDeviceAnswer("node1", None, 'serial=X"Y', "host", failure)
    path = tmp_path / "answer.json"
    path.write_bytes(aiohttp.web.json_response(rendered(answer)).body)  # type: ignore[arg-type]
    script = prelude("common", "disks") + (
        '. "$INSTALLER_LIB/lib/inventory.sh"\n'
        "for k in host root_device hints failure absent; do\n"
        f'    printf "%s=[%s]\\n" "$k" "$(json_value "$k" {path})"\n'
        "done\n")
    argv = [shell, "sh"] if shell == "busybox" else [shell]
    out = subprocess.run([*argv, "-c", script], capture_output=True, text=True, check=True).stdout
    assert out.splitlines() == ["host=[node1]", "root_device=[]", 'hints=[serial=X"Y]', f"failure=[{failure}]",
                                "absent=[]"]


@pytest.mark.parametrize("shell", SHELLS)
def test_the_disks_an_answer_names_go_where_the_layout_has_them(shell: str, machine: Path, tmp_path: Path) -> None:
    """Hints for several disks (a RAID1's members): the answer's disks become DISK, DISK1 in the layout's order,
    and pick_disks numbers the disks nobody named around them; one disk named: DISK alone, as before."""
    def picked(answer: RootDeviceAnswer) -> list[str]:
        path = tmp_path / "answer.json"
        path.write_bytes(aiohttp.web.json_response(rendered(answer)).body)  # type: ignore[arg-type]
        script = prelude("common", "disks") + (
            '. "$INSTALLER_LIB/lib/inventory.sh"\n'
            f"use_disks {path}\n"
            "die() { :; }  # pick_disks checks DISK0 is a block device: this /sys has no /dev beside it\n"
            "pick_disks\n"
            'sh -c \'printf "ROOT=%s DISK=%s DISK1=%s\\n" "$0" "$DISK" "${DISK1:-}"\' "$ROOT_DEVICE"\n'
            'printf "DISK0=%s DISK1=%s AUTO1=%s AUTO2=%s\\n" "$DISK0" "${DISK1:-}" "${AUTO1:-}" "${AUTO2:-}"\n')
        argv = [shell, "sh"] if shell == "busybox" else [shell]
        env = {"PATH": os.environ["PATH"], "SYS_ROOT": str(machine / "sys"), "MEDIA_DEVICE": "/dev/sdb"}
        out = subprocess.run([*argv, "-c", script], env=env, capture_output=True, text=True, check=True, timeout=60)
        return out.stdout.splitlines()

    # the kernel's order here: nvme0n1, sda, vda (sdb is the boot medium)
    raid = RootDeviceAnswer("node1", "/dev/vda", "serial=VIRTIO-0002;serial=NVME-0001", "image", None,
                            ["/dev/vda", "/dev/nvme0n1"])
    assert picked(raid) == ["ROOT=/dev/vda DISK=/dev/vda DISK1=/dev/nvme0n1",  # exported to the plan
                            "DISK0=/dev/vda DISK1=/dev/nvme0n1 AUTO1= AUTO2=/dev/sda"]
    one = RootDeviceAnswer("node1", "/dev/sda", "serial=WD-WCC4N1234", "host", None)
    assert picked(one) == ["ROOT=/dev/sda DISK=/dev/sda DISK1=",
                           "DISK0=/dev/sda DISK1= AUTO1=/dev/nvme0n1 AUTO2=/dev/vda"]
    none = RootDeviceAnswer("node1", None, None, None, None)
    assert picked(none) == ["ROOT= DISK= DISK1=", "DISK0=/dev/nvme0n1 DISK1= AUTO1=/dev/sda AUTO2=/dev/vda"]
