"""Software RAID and LVM in the saved layout: real-format `mdadm --detail --scan --verbose`,
`mdadm --detail --export`, LVM JSON reports and lsblk JSON in; fstab sources on md arrays and logical
volumes resolved; the autoinstall script makes the arrays, volume groups and volumes again (names,
levels, metadata, sizes in extents, the last data LV taking the rest), GRUB on every disk /boot is on,
and refuses what it cannot make."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from appliance.images.autoinstall import AutoinstallError, ScriptSettings, generate, installable_plan
from appliance.images.layout import (
    Layout,
    LayoutError,
    Placement,
    Volume,
    mapper_name,
    parse_md_export,
    parse_md_scan,
    plan,
    read_layout,
    resolve_volume,
)
from appliance.images.mounts import DISK_FILESYSTEMS
from state.images import ImageVersion
from tests.installer_sh import prelude

PREPARECLIENT = Path(__file__).resolve().parents[2] / "appliance" / "data" / "prepareclient"
MiB = 1 << 20

# Two disks: p1 a small RAID1 for /boot (md1), p2 a RAID1 PV (md0) of a VG with root, swap and home.
SFDISK = {n: (f"label: dos\nlabel-id: 0x0000aa0{i}\ndevice: /dev/{n}\nunit: sectors\nsector-size: 512\n\n"
              f"/dev/{n}1 : start=        2048, size=      524288, type=fd, bootable\n"
              f"/dev/{n}2 : start=      526336, size=    20445184, type=fd\n")
          for i, n in enumerate(("sda", "sdb"))}
SCAN = ("ARRAY /dev/md0 level=raid1 num-devices=2 metadata=1.2 name=master:0 "
        "UUID=0a1b2c3d:4e5f6a7b:8c9d0e1f:2a3b4c5d\n   devices=/dev/sda2,/dev/sdb2\n"
        "ARRAY /dev/md/boot level=raid1 num-devices=2 metadata=1.0 name=master:boot "
        "UUID=11111111:22222222:33333333:44444444\n   devices=/dev/sda1,/dev/sdb1\n")
EXPORT_MD0 = ("MD_LEVEL=raid1\nMD_DEVICES=2\nMD_METADATA=1.2\nMD_UUID=0a1b2c3d:4e5f6a7b:8c9d0e1f:2a3b4c5d\n"
              "MD_DEVNAME=0\nMD_NAME=master:0\nMD_DEVICE_dev_sdb2_ROLE=1\nMD_DEVICE_dev_sdb2_DEV=/dev/sdb2\n"
              "MD_DEVICE_dev_sda2_ROLE=0\nMD_DEVICE_dev_sda2_DEV=/dev/sda2\n")
EXPORT_BOOT = ("MD_LEVEL=raid1\nMD_DEVICES=2\nMD_METADATA=1.0\nMD_UUID=11111111:22222222:33333333:44444444\n"
               "MD_DEVNAME=boot\nMD_NAME=master:boot\nMD_DEVICE_dev_sda1_ROLE=0\nMD_DEVICE_dev_sda1_DEV=/dev/sda1\n"
               "MD_DEVICE_dev_sdb1_ROLE=1\nMD_DEVICE_dev_sdb1_DEV=/dev/sdb1\n")
EXTENT = 4 * MiB


def lvm_report(kind: str, rows: list[dict[str, str]]) -> str:
    """LVM 2.03's --reportformat json layout."""
    body = ",\n".join("                  {" + ", ".join(f'"{k}":"{v}"' for k, v in r.items()) + "}" for r in rows)
    return (f'  {{\n      "report": [\n          {{\n              "{kind}": [\n{body}\n'
            "              ]\n          }\n      ]\n  }\n")


PVS = lvm_report("pv", [{"pv_name": "/dev/md0", "vg_name": "vg-sys", "pv_size": str(2490 * EXTENT),
                         "dev_size": str(10464788480), "pv_uuid": "aaaaaa-bbbb-cccc-dddd-eeee-ffff-000000"}])
VGS = lvm_report("vg", [{"vg_name": "vg-sys", "vg_uuid": "bbbbbb-bbbb-cccc-dddd-eeee-ffff-000000",
                         "vg_extent_size": str(EXTENT), "vg_extent_count": "2490", "vg_size": str(2490 * EXTENT),
                         "pv_count": "1", "lv_count": "3"}])
# home has two segments (it was extended); rows come sorted by name, not by place on the PV.
LVS = lvm_report("lv", [
    {"vg_name": "vg-sys", "lv_name": "home", "lv_uuid": "h", "lv_size": str(1200 * EXTENT), "lv_attr": "-wi-ao----",
     "segtype": "linear", "devices": "/dev/md0(1500)"},
    {"vg_name": "vg-sys", "lv_name": "home", "lv_uuid": "h", "lv_size": str(1200 * EXTENT), "lv_attr": "-wi-ao----",
     "segtype": "linear", "devices": "/dev/md0(2300)"},
    {"vg_name": "vg-sys", "lv_name": "root", "lv_uuid": "r", "lv_size": str(1250 * EXTENT), "lv_attr": "-wi-ao----",
     "segtype": "linear", "devices": "/dev/md0(0)"},
    {"vg_name": "vg-sys", "lv_name": "swap_1", "lv_uuid": "s", "lv_size": str(250 * EXTENT),
     "lv_attr": "-wi-ao----", "segtype": "linear", "devices": "/dev/md0(1250)"},
])
ROOT_UUID = "6c3b1d2e-7f40-4a51-9b62-0c7d8e9fa0b1"
BOOT_UUID = "9e8d7c6b-5a49-4837-a261-50f4e3d2c1b0"


def lsblk(disk: str) -> dict[str, object]:
    """lsblk --json of one disk of the RAID master: arrays and LVs are the partitions' children."""
    lvs = [{"name": "vg--sys-root", "path": "/dev/mapper/vg--sys-root", "type": "lvm", "fstype": "ext4",
            "label": None, "uuid": ROOT_UUID},
           {"name": "vg--sys-swap_1", "path": "/dev/mapper/vg--sys-swap_1", "type": "lvm", "fstype": "swap",
            "label": None, "uuid": "0f0f0f0f-1e1e-4d4d-8c8c-2b2b2b2b2b2b"},
           {"name": "vg--sys-home", "path": "/dev/mapper/vg--sys-home", "type": "lvm", "fstype": "xfs",
            "label": "home", "uuid": "12345678-90ab-4cde-8f01-234567890abc"}]
    return {"blockdevices": [{"name": disk, "path": f"/dev/{disk}", "type": "disk", "children": [
        {"name": f"{disk}1", "path": f"/dev/{disk}1", "type": "part", "fstype": "linux_raid_member",
         "children": [{"name": "md127", "path": "/dev/md127", "type": "raid1", "fstype": "ext2", "label": "boot",
                       "uuid": BOOT_UUID}]},
        {"name": f"{disk}2", "path": f"/dev/{disk}2", "type": "part", "fstype": "linux_raid_member",
         "children": [{"name": "md0", "path": "/dev/md0", "type": "raid1", "fstype": "LVM2_member",
                       "children": lvs}]}]}]}


def save_master(si: Path, lsblk_json: bool = True) -> None:
    (si / "disks").mkdir(parents=True)
    (si / "disks/order").write_text("sda 10737418240\nsdb 10737418240\n")
    for name, dump in SFDISK.items():
        (si / f"disks/{name}.sfdisk").write_text(dump)
        if lsblk_json:
            (si / f"disks/{name}.lsblk.json").write_text(json.dumps(lsblk(name)))
    (si / "md").mkdir()
    (si / "md/scan").write_text(SCAN)
    (si / "md/md0.export").write_text(EXPORT_MD0)
    (si / "md/boot.export").write_text(EXPORT_BOOT)
    (si / "lvm").mkdir()
    for name, text in (("pvs", PVS), ("vgs", VGS), ("lvs", LVS)):
        (si / f"lvm/{name}.json").write_text(text)


FSTAB = (f"/dev/mapper/vg--sys-root / ext4 errors=remount-ro 0 1\nUUID={BOOT_UUID} /boot ext2 defaults 0 2\n"
         "LABEL=home /home xfs defaults 0 2\n/dev/vg-sys/swap_1 none swap sw 0 0\n")


def master_tree(tmp_path: Path, tools: tuple[str, ...] = ("mdadm", "lvm")) -> Path:
    tree = tmp_path / "tree"
    save_master(tree / "etc/systemimager")
    (tree / "etc/fstab").write_text(FSTAB)
    (tree / "usr/sbin").mkdir(parents=True)
    for tool in tools:
        (tree / "usr/sbin" / tool).write_text("")
    return tree


def test_md_scan_and_export_are_parsed_with_members_in_slot_order() -> None:
    assert parse_md_scan(SCAN) == ["/dev/md0", "/dev/md/boot"]
    a = parse_md_export("/dev/md0", EXPORT_MD0)
    assert (a.level, a.raid_devices, a.metadata, a.name, a.short_name) == ("raid1", 2, "1.2", "master:0", "0")
    assert [(m.device, m.role) for m in a.members] == [("/dev/sda2", "0"), ("/dev/sdb2", "1")]
    with pytest.raises(LayoutError, match="MD_LEVEL"):
        parse_md_export("/dev/md9", "MD_UUID=x\n")


def test_read_layout_records_arrays_and_volume_groups_with_their_filesystems(tmp_path: Path) -> None:
    tree = master_tree(tmp_path)
    layout = read_layout(tree / "etc/systemimager")
    assert [a.device for a in layout.md] == ["/dev/md0", "/dev/md/boot"]
    # lsblk knows the boot array by its kernel name (md127): found as its members' raid1 child.
    assert layout.md[0].fstype == "LVM2_member"
    assert (layout.md[1].fstype, layout.md[1].label, layout.md[1].fsuuid) == ("ext2", "boot", BOOT_UUID)
    (vg,) = layout.vgs
    assert (vg.name, vg.extent_size, vg.extent_count, vg.pvs) == ("vg-sys", EXTENT, 2490, ("/dev/md0",))
    assert [(lv.name, lv.start, lv.size // EXTENT) for lv in vg.lvs] == [("root", 0, 1250), ("swap_1", 1250, 250),
                                                                        ("home", 1500, 1200)]
    assert vg.lvs[0].fsuuid == ROOT_UUID and vg.lvs[2].label == "home"
    assert Layout.from_json(layout.to_json()) == layout
    assert Layout.from_json(json.dumps({"disks": [], "firmware": "bios"})).md == ()  # layouts saved before md


@pytest.mark.parametrize(("spec", "what"), [
    ("/dev/mapper/vg--sys-root", "lv:root"), ("/dev/vg-sys/root", "lv:root"), (f"UUID={ROOT_UUID}", "lv:root"),
    ("/dev/disk/by-id/dm-name-vg--sys-home", "lv:home"), ("LABEL=home", "lv:home"),
    ("/dev/md0", "md:/dev/md0"), ("/dev/md/0", "md:/dev/md0"), ("/dev/md/boot", "md:/dev/md/boot"),
    (f"UUID={BOOT_UUID}", "md:/dev/md/boot"), ("LABEL=boot", "md:/dev/md/boot"),
])
def test_fstab_sources_resolve_to_arrays_and_logical_volumes(tmp_path: Path, spec: str, what: str) -> None:
    v = resolve_volume(spec, read_layout(master_tree(tmp_path) / "etc/systemimager"))
    assert v is not None
    assert (f"lv:{v.lv.name}" if v.lv else f"md:{v.md.device}" if v.md else None) == what


def test_mapper_names_double_dashes() -> None:
    assert mapper_name("vg-sys", "swap_1") == "vg--sys-swap_1" and mapper_name("vg0", "my-lv") == "vg0-my--lv"


def boot_by_device(tmp_path: Path) -> Path:
    """The master's fstab names /boot by its array (lsblk saw the array as md127, not by its name)."""
    tree = master_tree(tmp_path)
    (tree / "etc/fstab").write_text(FSTAB.replace(f"UUID={BOOT_UUID}", "/dev/md/boot"))
    return tree


def test_plan_builds_both_arrays_and_the_volume_group_from_four_partitions(tmp_path: Path) -> None:
    tree = boot_by_device(tmp_path)
    layout = read_layout(tree / "etc/systemimager")
    p = plan(layout, (tree / "etc/fstab").read_text(), DISK_FILESYSTEMS)
    assert all(isinstance(place, Volume) for place, _ in p.filesystems)
    assert [a.device for a in p.stack.arrays] == ["/dev/md/boot", "/dev/md0"]
    assert [vg.name for vg in p.stack.vgs] == ["vg-sys"]
    assert sorted((pl.disk, pl.partition.number) for pl in p.partitions) == [(0, 1), (0, 2), (1, 1), (1, 2)]


def test_the_script_makes_arrays_volumes_and_grub_on_both_disks(tmp_path: Path) -> None:
    tree = boot_by_device(tmp_path)
    layout = read_layout(tree / "etc/systemimager")
    iv = ImageVersion("raid", 1, str(tree), 0.0, layout=layout.to_json())
    text, _ = generate(iv, ScriptSettings())
    assert "make_md MD0 '/dev/md/boot' 'raid1' 2 '1.0' 'boot' \"$DEV0_1\" \"$DEV1_1\"" in text
    assert "make_md MD1 '/dev/md0' 'raid1' 2 '1.2' '0' \"$DEV0_2\" \"$DEV1_2\"" in text
    assert f"make_vg 'vg-sys' {EXTENT} \"$MD1\"" in text
    # root and swap keep their extents (scaled against the master's 2490); home, the last data LV, the rest.
    lines = [line for line in text.splitlines() if line.startswith("make_lv ")]
    assert lines == ["make_lv LV0_0 'vg-sys' 'root' 1250 2490", "make_lv LV0_1 'vg-sys' 'swap_1' 250 2490",
                     "make_lv LV0_2 'vg-sys' 'home' rest 2490"]
    assert 'mkfs_fs xfs "$LV0_2" \'home\'' in text and 'mkfs_fs swap "$LV0_1"' in text
    assert 'mount_fs ext4 "$LV0_0" \'/\'' in text and 'mount_fs ext2 "$MD0" \'/boot\'' in text
    assert 'printf \'%s\\t%s\\n\' "UUID=$LVUUID0_0" \'/\text4' in text
    assert 'BOOT_DISKS="$DISK0 $DISK1"' in text and "STACKED=1" in text and "write_mdadm_conf" in text
    assert "SWAP_UUID=$LVUUID0_1" in text
    assert "/dev/sda" not in text.split("# ---- generated")[1]  # no master device in the generated part
    if shutil.which("shellcheck"):
        script = tmp_path / "raid.master"
        script.write_text(text)
        result = subprocess.run(["shellcheck", "-s", "sh", str(script)], capture_output=True, text=True)
        assert result.returncode == 0, result.stdout


def test_an_image_without_mdadm_or_lvm_cannot_boot_its_layout(tmp_path: Path) -> None:
    tree = master_tree(tmp_path, tools=("lvm",))
    layout = read_layout(tree / "etc/systemimager")
    with pytest.raises(AutoinstallError, match=r"no mdadm \(Debian package mdadm\)"):
        installable_plan(layout, tree, "raid v1")
    (tree / "usr/sbin/lvm").unlink()
    (tree / "usr/sbin/mdadm").write_text("")
    with pytest.raises(AutoinstallError, match=r"no lvm \(Debian package lvm2\)"):
        installable_plan(layout, tree, "raid v1")


def test_layouts_the_script_cannot_make_are_named(tmp_path: Path) -> None:
    tree = master_tree(tmp_path)
    si = tree / "etc/systemimager"
    layout = read_layout(si)
    fstab = (tree / "etc/fstab").read_text()
    # a partition that is an array member mounted as a filesystem too
    with pytest.raises(LayoutError, match="member of an md array"):
        plan(layout, fstab + "/dev/sda1 /mnt ext4 defaults 0 2\n", DISK_FILESYSTEMS)
    # a thin volume
    (si / "lvm/lvs.json").write_text(LVS.replace('"segtype":"linear", "devices":"/dev/md0(0)"',
                                                 '"segtype":"thin", "devices":""'))
    with pytest.raises(LayoutError, match="root is thin"):
        plan(read_layout(si), fstab, DISK_FILESYSTEMS)
    # an array whose members are on a disk prepareclient did not record
    (si / "lvm/lvs.json").write_text(LVS)
    (si / "md/md0.export").write_text(EXPORT_MD0.replace("/dev/sdb2", "/dev/sdc2"))
    with pytest.raises(LayoutError, match="member /dev/sdc2 is not a partition of a recorded disk"):
        plan(read_layout(si), fstab, DISK_FILESYSTEMS)


def test_a_plain_partition_layout_has_no_stack(tmp_path: Path) -> None:
    si = tmp_path / "si"
    (si / "disks").mkdir(parents=True)
    (si / "disks/order").write_text("sda 10737418240\n")
    (si / "disks/sda.sfdisk").write_text(SFDISK["sda"].replace("type=fd", "type=83"))
    p = plan(read_layout(si), "/dev/sda2 / ext4 defaults 0 1\n", DISK_FILESYSTEMS)
    assert p.stack.arrays == () and p.stack.vgs == () and isinstance(p.filesystems[0][0], Placement)


def stand_ins(bin_dir: Path, answers: dict[str, str]) -> None:
    """`mdadm` and `lvm` commands that print answers[command line] (and fail on any other)."""
    for tool in ("mdadm", "lvm"):
        cases = []
        for n, (line, text) in enumerate(answers.items()):
            if line.startswith(f"{tool} "):
                (bin_dir / f"{tool}.{n}").write_text(text)
                cases.append(f'"{line.removeprefix(tool + " ")}") cat {bin_dir / f"{tool}.{n}"} ;;\n')
        (bin_dir / tool).write_text('#!/bin/sh\ncase "$*" in\n' + "".join(cases)
                                    + '*) echo "unexpected: $*" >&2; exit 2 ;;\nesac\n')
        os.chmod(bin_dir / tool, 0o755)


def test_prepareclient_records_md_and_lvm_with_the_tools_it_finds(tmp_path: Path) -> None:
    """prepareclient asks mdadm and lvm (here stand-ins printing the master's answers) and saves what
    read_layout parses; without arrays or volume groups it records neither."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    answers = {"mdadm --detail --scan --verbose": SCAN, "mdadm --detail --export /dev/md0": EXPORT_MD0,
               "mdadm --detail --export /dev/md/boot": EXPORT_BOOT, "lvm vgs --noheadings -o vg_name": "  vg-sys\n",
               "lvm pvs --reportformat json --units b --nosuffix -o pv_name,vg_name,pv_size,dev_size,pv_uuid": PVS,
               "lvm vgs --reportformat json --units b --nosuffix -o vg_name,vg_uuid,vg_extent_size,vg_extent_count,"
               "vg_size,pv_count,lv_count": VGS,
               "lvm lvs --reportformat json --units b --nosuffix -o vg_name,lv_name,lv_uuid,lv_size,lv_attr,segtype,"
               "devices": LVS}
    stand_ins(bin_dir, answers)
    disks = []
    for name in ("sda", "sdb"):
        disk = tmp_path / f"{name}.img"
        with open(disk, "wb") as f:
            f.truncate(16 * MiB)
        subprocess.run(["sfdisk", "-q", str(disk)], input="label: dos\n,,fd\n", text=True, check=True)
        disks.append(str(disk))
    root = tmp_path / "root"
    root.mkdir()
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "SYSTEMIMAGER_ROOT": str(root),
           "SYSTEMIMAGER_DISKS": " ".join(disks)}
    result = subprocess.run(["sh", str(PREPARECLIENT), "--ssh"], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr
    assert "software RAID: 2 md array(s) recorded" in result.stdout and "vg-sys recorded" in result.stdout
    si = root / "etc/systemimager"
    assert (si / "md/md0.export").read_text() == EXPORT_MD0 and (si / "md/boot.export").read_text() == EXPORT_BOOT
    layout = read_layout(si)
    assert [a.device for a in layout.md] == ["/dev/md0", "/dev/md/boot"] and layout.vgs[0].name == "vg-sys"
    # No arrays, no VGs: nothing recorded (and what an earlier run recorded is gone).
    stand_ins(bin_dir, {"mdadm --detail --scan --verbose": "", "lvm vgs --noheadings -o vg_name": ""})
    result = subprocess.run(["sh", str(PREPARECLIENT), "--ssh"], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr
    assert not (si / "md").exists() and not (si / "lvm").exists()


def test_the_clones_mdadm_conf_replaces_the_masters_arrays_and_goes_into_the_initramfs(tmp_path: Path) -> None:
    target = tmp_path / "target"
    (target / "etc/mdadm").mkdir(parents=True)
    (target / "etc/mdadm/mdadm.conf").write_text(
        "HOMEHOST <system>\nMAILADDR root\nARRAY /dev/md0 metadata=1.2 name=master:0 UUID=5eed1312:0:0:1\n"
        "   devices=/dev/sda1,/dev/sdb1\nARRAY /dev/md/boot metadata=1.0 UUID=5eed1312:0:0:2\n")
    (target / "etc/initramfs-tools/conf.d").mkdir(parents=True)
    (target / "etc/initramfs-tools/conf.d/resume").write_text("RESUME=UUID=master-swap\n")
    (target / "usr/sbin").mkdir(parents=True)
    (target / "usr/sbin/update-initramfs").write_text("#!/bin/sh\nexit 1\n")  # not called: appended to
    os.chmod(target / "usr/sbin/update-initramfs", 0o755)
    (target / "boot").mkdir()
    initrd = target / "boot/initrd.img-6.1.0-50-amd64"
    initrd.write_bytes(b"\x1f\x8b original image")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    stand_ins(bin_dir, {"mdadm --detail --scan": "ARRAY /dev/md0 metadata=1.2 name=node7:0 UUID=c10e0000:1:2:3\n"})
    script = prelude("common", "report", "disks", "bootloader") + "write_mdadm_conf\nretie_to_new_disks\n"
    run = subprocess.run(["sh", "-euc", script], capture_output=True, text=True,
                         env={"PATH": f"{bin_dir}:/usr/sbin:/usr/bin:/sbin:/bin", "TARGET": str(target),
                              "SWAP_UUID": "", "STACKED": "1", "MDS": "/dev/md0 ", "STAGE": "raid"})
    assert run.returncode == 0, run.stdout + run.stderr
    assert "[initramfs] RESUME=none and the new mdadm.conf in 1 initramfs image(s)" in run.stdout
    conf = (target / "etc/mdadm/mdadm.conf").read_text()
    assert "HOMEHOST <system>\nMAILADDR root\n" in conf and "5eed1312" not in conf and "devices=" not in conf
    assert conf.endswith("ARRAY /dev/md0 metadata=1.2 name=node7:0 UUID=c10e0000:1:2:3\n")
    data = initrd.read_bytes()
    assert data.startswith(b"\x1f\x8b original image")
    tail = data[len(b"\x1f\x8b original image"):]
    at = tail.index(b"etc/mdadm/mdadm.conf\0")
    assert conf.encode() in tail[at:] and b"RESUME=none" in tail[:at]
