"""appliance.boot.bootfiles: distro boot binaries copied (not linked) into the boot root, missing ones named."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from appliance.boot.bootfiles import BootFiles, sync_boot_files, wanted_boot_files
from appliance.config import BootConfig
from services.base import ServiceError


def distro(tmp_path: Path, *, ipxe: bool = True, pxelinux: bool = True, shim: bool = False,
           uefi_loader: str = "ipxe") -> BootConfig:
    ipxe_dir, pxe_dir, mods = tmp_path / "ipxe", tmp_path / "PXELINUX", tmp_path / "modules"
    shim_dir, grub_dir = tmp_path / "shim", tmp_path / "x86_64-efi-signed"
    for d in (ipxe_dir, pxe_dir, mods, shim_dir, grub_dir):
        d.mkdir(parents=True, exist_ok=True)
    if ipxe:
        for name in ("undionly.kpxe", "ipxe.efi", "snponly.efi"):
            (ipxe_dir / name).write_bytes(name.encode() * 100)
    if pxelinux:
        (pxe_dir / "pxelinux.0").write_bytes(b"pxelinux" * 50)
        (mods / "ldlinux.c32").write_bytes(b"ldlinux" * 50)
    if shim:
        (shim_dir / "shimx64.efi.signed").write_bytes(b"shim" * 50)
        (grub_dir / "grubnetx64.efi.signed").write_bytes(b"grubnet" * 50)
    return BootConfig(ipxe_dir=ipxe_dir, pxelinux=pxe_dir / "pxelinux.0", syslinux_modules=mods,
                      shim=shim_dir / "shimx64.efi.signed", grub_efi=grub_dir / "grubnetx64.efi.signed",
                      uefi_loader=uefi_loader)


def test_first_sync_copies_everything_as_regular_files(tmp_path: Path) -> None:
    boot = distro(tmp_path, shim=True)
    root = tmp_path / "state" / "boot"
    report = sync_boot_files(wanted_boot_files(boot), root)
    assert sorted(report.copied) == ["grubx64.efi", "ipxe.efi", "ldlinux.c32", "pxelinux.0", "shimx64.efi",
                                     "snponly.efi", "undionly.kpxe"]
    assert report.missing == []
    for f in wanted_boot_files(boot):
        target = root / f.name
        assert not target.is_symlink()
        assert target.read_bytes() == f.source.read_bytes()
    assert report.installer_missing == ["installer/vmlinuz", "installer/initrd.img"]


def test_second_sync_copies_nothing_until_a_source_changes(tmp_path: Path) -> None:
    boot = distro(tmp_path)
    root = tmp_path / "boot"
    files = wanted_boot_files(boot)
    sync_boot_files(files, root)
    again = sync_boot_files(files, root)
    assert again.copied == []
    assert len(again.unchanged) == 5  # the shim files are absent here
    (boot.ipxe_dir / "undionly.kpxe").write_bytes(b"a newer ipxe build")
    third = sync_boot_files(files, root)
    assert third.copied == ["undionly.kpxe"]
    assert (root / "undionly.kpxe").read_bytes() == b"a newer ipxe build"


def test_a_symlink_left_in_the_root_is_replaced_by_a_copy(tmp_path: Path) -> None:
    boot = distro(tmp_path)
    root = tmp_path / "boot"
    root.mkdir()
    os.symlink(boot.ipxe_dir / "ipxe.efi", root / "ipxe.efi")
    report = sync_boot_files(wanted_boot_files(boot), root)
    assert "ipxe.efi" in report.copied
    assert not (root / "ipxe.efi").is_symlink()


def test_missing_files_name_their_package(tmp_path: Path) -> None:
    boot = distro(tmp_path, pxelinux=False)
    report = sync_boot_files(wanted_boot_files(boot), tmp_path / "boot")
    assert {(f.name, f.package) for f in report.missing} == {("pxelinux.0", "pxelinux"),
                                                             ("ldlinux.c32", "syslinux-common"),
                                                             ("shimx64.efi", "shim-signed"),
                                                             ("grubx64.efi", "grub-efi-amd64-signed")}
    status = report.as_dict(wanted_boot_files(boot))
    # The Secure Boot files are listed, but missing only counts while uefi_loader = "shim" wants them.
    assert status["missing"] == ["ldlinux.c32", "pxelinux.0"]
    assert status["files"]["shimx64.efi"] == {"present": False, "source": str(boot.shim), "package": "shim-signed",
                                              "purpose": status["files"]["shimx64.efi"]["purpose"]}
    shim = distro(tmp_path, pxelinux=False, uefi_loader="shim")
    assert sync_boot_files(wanted_boot_files(shim), tmp_path / "boot").as_dict(wanted_boot_files(shim))[
        "missing"] == ["grubx64.efi", "ldlinux.c32", "pxelinux.0", "shimx64.efi"]
    assert status["files"]["pxelinux.0"]["package"] == "pxelinux"
    assert status["files"]["undionly.kpxe"]["present"] is True


async def test_service_warns_but_starts_with_some_files_missing(tmp_path: Path) -> None:
    svc = BootFiles(distro(tmp_path, ipxe=False), tmp_path / "boot", require_loader=True)
    await svc.start()
    st = svc.status()
    assert st["state"] == "running"
    assert "undionly.kpxe" in st["missing"]
    assert st["counters"]["present"] == 2


async def test_service_refuses_to_start_with_no_loader_at_all(tmp_path: Path) -> None:
    svc = BootFiles(distro(tmp_path, ipxe=False, pxelinux=False), tmp_path / "boot", require_loader=True)
    with pytest.raises(ServiceError) as info:
        await svc.start()
    message = str(info.value)
    assert "package ipxe" in message and "package pxelinux" in message
    assert svc.status()["state"] == "failed"


async def test_nothing_bootable_is_fine_when_nothing_serves_boot_loaders(tmp_path: Path) -> None:
    svc = BootFiles(distro(tmp_path, ipxe=False, pxelinux=False), tmp_path / "boot", require_loader=False)
    await svc.start()
    assert svc.status()["state"] == "running"


async def test_shim_loader_without_its_packages_refuses_to_start_naming_them(tmp_path: Path) -> None:
    svc = BootFiles(distro(tmp_path, uefi_loader="shim"), tmp_path / "boot", require_loader=True)
    with pytest.raises(ServiceError) as info:
        await svc.start()
    message = str(info.value)
    assert 'uefi_loader = "shim"' in message
    assert "package shim-signed" in message and "package grub-efi-amd64-signed" in message
    assert svc.status()["state"] == "failed"


async def test_shim_loader_with_its_files_starts_and_lists_them(tmp_path: Path) -> None:
    svc = BootFiles(distro(tmp_path, shim=True, uefi_loader="shim"), tmp_path / "boot", require_loader=True)
    await svc.start()
    st = svc.status()
    assert st["state"] == "running" and st["missing"] == []
    assert st["files"]["shimx64.efi"]["package"] == "shim-signed"
    assert st["files"]["grubx64.efi"]["present"] is True
    assert (tmp_path / "boot" / "grubx64.efi").read_bytes() == b"grubnet" * 50


async def test_missing_shim_is_no_warning_while_uefi_machines_get_ipxe(tmp_path: Path,
                                                                        caplog: pytest.LogCaptureFixture) -> None:
    svc = BootFiles(distro(tmp_path), tmp_path / "boot", require_loader=True)
    await svc.start()
    st = svc.status()
    assert st["state"] == "running" and st["missing"] == [] and st["counters"]["missing"] == 0
    assert st["files"]["shimx64.efi"]["present"] is False
    assert "shimx64.efi" not in caplog.text
