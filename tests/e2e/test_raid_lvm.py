"""A Debian 12 master on software RAID1 + LVM (tests/e2e/_raidmaster.py) captured with the real
prepareclient + getimage, installed over PXE into a QEMU VM (TCG, BIOS) with two virtio disks: the
installer partitions both, makes the RAID1 array (mdadm, metadata 1.2) and the volume group and logical
volume on it (lvm), formats and fills the LV, writes the clone's own mdadm.conf (into the image's
initramfs too, which has mdadm and lvm from the image's packages) and fstab by UUID, and installs GRUB
on both disks. The machine then boots its disks to `login:` with / on /dev/mapper/VG-LV and the array
active with both halves and a UUID of its own, named in its mdadm.conf; powered off and started again
with the first disk removed, it boots from the second disk alone to `login:`, the array degraded
([2/1], [_U] or [U_]). The md facts come from a report service of the master (RAID-REPORT on ttyS0).

Why the master's md and LVM layout comes from stand-ins (documented in _raidmaster.py): the host kernel
has no raid1 module and its loop devices get no partition nodes, so no real array can exist on the
master side here; prepareclient runs unchanged and finds small `mdadm`/`lvm` commands first on PATH
that print what the real tools print on such a master. The install side is real throughout.
"""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab.demo.scenario import DemoLab, _kill_all
from lab.netns import lab_unavailable_reason
from lab.qemu import Vm, VmConfig, qemu_unavailable_reason, random_mac
from tests.e2e import _raidmaster as rm
from tests.e2e._sites import real_os_site

REPO = Path(__file__).resolve().parents[2]
IMAGE = "debian12-raid"
PREPARECLIENT = REPO / "appliance" / "data" / "prepareclient"
REPORT = (rf"{rm.RAID_REPORT_MARKER} root=(\S+) md=(\S*) state=(\S*) members=(\S*) uuid=(\S*) conf=(\S*) end")

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(qemu_unavailable_reason() is not None, reason=str(qemu_unavailable_reason())),
    pytest.mark.skipif(lab_unavailable_reason() is not None, reason=str(lab_unavailable_reason())),
]


@pytest.fixture(scope="module")
def site(bootenv_cache: Path, debian_kernel, lab_sweep: list[str]) -> Iterator[DemoLab]:
    if shutil.which("debootstrap") is None:
        pytest.skip("debootstrap is not installed (make deps)")
    if shutil.which("mdadm") is None or shutil.which("lvm") is None:
        pytest.skip("mdadm and lvm are not installed (the installer copies them; make deps)")
    rm.build(bootenv_cache)  # the cached master tree (apt in a chroot the first time), before any lab
    with real_os_site(bootenv_cache, debian_kernel) as demo:
        yield demo


def capture(demo: DemoLab, master: rm.RaidMaster) -> None:
    """prepareclient on the master (its tree, two disk files, the stand-in mdadm/lvm), getimage here."""
    assert demo.app is not None and demo.master is not None and demo.net is not None
    path = f"{master.bin_dir}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    env = {**demo.app.env(), "PATH": path, "SYSTEMIMAGER_ROOT": str(master.root),
           "SYSTEMIMAGER_DISKS": " ".join(str(d) for d in master.disks),
           "SYSTEMIMAGER_RUN": str(demo.lab.tmp_path("prepareclient-raid"))}
    try:
        out = demo.master.run(["sh", str(PREPARECLIENT), "--server", str(demo.net.server_ip)], env=env)
        print("prepareclient:", out.stdout.strip())
        assert "software RAID: 1 md array(s) recorded" in out.stdout, out.stdout
        assert f"LVM: volume group(s) {rm.VG} recorded" in out.stdout, out.stdout
        print("getimage:", demo.app.cli("getimage", "--master-client", str(demo.master_ip), "--image", IMAGE,
                                        "--yes", timeout=900).strip())
    finally:
        demo.master.run(["sh", str(PREPARECLIENT), "--stop"], env=env, check=False)
        _kill_all(demo.master)


@pytest.fixture(scope="module")
def raid_image(site: DemoLab) -> str:
    """The RAID1+LVM master captured once for the module: both tests install it (a second getimage would only
    add a version and a minute)."""
    master = rm.new_master(site.cache_dir, site.lab.tmp_path("raid").parent)
    capture(site, master)
    return IMAGE


def boot_to_login(demo: DemoLab, name: str, mac: str, disks: list[Path], boot: str) -> tuple[float, re.Match[str]]:
    assert demo.net is not None
    vm = Vm(demo.net, VmConfig(boot=boot, mac=mac, disks=disks, memory_mb=768)).start()  # type: ignore[arg-type]
    started = time.monotonic()
    try:
        vm.wait_for(rf"{name} login:", timeout=420)
        login_after = time.monotonic() - started
        report = vm.wait_for(REPORT, timeout=120)
    except Exception:
        print(vm.log()[-6000:])
        raise
    finally:
        vm.stop()
    return login_after, report


def test_raid1_lvm_members_named_by_hints_install_and_boot_from_either_disk(site: DemoLab, raid_image: str) -> None:
    """The RAID1 image's two disks named by serial (`serial=A;serial=B`: the layout's disk 0, then disk 1) on a
    machine whose kernel lists them the other way round (vda has serial RAID-B, vdb RAID-A). First a host hint
    for the second member that matches nothing: the install fails at stage "disks", naming that disk of the
    layout and the candidates, before any disk is touched. Then the image's hints: disk 0 lands on RAID-A
    (vdb), disk 1 on RAID-B (vda), GRUB on both; the machine boots both disks, then the second alone (the
    array degraded). Hints absent, members follow the kernel's order (pick_disks, the installer's shell tests)."""
    app = site.app
    assert app is not None and site.net is not None
    name = "raid1"
    install = site.new_install(name, rm.DISK_MB, mac=random_mac())
    second = site.lab.tmp_path(f"{name}-disk2.img")
    with open(second, "wb") as f:
        f.truncate(rm.DISK_MB << 20)
    drives: list[str] = []
    for i, (disk, serial) in enumerate(((install.disk, "RAID-B"), (second, "RAID-A"))):  # vda, vdb
        drives += ["-drive", f"file={disk},format=raw,if=none,id=r{i}",
                   "-device", f"virtio-blk-pci,drive=r{i},serial={serial}"]

    def power_on() -> None:
        install.power_on = time.monotonic()
        install.vm = Vm(site.net, VmConfig(boot="network", mac=install.mac, memory_mb=768,  # type: ignore[arg-type]
                                           extra_args=tuple(drives))).start()

    app.cli("hosts", "add", name, "--mac", install.mac, "--image", raid_image)
    app.cli("hosts", "set", name, "--root-device", "serial=RAID-A;serial=NO-SUCH-DISK")
    power_on()
    site.follow([install], timeout=300)
    host = app.get(f"/api/v1/hosts/{name}")
    assert host["state"] == "failed", host
    failure = host["progress"]["failure"]
    assert failure["stage"] == "disks", failure
    assert failure["reason"].startswith(
        "disk 1 of the image's layout (disks /dev/vdb went to the disks before it): no disk matches the "
        "root-device hints serial=NO-SUCH-DISK; candidates: /dev/vda "), failure
    assert "serial RAID-B" in failure["reason"], failure
    assert not any(_has_partition_table(d) for d in (install.disk, second)), "no disk was touched"
    assert install.vm is not None
    install.vm.stop()

    # The image's hints (the host's cleared): the members by serial, not by the kernel's order.
    app.cli("hosts", "set", name, "--root-device", "")
    app.cli("images", "root-device", raid_image, "serial=RAID-A;serial=RAID-B")
    app.cli("hosts", "reinstall", name)
    power_on()
    try:
        site.follow([install], timeout=900)
    except Exception:
        assert install.vm is not None
        print(install.vm.log()[-6000:])
        raise
    host = app.get(f"/api/v1/hosts/{name}")
    assert host["state"] == "installed", host
    assert host["root_device"] == {"hints": "serial=RAID-A;serial=RAID-B", "source": "image"}, host
    stages = [e["stage"] for e in host["timeline"]]
    assert {"raid", "lvm", "initramfs", "bootloader"} <= set(stages), stages
    detail = " ".join(str(e.get("detail") or "") for e in host["timeline"])
    assert "grub for BIOS on /dev/vdb /dev/vda" in detail, detail
    assert _has_partition_table(install.disk) and _has_partition_table(second)
    assert install.vm is not None
    install.vm.wait_exit(timeout=120)

    # Both disks: PXE first (the imageserver says "local"), then GRUB from the first disk.
    login1, r1 = boot_to_login(site, name, install.mac, [install.disk, second], "network")
    print("report (two disks):", r1.group(0))
    root, md, state, members, uuid, conf = r1.groups()
    assert root == f"/dev/mapper/{rm.VG}-{rm.LV}", r1.group(0)
    assert md == f"{rm.MD},active,raid1", r1.group(0)
    assert state == "[2/2],[UU]", r1.group(0)
    assert sorted(m for m in members.split(",") if m) == ["vda1", "vdb1"], r1.group(0)
    assert uuid and uuid != rm.MD_UUID, "the clone's array has the master's UUID"
    assert conf == "1", "the clone's mdadm.conf does not name its array"

    # The first disk removed: the second boots alone (GRUB is on it too), the array runs degraded.
    login2, r2 = boot_to_login(site, name, install.mac, [second], "disk")
    print("report (second disk alone):", r2.group(0))
    root, md, state, members, uuid2, _ = r2.groups()
    assert root == f"/dev/mapper/{rm.VG}-{rm.LV}", r2.group(0)
    assert md == f"{rm.MD},active,raid1", r2.group(0)
    assert state in ("[2/1],[_U]", "[2/1],[U_]"), r2.group(0)
    assert members == "vda1,", r2.group(0)
    assert uuid2 == uuid
    print(f"\n[timing] RAID1+LVM: power-on -> installed {install.installed_after:.0f} s; power-on -> login "
          f"{login1:.0f} s (both disks), {login2:.0f} s (second disk alone, degraded)")


def _has_partition_table(path: Path) -> bool:
    """An MBR (the RAID master's disks are dos-labelled): the boot signature at bytes 510-511."""
    with open(path, "rb") as f:
        f.seek(510)
        return f.read(2) == b"\x55\xaa"


