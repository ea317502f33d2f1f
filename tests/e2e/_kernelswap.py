"""Two versions of the real Debian master for the kernel-update e2e test, made in a chroot and cached.

v1: the cached master (tests/e2e/_debianmaster.py) plus curl (updateclient talks to the imageserver
    with curl or wget; minbase has neither) and a getty on the second serial port, ttyS1 (the test
    logs in there as root: the lab's first serial console is an output file).
v2: v1 with another kernel: linux-image-cloud-amd64 installed by apt, the generic kernel purged
    (its initramfs made by the package's own hooks in the chroot).

Cached like the master, under /var/cache/imageserver/test/debian-master-kernelswap/<hash>/{v1,v2},
keyed by the master's key and RECIPE_VERSION (bump it when the recipe below changes). A build writes
a temp dir and renames it, so concurrent builds are safe.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

from tests.e2e import _debianmaster as dm

RECIPE_VERSION = 2  # 2: dpkg without fsync or docs while building (_in_chroot)
OTHER_KERNEL = "linux-image-cloud-amd64"
SERIAL_LOGIN_TTY = "ttyS1"


def cache_key() -> str:
    inputs = f"{dm.cache_key()}|{RECIPE_VERSION}|{OTHER_KERNEL}|{SERIAL_LOGIN_TTY}"
    return hashlib.sha256(inputs.encode()).hexdigest()[:16]


def _in_chroot(root: Path, script: str) -> str:
    """`script` in the tree with /proc, /sys, /dev bound, the host's resolver and the master build's dpkg
    settings (the tree's own resolv.conf is put back and the settings are removed afterwards: the image's)."""
    resolv = root / "etc/resolv.conf"
    saved = resolv.read_bytes() if resolv.is_file() and not resolv.is_symlink() else None
    mounts: list[Path] = []
    try:
        if resolv.is_symlink():
            resolv.unlink()
        shutil.copyfile("/etc/resolv.conf", resolv)
        dm._build_dpkg_settings(root)
        for fs in ("proc", "sys", "dev"):
            dm._run(["mount", "--bind", f"/{fs}", str(root / fs)])
            mounts.append(root / fs)
        return dm._chroot(root, script)
    finally:
        for m in reversed(mounts):
            subprocess.run(["umount", "-l", str(m)], capture_output=True)
        (root / dm.BUILD_DPKG_CFG).unlink(missing_ok=True)
        if saved is not None:
            resolv.write_bytes(saved)
        else:
            resolv.unlink(missing_ok=True)


def _prune(root: Path) -> None:
    for rel in dm.PRUNE:
        shutil.rmtree(root / rel, ignore_errors=True)
    (root / "var/lib/apt/lists/partial").mkdir(parents=True, exist_ok=True)
    (root / "var/cache/apt/archives/partial").mkdir(parents=True, exist_ok=True)
    for modules in (root / "lib/modules").iterdir():
        for rel in dm.PRUNE_MODULES:
            shutil.rmtree(modules / "kernel" / rel, ignore_errors=True)


def _make_v1(root: Path) -> None:
    _in_chroot(root, "apt-get -q update >/dev/null\n"
                     "apt-get -q -y --no-install-recommends install curl >/dev/null\n"
                     "apt-get clean\n")
    wants = root / "etc/systemd/system/getty.target.wants"
    wants.mkdir(parents=True, exist_ok=True)
    link = wants / f"serial-getty@{SERIAL_LOGIN_TTY}.service"
    link.unlink(missing_ok=True)
    os.symlink("/lib/systemd/system/serial-getty@.service", link)
    _prune(root)


def _make_v2(root: Path) -> None:
    # The generic kernel's packages: the metapackage and linux-image-<release>-amd64.
    _in_chroot(root, "apt-get -q update >/dev/null\n"
                     f"apt-get -q -y --no-install-recommends install {OTHER_KERNEL} >/dev/null\n"
                     "generic=$(dpkg-query -W -f '${Package}\\n' 'linux-image-*' | grep -v cloud)\n"
                     "apt-get -q -y purge $generic >/dev/null\n"
                     "apt-get clean\n")
    _prune(root)


def build(cache_dir: Path) -> tuple[Path, Path]:
    """The cached (v1, v2) trees, built from the cached master if missing."""

    def make(work: Path) -> None:
        master = dm.build(cache_dir)
        dm._run(["rsync", "-aHAX", "--numeric-ids", f"{master}/", f"{work / 'v1'}/"])
        _make_v1(work / "v1")
        dm._run(["rsync", "-aHAX", "--numeric-ids", f"{work / 'v1'}/", f"{work / 'v2'}/"])
        _make_v2(work / "v2")

    entry = dm.cached_build(cache_dir / "debian-master-kernelswap" / cache_key(), make)
    return entry / "v1", entry / "v2"


def kernel_releases(root: Path) -> list[str]:
    return sorted(p.name.removeprefix("vmlinuz-") for p in (root / "boot").glob("vmlinuz-*"))


def new_master(cache_dir: Path, work: Path, version: int) -> dm.DebianMaster:
    """A master for one capture: a copy of the cached v1 or v2 tree and its disk file (MBR, BIOS); v1 with
    master state at every per-machine path, as _debianmaster.new_master plants it."""
    trees = build(cache_dir)
    root = work / f"kernelswap-master-v{version}-root"
    dm._run(["rsync", "-aHAX", "--numeric-ids", f"{trees[version - 1]}/", f"{root}/"])
    dm.reports_before_getty(root)
    if version == 1:  # what the installer must not copy to a clone (test_real_debian's checks)
        dm.plant_per_machine_state(root)
    disk = work / f"kernelswap-master-v{version}-disk.img"
    with open(disk, "wb") as f:
        f.truncate(dm.DISK_MB << 20)
    dm._run(["sfdisk", "-q", str(disk)], input=dm.DISK_TABLE)
    return dm.DebianMaster(root=root, disk=disk, machine_id=dm.MASTER_MACHINE_ID,
                           ssh_fingerprints=dm.ssh_fingerprints(root))
