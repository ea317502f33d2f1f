"""The installer every autoinstall client boots: a Debian kernel and an initrd built by bootenv.

The initrd holds busybox (sh, udhcpc, wget, mount, insmod, switch_root), the disk tools an
autoinstall script calls (sfdisk, mkfs.ext4, mkfs.vfat, mkswap, blkid, rsync, extlinux and the
syslinux MBR; mkfs.xfs and mkfs.btrfs where this machine has them; mdadm and lvm for software RAID
and LVM) and curl, with their libraries, kernel modules for virtual and common real hardware, our
/init (init.sh here) and the autoinstall shell runtime the served scripts source (runtime.sh, lib/,
transports/: appliance.boot.installer.runtime). `install_bootenv` builds it (cached by bootenv under
the inputs' digest) and puts vmlinuz + initrd.img into `<state_dir>/boot/installer/`, where the boot
path serves them.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from appliance.boot import bootenv
from appliance.boot.installer import arm64
from appliance.boot.installer.runtime import runtime_files

HERE = Path(__file__).parent
INIT = HERE / "init.sh"
UDHCPC_SCRIPT = HERE / "udhcpc.sh"

# Virtual hardware first; then cheap drivers for common real NICs and disk controllers, so the same
# installer works on a rack of real machines. Built-ins (virtio_pci on Debian) resolve to nothing.
MODULES: tuple[str, ...] = (
    "virtio_pci", "virtio_blk", "virtio_net", "virtio_scsi",
    "ext4", "vfat", "nls_cp437", "nls_ascii", "nls_iso8859_1",
    # every other filesystem mkfs_fs makes and mounts (lib/filesystems.sh): RHEL-family roots are xfs,
    # Fedora/openSUSE/Ubuntu ones btrfs; the host's kernel may have them built in, Debian's has modules
    "xfs", "btrfs",
    "e1000", "e1000e", "igb", "r8169", "tg3",
    "ahci", "ata_piix", "sd_mod", "nvme", "sr_mod", "isofs",
    # USB sticks and CD drives, for boot media (mkbootmedia) and their local.cfg
    "xhci_pci", "ehci_pci", "ohci_pci", "uhci_hcd", "usb_storage", "uas",
    # software RAID and LVM (device-mapper), for masters whose filesystems were on them
    "md_mod", "raid0", "raid1", "raid10", "dm_mod",
    # the BMC's own interface (KCS/SMIC/BT), so the inventory can ask it for its LAN address (ipmitool)
    "ipmi_si", "ipmi_devintf",
)  # fmt: skip

# Tools an autoinstall script may call: required ones fail the build if missing, optional ones
# (other boot loaders) are taken when this machine has them.
REQUIRED_BINARIES: tuple[str, ...] = ("sfdisk", "mkfs.ext4", "mkfs.vfat", "mkswap", "rsync", "extlinux", "blkid")
# aria2c: the BitTorrent transport (TRANSPORT=bittorrent; without it the script falls back to rsync).
# curl: busybox's sh runs its own wget applet whatever PATH says, and busybox 1.35's wget crashes on
# `-T SECONDS`; scripts that prefer curl (as generated autoinstall scripts do) get a working client.
OPTIONAL_BINARIES: tuple[str, ...] = ("curl", "aria2c", "wipefs", "mkfs.xfs", "mkfs.btrfs", "btrfs", "e2label",
                                      "tune2fs", "grub-install", "grub-mkconfig",
                                      # multicast installs: udpcast's receiver, the stream's cipher, and GNU
                                      # tar (owners, ACLs, xattrs: busybox tar keeps none of them)
                                      "udp-receiver", "openssl", "tar",
                                      # md arrays and LVM volumes (masters on RAID/LVM): mdadm, lvm2
                                      "mdadm", "lvm",
                                      # the inventory's BMC address (lib/inventory.sh: ipmitool lan print)
                                      "ipmitool",
                                      # the inventory's LLDP neighbours (lib/inventory.sh: one frame per NIC)
                                      "tcpdump")
# The syslinux MBR (MBR code that boots the active partition) and the extlinux modules.
SYSLINUX_FILES: tuple[Path, ...] = (
    Path("/usr/lib/syslinux/mbr/mbr.bin"),
    Path("/usr/lib/syslinux/mbr/gptmbr.bin"),
)
INSTALLER_DIR = Path("boot") / "installer"
# Each architecture's installer beside the others in the boot root (GRUB picks by its $grub_cpu:
# protocols/bootscript.render_grub).
INSTALLER_DIRS: dict[str, Path] = {"amd64": INSTALLER_DIR, "arm64": Path("boot") / "installer-arm64"}
# Modules of MODULES Debian's arm64 kernel does not have (Intel's USB 1.1 host controller is x86 only).
_NOT_ON_ARM64 = ("uhci_hcd",)
ARM64_MODULES: tuple[str, ...] = tuple(m for m in MODULES if m not in _NOT_ON_ARM64)


@dataclass(frozen=True, slots=True)
class BootEnv:
    """What `install_bootenv` put into the state directory."""

    vmlinuz: Path
    initrd: Path
    kernel_package: str
    initrd_digest: str  # the cached initrd's name: changes exactly when an input changed
    changed: bool  # False: the installed files were already these

    def as_dict(self) -> dict[str, object]:
        return {"vmlinuz": str(self.vmlinuz), "initrd": str(self.initrd), "kernel_package": self.kernel_package,
                "initrd_digest": self.initrd_digest, "changed": self.changed}


class InstallerError(bootenv.BootEnvError):
    """The installer cannot be built (a required tool is missing, ...)."""


def _which(name: str) -> Path | None:
    found = shutil.which(name, path="/usr/sbin:/usr/bin:/sbin:/bin")
    return Path(found) if found else None


def installer_binaries(optional: Sequence[str] = OPTIONAL_BINARIES) -> list[Path]:
    """Absolute paths of the tools to put into the initrd; InstallerError names a missing required one."""
    binaries: list[Path] = []
    for name in REQUIRED_BINARIES:
        path = _which(name)
        if path is None:
            raise InstallerError(f"{name} is not installed (see deps/apt-packages.txt; `make deps`)")
        binaries.append(path)
    binaries += [path for name in optional if (path := _which(name)) is not None]
    return binaries


def installer_spec(kernel: bootenv.Kernel) -> bootenv.InitrdSpec:
    # The runtime's files are inputs like any other: an edit to lib/*.sh changes the initrd's digest.
    files: dict[str, bytes | str | Path] = {"etc/udhcpc.sh": UDHCPC_SCRIPT, **runtime_files()}
    for path in SYSLINUX_FILES:
        if path.is_file():
            files[str(path).lstrip("/")] = path
    # The binaries keep their host paths (/usr/sbin/sfdisk), so PATH covers them; /usr/bin/sh etc.
    # come from busybox's --list-full links.
    return bootenv.InitrdSpec(init=INIT.read_text(), binaries=installer_binaries(), modules=MODULES,
                              kernel=kernel, files=files)


def installer_spec_arm64(kernel: bootenv.Kernel, sysroot: Path) -> bootenv.InitrdSpec:
    """The same installer for arm64: the same /init, runtime and module list (less x86-only modules), the
    userland from Debian's arm64 packages unpacked in `sysroot` (arm64.fetch_userland)."""
    files: dict[str, bytes | str | Path] = {"etc/udhcpc.sh": UDHCPC_SCRIPT, **runtime_files()}
    return bootenv.InitrdSpec(init=INIT.read_text(), binaries=arm64.installer_binaries(sysroot),
                              modules=ARM64_MODULES, kernel=kernel, files=files,
                              busybox=sysroot / "bin" / "busybox", sysroot=sysroot, arch=arm64.ARCH,
                              applet_lister=bootenv.BUSYBOX)


def _is_arch(package: str, arch: str) -> bool:
    try:
        bootenv.kernel_package_arch(package, arch)
    except bootenv.BootEnvError:
        return False
    return True


def cached_kernel_package(cache_dir: Path, arch: str = "amd64") -> str | None:
    """The newest kernel of `arch` already unpacked in the cache (so a rebuild needs no network), if any."""
    kernels = cache_dir / "kernels"
    if not kernels.is_dir():
        return None
    names = [tree.name for tree in kernels.iterdir() if (tree / ".complete").exists() and _is_arch(tree.name, arch)]
    return max(names, key=bootenv._natural_key) if names else None


def _install_file(source: Path, dest: Path) -> bool:
    """Copy `source` to `dest` atomically unless it already holds the same bytes; True if it changed."""
    if dest.exists() and dest.stat().st_size == source.stat().st_size and dest.read_bytes() == source.read_bytes():
        return False
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(prefix=f".{dest.name}.", dir=dest.parent)
    try:
        with os.fdopen(fd, "wb") as out, open(source, "rb") as src:
            shutil.copyfileobj(src, out)
        os.chmod(temporary, 0o644)
        os.replace(temporary, dest)  # a machine booting right now sees the old or the new file, never half
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    return True


def install_bootenv(state_dir: Path, cache_dir: Path = bootenv.DEFAULT_CACHE_DIR,
                    kernel_package: str | None = None, arch: str = "amd64") -> BootEnv:
    """Build (or reuse) the installer and install it as <state_dir>/boot/installer/{vmlinuz,initrd.img}
    (arm64: boot/installer-arm64/, and the network loader grubaa64.efi, shimaa64.efi into boot/)."""
    if arch not in INSTALLER_DIRS:
        raise bootenv.BootEnvError(f"no boot environment for {arch!r} (one of {', '.join(INSTALLER_DIRS)})")
    if kernel_package is not None:
        bootenv.kernel_package_arch(kernel_package, arch)  # a -cloud or another architecture's: refused, why
    package = kernel_package or cached_kernel_package(cache_dir, arch)
    kernel = bootenv.fetch_kernel(cache_dir, package, arch)
    changed = False
    if arch == "amd64":
        spec = installer_spec(kernel)
    else:
        spec = installer_spec_arm64(kernel, arm64.fetch_userland(cache_dir).root)
        for name, source in arm64.fetch_loaders(cache_dir).items():
            changed = _install_file(source, state_dir / "boot" / name) or changed
    initrd = bootenv.build_initrd(spec, cache_dir)
    target = state_dir / INSTALLER_DIRS[arch]
    changed = _install_file(kernel.vmlinuz, target / "vmlinuz") or changed
    changed = _install_file(initrd, target / "initrd.img") or changed
    env = BootEnv(target / "vmlinuz", target / "initrd.img", kernel.package, initrd.stem, changed)
    manifest = {"kernel_package": kernel.package, "release": kernel.release, "initrd": initrd.name,
                "modules": list(spec.modules), "arch": arch}
    (target / "installer.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return env
