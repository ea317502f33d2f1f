"""The installer's GRUB for UEFI machines names the machine's own EFI platform: x86_64-efi with
EFI/BOOT/BOOTX64.EFI on x64, arm64-efi with EFI/BOOT/BOOTAA64.EFI on arm64 (the installer runs on the machine
it installs, so `uname -m` is the machine's), and Secure Boot's shim + GRUB by that platform's names. The
runtime's own install_bootloader runs here with chroot, uname and the firmware probe stood in for."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.installer_sh import prelude

# After the runtime is sourced: what this box is not (an EFI-booted arm64 machine, an image to chroot into).
STAND_INS = """
uname() { echo "$FAKE_MACHINE"; }
firmware() { echo uefi; }
link_fs_uuids() { :; }  # lib/filesystems.sh's: /dev/disk/by-uuid of the new file systems
chroot() {
    shift
    echo "$*" >>"$CALLS"
    case "$*" in *--uefi-secure-boot*)  # what grub-install --uefi-secure-boot leaves
        mkdir -p "$TARGET$ESP_MOUNT/EFI/BOOT"
        cp "$TARGET/usr/lib/shim/shim$EFI_SUFFIX.efi.signed" "$TARGET$ESP_MOUNT/EFI/BOOT/$EFI_REMOVABLE"
        : >"$TARGET$ESP_MOUNT/EFI/BOOT/grub$EFI_SUFFIX.efi" ;;
    esac
}
install_bootloader
"""


def run(tmp_path: Path, machine: str, signed: tuple[str, str] | None) -> tuple[str, list[str]]:
    target = tmp_path / "target"
    for tool in ("grub-install", "update-grub"):
        path = target / "usr/sbin" / tool
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("#!/bin/sh\n")
        path.chmod(0o755)
    if signed is not None:
        for name in signed:
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            (target / name).write_bytes(name.encode())
    calls = tmp_path / "calls"
    script = prelude("common", "report", "bootloader") + STAND_INS
    env = {"PATH": os.environ["PATH"], "TARGET": str(target), "ESP_MOUNT": "/boot/efi", "CALLS": str(calls),
           "FAKE_MACHINE": machine}
    done = subprocess.run(["sh", "-euc", script], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout + done.stderr, calls.read_text().splitlines()


@pytest.mark.parametrize(
    ("machine", "target", "removable"),
    [("x86_64", "x86_64-efi", "BOOTX64.EFI"), ("aarch64", "arm64-efi", "BOOTAA64.EFI")],
)
def test_grub_for_uefi_is_installed_for_the_machines_own_platform(tmp_path: Path, machine: str, target: str,
                                                                   removable: str) -> None:
    out, calls = run(tmp_path, machine, None)
    assert calls[0] == f"grub-install --target={target} --efi-directory=/boot/efi --removable --no-nvram", calls
    assert calls[1] == "update-grub"
    assert "[bootloader] grub for UEFI in /boot/efi" in out and "Secure Boot" not in out


@pytest.mark.parametrize(
    ("machine", "suffix", "signed_dir", "removable"),
    [("x86_64", "x64", "x86_64-efi-signed", "BOOTX64.EFI"), ("aarch64", "aa64", "arm64-efi-signed", "BOOTAA64.EFI")],
)
def test_an_image_with_signed_shim_and_grub_of_its_platform_gets_secure_boot(
        tmp_path: Path, machine: str, suffix: str, signed_dir: str, removable: str) -> None:
    shim = f"usr/lib/shim/shim{suffix}.efi.signed"
    out, calls = run(tmp_path, machine, (shim, f"usr/lib/grub/{signed_dir}/grub{suffix}.efi.signed"))
    assert calls[0].endswith("--removable --no-nvram --uefi-secure-boot"), calls
    assert "(signed shim + grub: Secure Boot)" in out
    esp = tmp_path / "target/boot/efi/EFI/BOOT"
    assert (esp / removable).read_bytes() == shim.encode() and (esp / f"grub{suffix}.efi").exists()


def test_an_x64_signed_shim_does_not_make_an_arm64_machine_secure_boot(tmp_path: Path) -> None:
    out, calls = run(tmp_path, "aarch64", ("usr/lib/shim/shimx64.efi.signed",
                                           "usr/lib/grub/x86_64-efi-signed/grubx64.efi.signed"))
    assert "--uefi-secure-boot" not in calls[0] and calls[0].startswith("grub-install --target=arm64-efi")
    assert "Secure Boot" not in out
