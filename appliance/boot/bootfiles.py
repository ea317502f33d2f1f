"""The boot root: distro boot binaries copied into <state_dir>/boot/, served by TFTP and HTTP.

Copies, not symlinks: both servers refuse symlinks that lead out of their root, and a copy also
keeps serving the file a machine started with while apt upgrades the package. A file is copied
when its size or modification time differs from the source (copy2 keeps the mtime, so an unchanged
source costs one stat). A missing binary is a warning naming the Debian package that provides it
and an entry in the status document; the daemon refuses to start only when no boot loader at all
is available while something (TFTP) is there to serve one.

The installer's kernel and initrd live in <state_dir>/boot/installer/ (vmlinuz, initrd.img); they
are built by `imageserver mkbootenv`, not copied from the distro, so here they are only checked.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from appliance.boot.installer import INSTALLER_DIRS
from appliance.config import BootConfig
from services.base import ServiceError, ServiceStatus
from state.eventlog import EventLog

log = EventLog("imageserver.bootfiles")

INSTALLER_DIR = "installer"
INSTALLER_KERNEL = f"{INSTALLER_DIR}/vmlinuz"
INSTALLER_INITRD = f"{INSTALLER_DIR}/initrd.img"


@dataclass(frozen=True, slots=True)
class BootFile:
    name: str  # path inside the boot root
    source: Path  # where the distro package puts it
    package: str  # the Debian package that provides it
    purpose: str
    loader: bool  # a network boot program a firmware can start (one of these makes the root "bootable")
    # False: copied and listed when its package is installed, but its absence is no warning (the Secure
    # Boot files while [boot] uefi_loader is "ipxe": nothing is told to load them).
    needed: bool = True


def wanted_boot_files(boot: BootConfig) -> tuple[BootFile, ...]:
    ipxe = boot.ipxe_dir
    return (
        BootFile("undionly.kpxe", ipxe / "undionly.kpxe", "ipxe", "iPXE for BIOS PXE ROMs", True),
        BootFile("ipxe.efi", ipxe / "ipxe.efi", "ipxe", "iPXE for UEFI x64 (own NIC drivers)", True),
        BootFile("snponly.efi", ipxe / "snponly.efi", "ipxe", "iPXE for UEFI x64 (firmware's SNP driver)", True),
        BootFile("pxelinux.0", boot.pxelinux, "pxelinux", "pxelinux for BIOS PXE ROMs", True),
        BootFile("ldlinux.c32", boot.syslinux_modules / "ldlinux.c32", "syslinux-common",
                 "pxelinux's core module (pxelinux.0 does not start without it)", False),
        *secure_boot_files(boot),
    )


def secure_boot_files(boot: BootConfig) -> tuple[BootFile, ...]:
    """The Secure Boot chain ([boot] uefi_loader = "shim"): shim fetches grubx64.efi from the directory of
    its own DHCP file name, and that GRUB reads grub/grub.cfg (rendered, not a file)."""
    needed = boot.uefi_loader == "shim"
    return (
        BootFile("shimx64.efi", boot.shim, "shim-signed",
                 "shim for UEFI x64 Secure Boot (signed by Microsoft's UEFI CA)", True, needed),
        BootFile("grubx64.efi", boot.grub_efi, "grub-efi-amd64-signed",
                 "Debian's signed network GRUB that shim starts (reads grub/grub.cfg-01-<mac>)", False, needed),
    )


@dataclass(slots=True)
class SyncReport:
    copied: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    missing: list[BootFile] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # name -> error (e.g. disk full)
    installer_missing: list[str] = field(default_factory=list)

    @property
    def present(self) -> list[str]:
        return self.copied + self.unchanged

    def as_dict(self, files: tuple[BootFile, ...]) -> dict[str, Any]:
        absent = {f.name for f in self.missing} | set(self.failed)
        missing = {f.name for f in self.missing if f.needed} | set(self.failed)
        return {
            "files": {
                f.name: {"present": f.name not in absent, "source": str(f.source), "package": f.package,
                         "purpose": f.purpose, **({"error": self.failed[f.name]} if f.name in self.failed else {})}
                for f in files
            },
            "missing": sorted(missing),
            "installer": {"kernel": INSTALLER_KERNEL, "initrd": INSTALLER_INITRD,
                          "missing": list(self.installer_missing)},
        }


def _same(src: os.stat_result, dst: os.stat_result) -> bool:
    return src.st_size == dst.st_size and src.st_mtime_ns == dst.st_mtime_ns


def _copy(source: Path, target: Path) -> None:
    """Copy through a hidden temporary name and rename, so a reader never sees half a file."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.{os.getpid()}.tmp"
    try:
        shutil.copy2(source, tmp, follow_symlinks=True)
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)  # also replaces a symlink left at the target by an older setup
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def sync_boot_files(files: tuple[BootFile, ...], root: Path) -> SyncReport:
    """Copy each present source whose copy in `root` differs; report what is missing (blocking I/O)."""
    root.mkdir(parents=True, exist_ok=True)
    report = SyncReport()
    for f in files:
        try:
            src = f.source.stat()
        except OSError:
            report.missing.append(f)
            continue
        target = root / f.name
        try:
            dst = target.stat(follow_symlinks=False)
            if not target.is_symlink() and _same(src, dst):
                report.unchanged.append(f.name)
                continue
        except FileNotFoundError:
            pass
        try:
            _copy(f.source, target)
        except OSError as e:
            report.failed[f.name] = f"{type(e).__name__}: {e.strerror or e}"
            continue
        report.copied.append(f.name)
    report.installer_missing = installer_missing(root)
    return report


def installers_present(root: Path) -> dict[str, dict[str, str]]:
    """Each architecture whose installer mkbootenv has written into `root` (kernel and initrd both there):
    arch -> its kernel and initrd, as paths inside the boot root."""
    present = {}
    for arch, directory in INSTALLER_DIRS.items():
        files = {"kernel": f"{directory.name}/vmlinuz", "initrd": f"{directory.name}/initrd.img"}
        if all((root / f).is_file() for f in files.values()):
            present[arch] = files
    return present


def installer_missing(root: Path) -> list[str]:
    """The installer files mkbootenv has not (yet) written into `root` (two stats)."""
    return [n for n in (INSTALLER_KERNEL, INSTALLER_INITRD) if not (root / n).is_file()]


class BootFiles:
    """Keeps the boot root filled (a Service: started first, re-synced on SIGHUP, reported in status)."""

    name = "bootfiles"

    def __init__(self, boot: BootConfig, root: Path, *, require_loader: bool) -> None:
        self.boot = boot
        self.root = root
        self.require_loader = require_loader
        self.report: SyncReport | None = None
        self._status = ServiceStatus()

    async def start(self) -> None:
        await self.sync()
        assert self.report is not None
        loaders = [f.name for f in wanted_boot_files(self.boot) if f.loader and f.name in self.report.present]
        if self.require_loader and not loaders:
            message = ("bootfiles: no boot loader at all: " + "; ".join(
                f"{f.source} (package {f.package})" for f in self.report.missing if f.loader)
                + " — install the packages or set [boot] ipxe_dir / pxelinux")
            self._status.state, self._status.error = "failed", message
            raise ServiceError(message)
        absent = [f for f in secure_boot_files(self.boot) if f.name not in self.report.present]
        if self.require_loader and self.boot.uefi_loader == "shim" and absent:
            # Every UEFI machine would be told to load a file we do not have: refuse rather than half-boot.
            message = ('bootfiles: [boot] uefi_loader = "shim" needs ' + "; ".join(
                f"{f.source} (package {f.package})" for f in absent)
                + " — install the packages, set [boot] shim / grub_efi, or uefi_loader = \"ipxe\"")
            self._status.state, self._status.error = "failed", message
            raise ServiceError(message)
        self._status.state = "running"

    async def sync(self) -> SyncReport:
        files = wanted_boot_files(self.boot)
        report = await asyncio.to_thread(sync_boot_files, files, self.root)
        self.report = report
        c = self._status.counters
        c["copied"] += len(report.copied)
        c["present"] = len(report.present)
        c["missing"] = len([f for f in report.missing if f.needed]) + len(report.failed)
        for f in (f for f in report.missing if f.needed):
            log.warning("boot-file-missing", file=f.name, source=f.source, package=f.package,
                        hint=f"apt-get install {f.package}")
        for name, error in report.failed.items():
            log.warning("boot-file-copy-failed", file=name, error=error)
        for name in report.installer_missing:
            log.warning("installer-missing", file=self.root / name, hint="build it with imageserver mkbootenv")
        if report.copied:
            log.info("boot-files-copied", files=",".join(report.copied), root=self.root)
        return report

    async def reconfigure(self, boot: BootConfig) -> None:
        self.boot = boot
        await self.sync()

    async def stop(self) -> None:
        self._status.state = "stopped"

    def status(self) -> dict[str, Any]:
        out = self._status.as_dict()
        out["root"] = str(self.root)
        if self.report is not None:
            # mkbootenv writes the installer while the daemon runs: look again rather than report the last sync.
            self.report.installer_missing = installer_missing(self.root)
            out.update(self.report.as_dict(wanted_boot_files(self.boot)))
            # Every architecture's installer there ("installer" above is the amd64 one mkbootenv makes first).
            out["installers"] = installers_present(self.root)
        return out
