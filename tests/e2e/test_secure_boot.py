"""Secure Boot end to end: the real Debian 12 master (tests/e2e/_debianmaster.py, with shim-signed and
grub-efi-amd64-signed) captured, then PXE-installed into a QEMU VM whose OVMF enforces Secure Boot
(OVMF_CODE_4M.secboot.fd, q35 + SMM, the VM's own copy of OVMF_VARS_4M.ms.fd: Microsoft's keys, so
Debian's shim is trusted and nothing unsigned runs), and booted from its own disk to `login:`.

The chain under test, served by the imageserver with [boot] uefi_loader = "shim": OVMF's own PXE
(no iPXE option ROM: an unsigned ROM would be refused) -> DHCP boot file shimx64.efi over TFTP ->
shim fetches grubx64.efi (Debian's signed network GRUB) -> grub/grub.cfg -> grub/grub.cfg-01-<mac>
(install: the signed Debian installer kernel + our initrd over TFTP; after the install: read
the disk's /boot/grub/grub.cfg); and from the disk itself, firmware -> EFI/BOOT/BOOTX64.EFI (the
image's shim) -> signed GRUB -> the image's signed kernel.

Secure Boot really enforcing is shown by the kernel itself: with SB on, Debian's kernel prints
"Secure boot enabled" and locks itself down; both the installer's and the installed system's
serial consoles must say so.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab.demo.disk import loop_partition, mounted
from lab.demo.scenario import DemoLab
from lab.netns import lab_unavailable_reason
from lab.qemu import (
    OVMF_MS_VARS,
    BootFrom,
    Vm,
    VmConfig,
    qemu_unavailable_reason,
    random_mac,
    secure_boot_args,
    secure_boot_unavailable_reason,
)
from tests.e2e import _debianmaster as dm
from tests.e2e._sites import real_os_site
from tests.e2e.test_real_debian import boot_to_login, capture, check_disk, check_report, fs_uuid

IMAGE = "debian12-sb"
SHIM = Path("/usr/lib/shim/shimx64.efi.signed")
SB_KERNEL_LINE = "Secure boot enabled"
LOCKDOWN_LINE = "Kernel is locked down from EFI Secure Boot"  # 6.1 adds " mode"

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(qemu_unavailable_reason() is not None, reason=str(qemu_unavailable_reason())),
    pytest.mark.skipif(lab_unavailable_reason() is not None, reason=str(lab_unavailable_reason())),
    pytest.mark.skipif(secure_boot_unavailable_reason() is not None, reason=str(secure_boot_unavailable_reason())),
    pytest.mark.skipif(not SHIM.exists(), reason="shim-signed is not installed (make deps)"),
    pytest.mark.skipif(shutil.which("sbverify") is None, reason="sbverify is not installed (package sbsigntool)"),
    pytest.mark.skipif(shutil.which("mcopy") is None, reason="mcopy is not installed (package mtools)"),
]


def signers(path: Path) -> str:
    """sbverify --list: the image's Authenticode signatures (issuer and signer names)."""
    return subprocess.run(["sbverify", "--list", str(path)], capture_output=True, text=True).stdout


@pytest.fixture(scope="module")
def sb_site(bootenv_cache: Path, debian_kernel, lab_sweep: list[str]) -> Iterator[DemoLab]:
    with real_os_site(bootenv_cache, debian_kernel, 'uefi_loader = "shim"') as demo:
        yield demo


def test_secure_boot_debian_master_installs_over_shim_and_boots_its_disk_with_sb_enforcing(sb_site: DemoLab) -> None:
    demo = sb_site
    app = demo.app
    assert app is not None and demo.net is not None
    boot_root = app.state_dir / "boot"
    # What the chain runs is signed: shim by Microsoft's UEFI CA, GRUB and the installer kernel by Debian.
    assert "Microsoft Corporation UEFI CA" in signers(boot_root / "shimx64.efi")
    assert "Debian Secure Boot" in signers(boot_root / "grubx64.efi")
    assert "Debian Secure Boot" in signers(boot_root / "installer/vmlinuz"), "the installer kernel is not signed"
    files = app.get("/api/v1/status")["services"]["bootfiles"]["files"]
    assert files["shimx64.efi"]["present"] and files["grubx64.efi"]["present"], files

    master = dm.new_master(demo.cache_dir, demo.lab.tmp_path("sb").parent, "uefi")
    assert "Debian Secure Boot" in signers(next((master.root / "boot").glob("vmlinuz-*")))
    capture(demo, master, IMAGE)

    name = "node3"
    install = demo.new_install(name, 1536, mac=random_mac())
    nvram = demo.lab.tmp_path(f"{name}-OVMF_VARS.fd")  # the machine's own NVRAM, kept across its boots
    shutil.copyfile(OVMF_MS_VARS, nvram)
    firmware = secure_boot_args(nvram)
    app.cli("hosts", "add", name, "--mac", install.mac, "--image", IMAGE)

    def machine(boot: BootFrom = "network") -> VmConfig:
        # OVMF's own virtio-net driver and PXE: the iPXE option ROM is unsigned and Secure Boot refuses it.
        return VmConfig(boot=boot, mac=install.mac, disks=[install.disk], memory_mb=1024, option_rom=False,
                        extra_args=firmware)

    install.power_on = time.monotonic()
    install.vm = Vm(demo.net, machine("network")).start()
    demo.follow([install], timeout=900)
    host = app.get(f"/api/v1/hosts/{name}")
    assert host["state"] == "installed", host
    install.vm.wait_exit(timeout=120)
    installer_log = install.vm.log()
    assert "imageserver: installing image" in installer_log, installer_log[-3000:]  # GRUB's echo
    assert SB_KERNEL_LINE in installer_log, "the installer kernel did not run under Secure Boot"
    # The installer's own console line (a stage report over HTTP can be lost; the console cannot).
    assert "[bootloader] grub for UEFI in /boot/efi (signed shim + grub: Secure Boot)" in installer_log, \
        installer_log[-3000:]

    # Power on from the disk: the firmware itself runs EFI/BOOT/BOOTX64.EFI (the image's shim), shim the
    # signed GRUB beside it, GRUB the image's signed kernel.
    report, log, login_after = boot_to_login(Vm(demo.net, machine("disk")).start(), name, 600)
    assert SB_KERNEL_LINE in log and LOCKDOWN_LINE in log, "the installed system did not boot under Secure Boot"
    ifname = check_report(demo, master, name, report, log)

    # And PXE first, as an installed machine usually boots: the imageserver's GRUB config reads the disk's.
    vm = Vm(demo.net, machine("network")).start()
    pxe_booted = time.monotonic()
    try:
        vm.wait_for(rf"{name} login:", timeout=600)
        pxe_login_after = time.monotonic() - pxe_booted
    finally:
        pxe_log = vm.log()
        vm.stop()
    print(f"\n[timing] UEFI Secure Boot: power-on -> installed {install.installed_after:.0f} s; "
          f"installed -> login {login_after:.0f} s (from its disk: shim -> GRUB -> kernel); "
          f"PXE -> local disk -> login {pxe_login_after:.0f} s")
    assert "imageserver: booting from the local disk" in pxe_log, pxe_log[-3000:]
    assert SB_KERNEL_LINE in pxe_log, "the PXE-then-local boot did not run under Secure Boot"

    with loop_partition(install.disk, 2) as device, mounted(device) as root:
        check_disk(root, fs_uuid(device), master, name, ifname)
        image_shim = (root / "usr/lib/shim/shimx64.efi.signed").read_bytes()
    # The ESP read with mtools (the host's kernel may have no vfat): shim as the removable-media loader.
    out = demo.lab.tmp_path("esp-files")
    out.mkdir()
    with loop_partition(install.disk, 1) as esp:
        for name in ("BOOTX64.EFI", "grubx64.efi"):
            subprocess.run(["mcopy", "-n", "-i", esp, f"::/EFI/BOOT/{name}", str(out / name)], check=True,
                           capture_output=True)
    assert (out / "BOOTX64.EFI").read_bytes() == image_shim, "EFI/BOOT/BOOTX64.EFI is not the image's shim"
    assert "Debian Secure Boot" in signers(out / "grubx64.efi")
