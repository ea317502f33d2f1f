"""Put an image tree onto a raw disk file without a VM: what an autoinstall script does, on a loop device.

Used to prove the demo tree boots from a disk (before any PXE is involved) and to measure the raw
cost of copying an image (rsync into an empty file system) next to a full network install.

`losetup -P` makes no partition nodes on these machines (LAB.md), so the partition is mapped
directly with `losetup -o START --sizelimit SIZE`, using the offsets `sfdisk -J` reports.
"""

from __future__ import annotations

import contextlib
import json
import re
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

MBR_BIN = Path("/usr/lib/syslinux/mbr/mbr.bin")
SECTOR = 512


class DiskError(RuntimeError):
    pass


def _run(argv: list[str], input: str | None = None) -> str:
    result = subprocess.run(argv, capture_output=True, text=True, input=input)
    if result.returncode != 0:
        raise DiskError(f"{' '.join(argv)} failed ({result.returncode}): {result.stderr.strip()}")
    return result.stdout


@contextlib.contextmanager
def loop_partition(disk: Path, number: int = 1) -> Iterator[str]:
    """A loop device covering partition `number` of the disk file (detached afterwards)."""
    table = json.loads(_run(["sfdisk", "-J", str(disk)]))["partitiontable"]
    part = table["partitions"][number - 1]
    device = _run(["losetup", "-f", "--show", "-o", str(part["start"] * SECTOR),
                   "--sizelimit", str(part["size"] * SECTOR), str(disk)]).strip()
    try:
        yield device
    finally:
        subprocess.run(["losetup", "-d", device], capture_output=True)


@contextlib.contextmanager
def mounted(device: str, fstype: str = "ext4", options: str = "") -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="isl-mnt-") as directory:
        _run(["mount", "-t", fstype, *(["-o", options] if options else []), device, directory])
        try:
            yield Path(directory)
        finally:
            subprocess.run(["umount", directory], capture_output=True)


@dataclass(frozen=True, slots=True)
class DiskBuild:
    disk: Path
    rsync_seconds: float  # the raw copy of the tree into the empty file system


def partuuid(disk: Path, number: int = 1) -> str:
    """The kernel's PARTUUID of an MBR partition: '<disk id>-<nn>'."""
    disk_id = json.loads(_run(["sfdisk", "-J", str(disk)]))["partitiontable"]["id"]
    return f"{disk_id.lower().removeprefix('0x'):0>8}-{number:02x}"


def build_boot_disk(tree: Path, disk: Path, size_mb: int = 128, label: str = "root") -> DiskBuild:
    """A bootable raw disk holding `tree`: one bootable MBR partition, ext4, extlinux, syslinux MBR.

    The disk's /etc/fstab and extlinux.conf name the root file system by PARTUUID: it is what
    prepareclient can tie to a partition of a disk image file (lsblk, which knows UUIDs and labels,
    does not look into files)."""
    with open(disk, "wb") as out:
        out.truncate(size_mb << 20)
    _run(["sfdisk", "-q", str(disk)], input="label: dos\n,,L,*\n")
    root = f"PARTUUID={partuuid(disk)}"
    with loop_partition(disk) as device:
        _run(["mkfs.ext4", "-q", "-F", "-L", label, device])
        with mounted(device) as target:
            started = time.monotonic()
            _run(["rsync", "-aHAX", "--numeric-ids", f"{tree}/", f"{target}/"])
            rsync_seconds = time.monotonic() - started
            (target / "etc/fstab").write_text(f"# <file system> <mount point> <type> <options> <dump> <pass>\n"
                                              f"{root} / ext4 defaults 0 1\n")
            conf = target / "boot/extlinux/extlinux.conf"
            if conf.exists():
                conf.write_text(re.sub(r"root=\S+", f"root={root}", conf.read_text()))
            _run(["extlinux", "--install", str(target / "boot/extlinux")])
    with open(MBR_BIN, "rb") as mbr, open(disk, "r+b") as out:
        out.write(mbr.read(440))  # boot code only: the partition table after byte 440 stays
    return DiskBuild(disk, rsync_seconds)


def rsync_into_empty_fs(tree: Path, scratch: Path) -> float:
    """Seconds to rsync `tree` into a fresh ext4 file system (on a loop device): the raw copy cost."""
    size_mb = max(64, int(sum(f.stat().st_size for f in tree.rglob("*") if f.is_file() and not f.is_symlink())
                          / (1 << 20) * 2) + 32)
    with open(scratch, "wb") as out:
        out.truncate(size_mb << 20)
    _run(["sfdisk", "-q", str(scratch)], input="label: dos\n,,L\n")
    with loop_partition(scratch) as device:
        _run(["mkfs.ext4", "-q", "-F", device])
        with mounted(device) as target:
            started = time.monotonic()
            _run(["rsync", "-aHAX", "--numeric-ids", f"{tree}/", f"{target}/"])
            return time.monotonic() - started
