""""Grow the last partition" grows the last data partition, not a trailing swap partition: the swap
keeps its size and moves to the end of the target disk (MBR: with its extended container; GPT: before
the backup table), the data partition grows up to it. The autoinstall script's own sh (swap_tail and
the here-document it feeds sfdisk) is run against real sfdisk on disk image files."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from appliance.images.layout import Disk, growth, parse_sfdisk_dump, sfdisk_script
from tests.installer_sh import prelude

pytestmark = pytest.mark.skipif(shutil.which("sfdisk") is None, reason="sfdisk (fdisk package) is not installed")
MiB = 1 << 20


def master(tmp_path: Path, size_mib: int, table: str) -> Disk:
    path = tmp_path / "master.img"
    with open(path, "wb") as f:
        f.truncate(size_mib * MiB)
    subprocess.run(["sfdisk", "-q", str(path)], input=table, text=True, check=True, capture_output=True)
    header, parts = parse_sfdisk_dump(subprocess.run(["sfdisk", "--dump", str(path)], text=True, check=True,
                                                     capture_output=True).stdout)
    return Disk(name="vda", size=size_mib * MiB, label=header["label"], label_id=header.get("label-id"),
                partitions=tuple(parts))


def install_table(tmp_path: Path, disk: Disk, size_mib: int) -> dict[int, tuple[int, int, str]]:
    """The script's partitioning step on a target of `size_mib`: {number: (start, size, type)}."""
    target = tmp_path / f"target-{size_mib}.img"
    with open(target, "wb") as f:
        f.truncate(size_mib * MiB)
    g = growth(disk)
    script = (prelude("common", "report", "disks")
              + f'swap_tail TAIL0 "$1" {g.tail_span} {g.tail_start} {disk.label}\n'
              + 'sfdisk -q "$1" <<EOF_SFDISK0\n' + sfdisk_script(disk, tail_var="TAIL0") + "EOF_SFDISK0\n")
    subprocess.run(["sh", "-euc", script, "sh", str(target)], text=True, check=True, capture_output=True)
    _, parts = parse_sfdisk_dump(subprocess.run(["sfdisk", "--dump", str(target)], text=True, check=True,
                                                capture_output=True).stdout)
    return {p.number: (p.start, p.size, p.type) for p in parts}


def test_mbr_root_grows_and_the_logical_swap_keeps_its_size_at_the_end(tmp_path: Path) -> None:
    # The e2e master's shape: root, an extended partition holding the swap (p5).
    disk = master(tmp_path, 64, "label: dos\n,40M,L,*\n,,E\n,,S\n")
    old = {p.number: (p.start, p.size, p.type) for p in disk.partitions}
    g = growth(disk)
    assert g.grower is not None and g.grower.number == 1 and [p.number for p in g.tail] == [2, 5]
    new = install_table(tmp_path, disk, 256)
    assert new[5][1] == old[5][1], "the swap partition grew"
    assert new[5][0] + new[5][1] > (256 - 1) * 1024 * 2, "the swap is not at the end of the disk"
    assert new[1][0] == old[1][0] and new[1][1] == old[1][1] + (256 - 64) * 1024 * 2, "root did not grow"
    assert new[2][0] == new[1][0] + new[1][1] + g.gap and new[5][0] - new[2][0] == old[5][0] - old[2][0]
    # A target of the master's size gets the master's table.
    assert install_table(tmp_path, disk, 64) == old


def test_gpt_swap_last_keeps_its_size_before_the_backup_table(tmp_path: Path) -> None:
    disk = master(tmp_path, 64, "label: gpt\n,8M,U\n,32M,L\n,,S\n")
    old = {p.number: (p.start, p.size, p.type) for p in disk.partitions}
    new = install_table(tmp_path, disk, 200)
    assert new[3][1] == old[3][1] and new[3][0] + new[3][1] <= 200 * 1024 * 2 - 33
    assert new[3][0] + new[3][1] > (200 - 2) * 1024 * 2  # within the last MiB boundary
    assert new[1] == old[1] and new[2][0] == old[2][0] and new[2][1] > old[2][1] + 130 * 1024 * 2


def test_a_swap_partition_before_the_last_data_partition_changes_nothing(tmp_path: Path) -> None:
    disk = master(tmp_path, 64, "label: gpt\n,8M,S\n,,L\n")
    g = growth(disk)
    assert g.grower is not None and g.grower.number == 2 and not g.tail
    assert "size=" not in sfdisk_script(disk).splitlines()[-1]  # the last (data) partition fills the disk
