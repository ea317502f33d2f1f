"""The arm64 installer and network loader, built on this amd64 box from Debian's arm64 packages.

Nothing of arm64 runs here: the packages are downloaded (`apt-get download PKG:arm64`, or apt's own resolver
with an empty package status for the userland and its libraries) and unpacked into a sysroot under the
cache; the initrd takes its binaries from there (libraries found by reading the ELF files), the busybox
applet list from this box's busybox-static of the same Debian release. There is no arm64 iPXE: the firmware
starts Debian's signed network GRUB (or shim, then that GRUB), which reads the same per-machine
grub/grub.cfg-01-<mac> as x64 GRUB machines and picks the arm64 installer by its own $grub_cpu.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from appliance.boot import bootenv

ARCH = "arm64"
# The userland of the amd64 installer (installer.REQUIRED_BINARIES and the optional tools it can take),
# less what is x86 only (extlinux, the syslinux MBR): the packages, then the binaries found in them.
USERLAND_PACKAGES: tuple[str, ...] = ("busybox-static", "fdisk", "e2fsprogs", "dosfstools", "util-linux", "rsync",
                                      "curl", "xfsprogs", "tar")
REQUIRED_BINARIES: tuple[str, ...] = ("sfdisk", "mkfs.ext4", "mkfs.vfat", "mkswap", "rsync", "blkid")
OPTIONAL_BINARIES: tuple[str, ...] = ("curl", "wipefs", "mkfs.xfs", "e2label", "tune2fs", "tar")
_BINARY_DIRS = ("usr/sbin", "usr/bin", "sbin", "bin")
# The network loader: (package, file in it, name in the boot root). DHCP names these files
# (domain.settings.ARM64_BOOT_FILES); shim fetches grubaa64.efi from beside itself.
LOADERS: tuple[tuple[str, str, str], ...] = (
    ("grub-efi-arm64-signed", "usr/lib/grub/arm64-efi-signed/grubnetaa64.efi.signed", "grubaa64.efi"),
    ("shim-signed", "usr/lib/shim/shimaa64.efi.signed", "shimaa64.efi"),
)


@dataclass(frozen=True, slots=True)
class Sysroot:
    root: Path
    packages: tuple[str, ...]  # the .deb file names unpacked into it


def _apt_resolve_download(packages: tuple[str, ...], archives: Path) -> None:
    """apt's resolver, for arm64, as if nothing were installed: downloads the packages and everything they
    depend on into `archives` (never unpacked or configured here; this box's package state is untouched)."""
    status = archives / "empty-status"
    (archives / "partial").mkdir(parents=True, exist_ok=True)
    status.touch()
    argv = ["apt-get", "install", "--download-only", "-y", "-qq", "--no-install-recommends",
            "-o", "Debug::NoLocking=1", "-o", f"APT::Architecture={ARCH}", "-o", f"APT::Architectures={ARCH}",
            "-o", f"Dir::State::status={status}", "-o", f"Dir::Cache::archives={archives}",
            "-o", "APT::Sandbox::User=root", *packages]
    try:
        subprocess.run(argv, check=True, capture_output=True, text=True)
    except FileNotFoundError as exc:
        raise bootenv.BootEnvError("apt-get is not installed") from exc
    except subprocess.CalledProcessError as exc:
        raise bootenv.BootEnvError(f"apt-get could not fetch the {ARCH} packages {' '.join(packages)}: "
                                   f"{exc.stderr.strip()} (is {ARCH} added? deps/install.sh)") from exc


def fetch_userland(cache_dir: Path, packages: tuple[str, ...] = USERLAND_PACKAGES) -> Sysroot:
    """The installer userland's arm64 packages with their dependencies, unpacked into a sysroot (cached,
    named by the digest of the .deb files it holds)."""
    base = cache_dir / ARCH
    archives = base / "debs"
    with bootenv._locked(base / "userland.lock"):
        _apt_resolve_download(packages, archives)
        debs = sorted(p.name for p in archives.glob("*.deb"))
        digest = hashlib.sha256("\n".join([*packages, "--", *debs]).encode()).hexdigest()[:16]
        root = base / f"sysroot-{digest}"
        if not (root / ".complete").exists():
            staging = Path(tempfile.mkdtemp(prefix=".sysroot.", dir=base))
            try:
                for deb in debs:
                    bootenv._run(["dpkg-deb", "-x", str(archives / deb), str(staging)])
                (staging / ".complete").write_text("\n".join(debs) + "\n")
                if root.exists():
                    shutil.rmtree(root)
                staging.rename(root)
            except BaseException:
                shutil.rmtree(staging, ignore_errors=True)
                raise
    return Sysroot(root, tuple(debs))


def find_binary(sysroot: Path, name: str) -> str | None:
    """`name`'s absolute path inside the sysroot (/usr/sbin before /sbin, as PATH has it)."""
    return next((f"/{d}/{name}" for d in _BINARY_DIRS if (sysroot / d / name).exists()), None)


def installer_binaries(sysroot: Path) -> list[str]:
    binaries: list[str] = []
    for name in REQUIRED_BINARIES:
        path = find_binary(sysroot, name)
        if path is None:
            raise bootenv.BootEnvError(f"{name} is in none of the {ARCH} packages {' '.join(USERLAND_PACKAGES)}")
        binaries.append(path)
    return binaries + [p for name in OPTIONAL_BINARIES if (p := find_binary(sysroot, name)) is not None]


def fetch_loaders(cache_dir: Path) -> dict[str, Path]:
    """The network loader files (boot root name -> unpacked file), from Debian's arm64 packages."""
    base = cache_dir / ARCH
    found: dict[str, Path] = {}
    with bootenv._locked(base / "loaders.lock"):
        for package, inside, name in LOADERS:
            deb = bootenv.download_deb(package, base / "loader-debs", ARCH)
            tree = base / "loaders" / deb.stem
            if not (tree / ".complete").exists():
                tree.mkdir(parents=True, exist_ok=True)
                bootenv._run(["dpkg-deb", "-x", str(deb), str(tree)])
                (tree / ".complete").touch()
            if not (tree / inside).is_file():
                raise bootenv.BootEnvError(f"{deb.name} holds no {inside}")
            found[name] = tree / inside
    return found
