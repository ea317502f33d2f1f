"""Root-device hints and the hardware inventory on a real PXE install (QEMU, TCG): a machine with two disks of
different sizes, each with a serial number, a virtio-blk one and an NVMe one. Linux names the NVMe disk first
(nvme0n1 before vda), so without hints the installer would take it; the host's hint `serial=` names the
virtio disk.

1. With a hint that matches no disk, the install fails before it touches a disk: the host is *failed* at stage
   "disks" with a reason that names both candidates (their serials and sizes), and both disks stay blank.
2. Reinstalled with the disks' order swapped on QEMU's command line (their PCI slots, so their by-path names,
   change) and `serial=` naming the virtio disk: the image lands on that disk (its file holds the partition
   table, the NVMe disk's file stays blank), and the stored inventory (API, `hosts show`, `machines show`)
   shows both serials and sizes, the NIC and the DMI serial; the by-path names differ from the first boot's.
3. Its partition table wiped, installed again in the first boot's order: the same disk again.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab.demo.disk import loop_partition, mounted
from lab.demo.scenario import DemoLab, Install
from lab.netns import lab_unavailable_reason
from lab.qemu import Vm, VmConfig, qemu_unavailable_reason, random_mac
from tests.e2e._sites import demo_image_site

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(qemu_unavailable_reason() is not None, reason=str(qemu_unavailable_reason())),
    pytest.mark.skipif(lab_unavailable_reason() is not None, reason=str(lab_unavailable_reason())),
]

VIRTIO_SERIAL, NVME_SERIAL, SYSTEM_SERIAL = "VIRTIO-ROOT-0002", "NVME-DATA-0001", "LAB-SN-0425"
VIRTIO_MB, NVME_MB = 320, 256


@pytest.fixture(scope="module")
def demo(bootenv_cache: Path, debian_kernel, lab_sweep: list[str]) -> Iterator[DemoLab]:
    with demo_image_site(bootenv_cache, debian_kernel) as demo:
        yield demo


def _blank(path: Path, mb: int) -> Path:
    with open(path, "wb") as out:
        out.truncate(mb << 20)
    return path


def _has_partition_table(path: Path) -> bool:
    """An MBR or GPT's protective MBR: the boot signature at bytes 510-511."""
    with open(path, "rb") as f:
        f.seek(510)
        return f.read(2) == b"\x55\xaa"


def _power_on(demo: DemoLab, install: Install, nvme: Path, *, nvme_first: bool) -> None:
    """The machine with its two disks (no bootindex: it boots from the network), in the order given."""
    assert demo.net is not None
    virtio = ["-drive", f"file={install.disk},format=raw,if=none,id=dv",
              "-device", f"virtio-blk-pci,drive=dv,serial={VIRTIO_SERIAL}"]
    nvm = ["-drive", f"file={nvme},format=raw,if=none,id=dn", "-device", f"nvme,drive=dn,serial={NVME_SERIAL}"]
    config = VmConfig(boot="network", mac=install.mac, memory_mb=512,
                      extra_args=(*(nvm + virtio if nvme_first else virtio + nvm),
                                  "-smbios", f"type=1,serial={SYSTEM_SERIAL}"))
    install.power_on = time.monotonic()
    install.vm = Vm(demo.net, config).start()


def test_serial_hint_puts_the_image_on_the_named_disk_and_no_match_fails_naming_the_candidates(
        demo: DemoLab) -> None:
    app = demo.app
    assert app is not None
    started = time.monotonic()
    install = Install("disks1", random_mac(), _blank(demo.lab.tmp_path("disks1-virtio.img"), VIRTIO_MB))
    nvme = _blank(demo.lab.tmp_path("disks1-nvme.img"), NVME_MB)
    demo.add_host(install.name, install.mac)

    # 1. A hint no disk matches: failed at stage "disks", naming both candidates; nothing written.
    app.cli("hosts", "set", install.name, "--root-device", "serial=NO-SUCH-DISK")
    _power_on(demo, install, nvme, nvme_first=False)
    demo.follow([install], timeout=150)
    host = app.get(f"/api/v1/hosts/{install.name}")
    assert host["state"] == "failed", host
    failure = host["progress"]["failure"]
    assert failure["stage"] == "disks", failure
    reason = failure["reason"]
    assert reason.startswith("no disk matches the root-device hints serial=NO-SUCH-DISK; candidates: "), reason
    assert f"/dev/nvme0n1 ({NVME_MB}.0 MiB, serial {NVME_SERIAL}" in reason, reason
    assert f"/dev/vda ({VIRTIO_MB}.0 MiB, serial {VIRTIO_SERIAL}" in reason, reason
    assert not _has_partition_table(install.disk) and not _has_partition_table(nvme), "no disk was touched"
    assert install.vm is not None
    install.vm.wait_for(r"stays up so the failure can be inspected", timeout=30)
    first = app.get(f"/api/v1/machines/{install.mac}/inventory")["inventory"]
    install.vm.stop()
    failed_after = time.monotonic() - started

    # 2. The order swapped, the hint naming the virtio disk (which Linux enumerates second).
    shown = app.cli("hosts", "set", install.name, "--root-device", f"serial={VIRTIO_SERIAL}")
    assert f"root device serial={VIRTIO_SERIAL}" in shown, shown
    app.cli("hosts", "reinstall", install.name)
    _power_on(demo, install, nvme, nvme_first=True)
    demo.follow([install], timeout=180)
    host = app.get(f"/api/v1/hosts/{install.name}")
    assert host["state"] == "installed", host
    assert host["root_device"] == {"hints": f"serial={VIRTIO_SERIAL}", "source": "host"}
    assert _has_partition_table(install.disk), "the image is on the virtio disk the hint names"
    assert not _has_partition_table(nvme), "the NVMe disk (the first Linux finds) is untouched"
    with loop_partition(install.disk) as device, mounted(device) as root:
        assert (root / "etc/hostname").read_text().strip() == install.name

    # The stored inventory: both disks with their serials and sizes, the NIC, the DMI serial.
    inv = app.get(f"/api/v1/machines/{install.mac}/inventory")["inventory"]
    disks = {d["name"]: d for d in inv["disks"]}
    assert (disks["/dev/vda"]["serial"], disks["/dev/vda"]["size"]) == (VIRTIO_SERIAL, VIRTIO_MB << 20), disks
    assert (disks["/dev/nvme0n1"]["serial"], disks["/dev/nvme0n1"]["size"]) == (NVME_SERIAL, NVME_MB << 20), disks
    assert disks["/dev/nvme0n1"]["by_path"].endswith("-nvme-1") and disks["/dev/vda"]["by_path"].startswith("pci-")
    assert [d["name"] for d in inv["disks"]] == ["/dev/nvme0n1", "/dev/vda"]
    earlier = {d["name"]: d["by_path"] for d in first["disks"]}
    assert earlier != {name: d["by_path"] for name, d in disks.items()}, "the swap moved the disks' PCI slots"
    assert [(n["mac_address"], n["driver"]) for n in inv["interfaces"]] == [(install.mac, "virtio_net")], inv
    assert inv["interfaces"][0]["has_carrier"] is True
    assert inv["system_vendor"]["manufacturer"] == "QEMU" and inv["system_vendor"]["serial_number"] == SYSTEM_SERIAL
    assert inv["boot"] == {"current_boot_mode": "bios", "pxe_interface": install.mac}
    assert inv["cpu"]["count"] == 1 and inv["cpu"]["architecture"] == "x86_64" and inv["cpu"]["flags"], inv["cpu"]
    assert inv["memory"]["physical_mb"] == 512 or 400 << 20 < inv["memory"]["total"] <= 512 << 20, inv["memory"]
    for shown in (app.cli("hosts", "show", install.name), app.cli("machines", "show", install.mac)):
        assert f"serial {VIRTIO_SERIAL}" in shown and f"serial {NVME_SERIAL}" in shown, shown
        assert install.mac in shown and "QEMU" in shown, shown
    first_install = install.installed_after or 0.0

    # 3. Installed again with the disks in the first boot's order: the same disk again, the other still blank.
    assert install.vm is not None
    install.vm.stop()
    with open(install.disk, "r+b") as f:
        f.write(bytes(1 << 20))  # the partition table and boot code gone: this install must write them again
    app.cli("hosts", "reinstall", install.name)
    _power_on(demo, install, nvme, nvme_first=False)
    demo.follow([install], timeout=180)
    assert app.get(f"/api/v1/hosts/{install.name}")["state"] == "installed"
    assert _has_partition_table(install.disk) and not _has_partition_table(nvme), "the same disk, both orders"
    again = app.get(f"/api/v1/machines/{install.mac}/inventory")["inventory"]
    assert {d["name"]: d["by_path"] for d in again["disks"]} == earlier, "the first boot's slots again"
    print(f"\n[timing] root-device e2e: no-match failure {failed_after:.1f} s, installs {first_install:.1f} s and "
          f"{install.installed_after or 0:.1f} s after power-on; test {time.monotonic() - started:.1f} s")
