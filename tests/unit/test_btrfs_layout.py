"""btrfs masters: prepareclient records the subvolumes and the default subvolume, the plan makes one
filesystem of the fstab lines that mount its subvolumes, and the script recreates and mounts them."""

from __future__ import annotations

import os
import shutil
import subprocess
from importlib.resources import files
from pathlib import Path

import pytest

from appliance.images.autoinstall import ScriptSettings, generate
from appliance.images.layout import Layout, LayoutError, parse_btrfs_record, plan, read_layout
from appliance.images.mounts import DISK_FILESYSTEMS, exclusions, parse_mountinfo
from state.images import ImageVersion
from tests.e2e._debianmaster import btrfs_stand_in

PREPARECLIENT = str(files("appliance") / "data" / "prepareclient")
GPT = "label: gpt\nsize=16MiB, type=U\nsize=64MiB, type=L\ntype=S\n"
FSTAB = ("PARTUUID={p2} / btrfs compress=zstd:1,noatime,subvol=@ 0 0\n"
         "PARTUUID={p1} /boot/efi vfat umask=0077 0 1\n"
         "PARTUUID={p2} /home btrfs compress=zstd:1,noatime,subvol=/@home 0 0\n"
         "PARTUUID={p3} none swap sw 0 0\n")

pytestmark = pytest.mark.skipif(shutil.which("sfdisk") is None, reason="sfdisk (fdisk package) is not installed")


def master(tmp_path: Path, default: str = "@") -> tuple[Path, Layout]:
    """A master tree recorded by the real prepareclient, its btrfs answered by the stand-in."""
    disk = tmp_path / "vda.img"
    with open(disk, "wb") as f:
        f.truncate(128 << 20)
    subprocess.run(["sfdisk", "-q", str(disk)], input=GPT, text=True, check=True, capture_output=True)
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    btrfs_stand_in(tmp_path / "bin", ("@", "@home", "@snapshots", "@/var/lib/portables"), default)
    env = {**os.environ, "PATH": f"{tmp_path / 'bin'}:{os.environ['PATH']}", "SYSTEMIMAGER_ROOT": str(root),
           "SYSTEMIMAGER_DISKS": str(disk), "SYSTEMIMAGER_BTRFS": f"{disk}2={root}"}
    result = subprocess.run(["sh", PREPARECLIENT, "--ssh"], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr
    assert "btrfs: 1 filesystem(s) recorded" in result.stdout
    layout = read_layout(root / "etc/systemimager")
    disk0 = layout.disks[0]
    p1, p2, p3 = (disk0.partuuid(p) for p in disk0.partitions)
    (root / "etc/fstab").write_text(FSTAB.format(p1=p1, p2=p2, p3=p3))
    return root, layout


def test_prepareclient_records_subvolumes_and_the_default(tmp_path: Path) -> None:
    _, layout = master(tmp_path)
    (fs,) = layout.btrfs
    assert fs.device == f"{tmp_path / 'vda.img'}2"
    assert fs.subvolumes == ("@", "@home", "@snapshots", "@/var/lib/portables") and fs.default == "@"
    assert Layout.from_json(layout.to_json()) == layout
    (tmp_path / "top").mkdir()
    _, top = master(tmp_path / "top", default="")
    assert top.btrfs[0].default == ""


def test_one_filesystem_with_every_subvolume_parents_first_and_fstab_retied(tmp_path: Path) -> None:
    root, layout = master(tmp_path)
    p = plan(layout, (root / "etc/fstab").read_text(), DISK_FILESYSTEMS)
    assert [e.mountpoint for _, e in p.filesystems] == ["/", "/boot/efi", "none"]
    (b,) = p.btrfs
    assert b.subvolumes == ("@", "@home", "@snapshots", "@/var/lib/portables") and b.default == "@"
    assert [e.mountpoint for e in b.mounts] == ["/home"]
    iv = ImageVersion("btrfs", 1, str(root), 0.0, layout=layout.to_json())
    text, _ = generate(iv, ScriptSettings())
    assert "mkfs_fs btrfs \"$DEV0_2\" ''" in text
    assert "make_subvolumes \"$DEV0_2\" '@' '@' '@home' '@snapshots' '@/var/lib/portables'" in text
    assert "mount_fs btrfs \"$DEV0_2\" '/' 'compress=zstd:1,subvol=@'" in text
    assert "mount_fs btrfs \"$DEV0_2\" '/home' 'compress=zstd:1,subvol=/@home'" in text
    body = text.split("# ---- generated")[1]
    assert body.index("'/' 'compress") < body.index("'/home' 'compress")  # / first, then by depth
    # Both lines of the filesystem get its new UUID, their options as the master had them.
    assert body.count('"UUID=$UUID0_2"') == 2
    assert "'/home\tbtrfs\tcompress=zstd:1,noatime,subvol=/@home\t0\t0'" in body
    # A command line naming the master's partitions by PARTUUID is retied to this machine's.
    p2 = layout.disks[0].partuuid(layout.disks[0].partitions[1])
    assert f'RETIE_UUIDS="$RETIE_UUIDS {p2}=$(new_partuuid "$DISK0" 2 gpt)"' in body


def test_subvolumes_from_fstab_alone_and_what_cannot_be_made(tmp_path: Path) -> None:
    _, recorded = master(tmp_path)
    layout = Layout(**{**{f: getattr(recorded, f) for f in recorded.__dataclass_fields__}, "btrfs": ()})
    fstab = (tmp_path / "root/etc/fstab").read_text()
    (b,) = plan(layout, fstab, DISK_FILESYSTEMS).btrfs
    assert b.subvolumes == ("@", "@home") and b.default == ""
    with pytest.raises(LayoutError, match="subvolid="):
        plan(layout, fstab.replace("subvol=/@home", "subvolid=257"), DISK_FILESYSTEMS)
    with pytest.raises(LayoutError, match="cannot be made again"):
        plan(layout, fstab.replace("subvol=/@home", "subvol=@/../x"), DISK_FILESYSTEMS)
    with pytest.raises(LayoutError, match="used twice"):
        plan(layout, fstab.replace("/home btrfs", "/home xfs"), DISK_FILESYSTEMS)
    with pytest.raises(LayoutError, match="device"):
        parse_btrfs_record("default @\nsubvolume @\n", "btrfs/0.subvolumes")


def test_a_subvolume_mount_is_captured_and_a_bind_mount_is_not() -> None:
    mountinfo = ("29 1 0:27 /@ / rw,noatime shared:1 - btrfs /dev/vda2 rw,compress=zstd:1,subvolid=256,subvol=/@\n"
                 "30 29 0:27 /@home /home rw,noatime shared:2 - btrfs /dev/vda2 rw,subvolid=257,subvol=/@home\n"
                 "31 29 0:27 /@/srv/www /var/www rw shared:3 - btrfs /dev/vda2 rw,subvolid=256,subvol=/@\n")
    excluded = {e.pattern: e.reason for e in exclusions(parse_mountinfo(mountinfo))}
    assert "/home/*" not in excluded
    assert excluded["/var/www/*"].startswith("bind mount of /@/srv/www")
