"""The saved disk layout: real `sfdisk --dump` output in, sfdisk input out that recreates the table;
fstab entries matched to partitions by UUID, LABEL, PARTUUID, PARTLABEL or device name."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from appliance.images.layout import (
    Layout,
    LayoutError,
    parse_sfdisk_dump,
    plan,
    read_layout,
    required_bytes,
    resolve,
    sfdisk_script,
)
from appliance.images.mounts import DISK_FILESYSTEMS

pytestmark = pytest.mark.skipif(shutil.which("sfdisk") is None, reason="sfdisk (fdisk package) is not installed")
MiB = 1 << 20


def make_disk(path: Path, size_mib: int, script: str) -> str:
    with open(path, "wb") as f:
        f.truncate(size_mib * MiB)
    subprocess.run(["sfdisk", "-q", str(path)], input=script, text=True, check=True, capture_output=True)
    return subprocess.run(["sfdisk", "--dump", str(path)], text=True, check=True, capture_output=True).stdout


def save(si: Path, name: str, size: int, dump: str, lsblk: dict | None = None) -> None:
    (si / "disks").mkdir(parents=True, exist_ok=True)
    (si / "disks" / f"{name}.sfdisk").write_text(dump)
    if lsblk is not None:
        (si / "disks" / f"{name}.lsblk.json").write_text(json.dumps(lsblk))
    with open(si / "disks" / "order", "a") as f:
        f.write(f"{name} {size}\n")


def test_gpt_with_a_gap_in_numbering_is_recreated_with_the_same_numbers_and_a_grown_last(tmp_path: Path) -> None:
    dump = make_disk(tmp_path / "m.img", 64, 'label: gpt\npart1 : start=2048, size=16384, type=U, name="EFI"\n'
                     "part4 : start=18432, size=32768, type=L, attrs=LegacyBIOSBootable\n")
    header, parts = parse_sfdisk_dump(dump)
    assert header["label"] == "gpt" and [p.number for p in parts] == [1, 4]
    assert parts[0].name == "EFI" and parts[1].attrs == "LegacyBIOSBootable"
    save(tmp_path / "si", "m.img", 64 * MiB, dump)
    layout = read_layout(tmp_path / "si")
    assert Layout.from_json(layout.to_json()) == layout
    disk = layout.disks[0]
    assert required_bytes(disk) == (18432 + 32768 + 34) * 512
    # Apply to a bigger disk: same numbers, starts, types; the last partition fills the disk.
    target = tmp_path / "t.img"
    with open(target, "wb") as f:
        f.truncate(128 * MiB)
    subprocess.run(["sfdisk", "-q", str(target)], input=sfdisk_script(disk), text=True, check=True,
                   capture_output=True)
    _, new = parse_sfdisk_dump(subprocess.run(["sfdisk", "--dump", str(target)], text=True, check=True,
                                              capture_output=True).stdout)
    assert [(p.number, p.start, p.type, p.name) for p in new] == [(p.number, p.start, p.type, p.name) for p in parts]
    assert new[0].size == parts[0].size
    assert new[1].size > parts[1].size and (new[1].start + new[1].size) * 512 > 126 * MiB
    assert new[0].uuid != parts[0].uuid  # every installed machine gets its own partition GUIDs


def test_mbr_with_logical_partitions_keeps_numbers_and_grows_extended_and_last_logical(tmp_path: Path) -> None:
    dump = make_disk(tmp_path / "m.img", 64, "label: dos\n,16M,83,*\n,8M,82\n,,E\n,10M,83\n,10M,83\n")
    header, parts = parse_sfdisk_dump(dump)
    assert [p.number for p in parts] == [1, 2, 3, 5, 6] and parts[0].bootable
    save(tmp_path / "si", "m.img", 64 * MiB, dump)
    disk = read_layout(tmp_path / "si").disks[0]
    target = tmp_path / "t.img"
    with open(target, "wb") as f:
        f.truncate(96 * MiB)
    subprocess.run(["sfdisk", "-q", str(target)], input=sfdisk_script(disk), text=True, check=True,
                   capture_output=True)
    _, new = parse_sfdisk_dump(subprocess.run(["sfdisk", "--dump", str(target)], text=True, check=True,
                                              capture_output=True).stdout)
    assert [(p.number, p.type, p.bootable) for p in new] == [(p.number, p.type, p.bootable) for p in parts]
    assert new[2].size > parts[2].size and new[4].size > parts[4].size  # extended and the last logical grew
    assert new[3].size == parts[3].size
    assert disk.partuuid(disk.partitions[0]) == f"{header['label-id'][2:].lower():0>8}-01"


LSBLK = {"blockdevices": [{"name": "sda", "path": "/dev/sda", "type": "disk", "children": [
    {"name": "sda1", "path": "/dev/sda1", "type": "part", "fstype": "vfat", "label": "ESP", "uuid": "AB12-CD34"},
    {"name": "sda2", "path": "/dev/sda2", "type": "part", "fstype": "ext4", "label": "root",
     "uuid": "0b5d4d6c-3b7a-4d1e-9d6b-9a0c7c1e2f3a"},
    {"name": "sda3", "path": "/dev/sda3", "type": "part", "fstype": "swap", "label": None,
     "uuid": "11111111-2222-3333-4444-555555555555"}]}]}


def sda_layout(tmp_path: Path) -> Layout:
    dump = make_disk(tmp_path / "m.img", 64, 'label: gpt\n,16M,U\n,32M,L\nstart=100352, type=S, name="swap"\n')
    dump = dump.replace(str(tmp_path / "m.img"), "/dev/sda")  # as prepareclient sees a real disk
    save(tmp_path / "si", "sda", 64 * MiB, dump, LSBLK)
    return read_layout(tmp_path / "si")


@pytest.mark.parametrize(("spec", "number"), [
    ("UUID=0b5d4d6c-3b7a-4d1e-9d6b-9a0c7c1e2f3a", 2), ("UUID=ab12-cd34", 1), ("LABEL=root", 2),
    ("/dev/disk/by-label/ESP", 1), ("PARTLABEL=swap", 3), ("/dev/sda2", 2),
])
def test_fstab_sources_resolve_to_partitions(tmp_path: Path, spec: str, number: int) -> None:
    where = resolve(spec, sda_layout(tmp_path))
    assert where is not None and where.disk == 0 and where.partition.number == number


def test_partuuid_and_unknown_sources(tmp_path: Path) -> None:
    layout = sda_layout(tmp_path)
    p2 = layout.disks[0].partitions[1]
    assert resolve(f"PARTUUID={p2.uuid}", layout).partition.number == 2  # type: ignore[union-attr]
    assert resolve("UUID=ffffffff-0000-0000-0000-000000000000", layout) is None
    assert resolve("server:/export", layout) is None


def test_plan_formats_what_fstab_mounts_and_names_lines_it_cannot_place(tmp_path: Path) -> None:
    layout = sda_layout(tmp_path)
    fstab = ("# comment\nUUID=0b5d4d6c-3b7a-4d1e-9d6b-9a0c7c1e2f3a / ext4 errors=remount-ro 0 1\n"
             "LABEL=ESP /boot/efi vfat umask=0077 0 1\nPARTLABEL=swap none swap sw 0 0\n"
             "proc /proc proc defaults 0 0\nserver:/home /home nfs defaults 0 0\n"
             "/swapfile none swap sw 0 0\nLABEL=usb /mnt/usb ext4 noauto 0 0\n")
    p = plan(layout, fstab, DISK_FILESYSTEMS)
    assert [(pl.partition.number, e.mountpoint) for pl, e in p.filesystems] == [(2, "/"), (1, "/boot/efi"),
                                                                                (3, "none")]
    assert "swap file /swapfile" in p.warnings[0] and "/mnt/usb" in p.warnings[1]
    with pytest.raises(LayoutError, match="line 2: UUID=dead"):
        plan(layout, "LABEL=root / ext4 defaults 0 1\nUUID=dead /data ext4 defaults 0 2\n", DISK_FILESYSTEMS)
    with pytest.raises(LayoutError, match=r"is f2fs; the autoinstall script makes .*btrfs"):  # btrfs is made now
        plan(layout, "LABEL=root / f2fs defaults 0 1\n", DISK_FILESYSTEMS)
    with pytest.raises(LayoutError, match="no on-disk entry for /"):
        plan(layout, "LABEL=ESP /boot/efi vfat defaults 0 1\n", DISK_FILESYSTEMS)


def test_missing_prepareclient_output_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(LayoutError, match="prepareclient has not been run"):
        read_layout(tmp_path)
