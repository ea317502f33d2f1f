"""A Debian 12 master on software RAID1 + LVM for the RAID e2e test, derived from the cached master.

The tree: the cached master (tests/e2e/_debianmaster.py) with mdadm and lvm2 installed by apt in a
chroot (their initramfs-tools hooks then assemble md arrays and activate LVM at boot) and an fstab that
mounts / from the logical volume VG/LV, a VG whose only PV is /dev/md0: a RAID1 (metadata 1.2) of
partition 1 of each of two disks. /boot lives inside the root LV (GRUB reads md and LVM itself).

What cannot be real here is the master's running md array and volume group: the host kernel has no
raid1 module and loop devices get no partition nodes (LAB.md), so this master's "disks" are two files
holding only partition tables, as for the other real-OS masters. prepareclient records the md and LVM
layout by asking `mdadm` and `lvm`; for the test it finds `stand_ins()` first on PATH: small commands
that print what mdadm 4.2 and LVM 2.03 print on such a master (`mdadm --detail --scan --verbose`,
`mdadm --detail --export`, `lvm pvs|vgs|lvs --reportformat json --units b --nosuffix`), in the
tools' own formats, for devices named as sfdisk names the disk files' partitions. Everything on the
install side is real: the installer's own mdadm and lvm build the array and the volumes in the VM.

Cached under /var/cache/imageserver/test/debian-master-raid/<hash>/root, keyed by the master's key and
RECIPE_VERSION (bump it when the recipe changes).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from tests.e2e import _debianmaster as dm
from tests.e2e._kernelswap import _in_chroot, _prune

RECIPE_VERSION = 2  # 2: dpkg without fsync or docs while building (_kernelswap._in_chroot)
VG = "vgraid"
LV = "root"
MD = "md0"
MD_UUID = "5eed1312:0000aaaa:1111bbbb:2222cccc"  # the master's array; every clone gets its own
DISK_MB = 1280
LABEL_IDS = ("0x5eed2001", "0x5eed2002")
# One partition per disk (type fd: Linux raid autodetect), the whole disk after the 1 MiB GRUB gap.
TABLES = tuple(f"label: dos\nlabel-id: {lid}\nstart=2048, type=fd, bootable\n" for lid in LABEL_IDS)
EXTENT = 4 << 20
FSTAB = ("# <file system> <mount point> <type> <options> <dump> <pass>\n"
         f"/dev/mapper/{VG}-{LV} / ext4 errors=remount-ro 0 1\n")
RAID_REPORT_MARKER = "RAID-REPORT"

# The md and LVM facts of the running system, on the serial console after the machine's own report.
RAID_REPORT_SCRIPT = f"""#!/bin/sh
md=$(sed -n 's/^\\(md[0-9]*\\) : \\([a-z-]*\\) \\([a-z0-9]*\\) .*/\\1,\\2,\\3/p' /proc/mdstat | head -n 1)
state=$(grep -o '\\[[0-9]*/[0-9]*\\] \\[[U_]*\\]' /proc/mdstat | head -n 1 | tr ' ' ,)
members=$(ls /sys/block/{MD}/slaves 2>/dev/null | tr '\\n' , )
uuid=$(mdadm --detail --export /dev/{MD} 2>/dev/null | sed -n 's/^MD_UUID=//p')
conf=$(grep -c "^ARRAY .*UUID=$uuid" /etc/mdadm/mdadm.conf)
echo "{RAID_REPORT_MARKER} root=$(findmnt -no SOURCE /) md=$md state=$state members=$members uuid=$uuid \\
conf=$conf end"
"""
RAID_REPORT_SERVICE = """[Unit]
Description=imageserver e2e: report md and LVM on the serial console
After=local-fs.target systemd-user-sessions.service

[Service]
Type=oneshot
StandardOutput=tty
TTYPath=/dev/ttyS0
ExecStart=/usr/local/sbin/imageserver-raid-report

[Install]
WantedBy=multi-user.target
"""


@dataclass(frozen=True, slots=True)
class RaidMaster:
    root: Path
    disks: tuple[Path, Path]
    machine_id: str
    bin_dir: Path  # the stand-in mdadm and lvm prepareclient finds first on PATH


def cache_key() -> str:
    inputs = f"{dm.cache_key()}|{RECIPE_VERSION}|{FSTAB}|{RAID_REPORT_SERVICE}|{RAID_REPORT_SCRIPT}"
    return hashlib.sha256(inputs.encode()).hexdigest()[:16]


def _make(root: Path) -> None:
    # mdadm's postinst writes /etc/mdadm/mdadm.conf; the initramfs hooks of both run on install.
    # A resolver hiccup leaves apt without lists (update still exits 0): try a few times.
    _in_chroot(root, "for i in 1 2 3 4 5; do apt-get -q update >/dev/null 2>&1\n"
                     "  apt-cache show mdadm lvm2 >/dev/null 2>&1 && break; sleep 5; done\n"
                     "apt-get -q -y --no-install-recommends install mdadm lvm2 >/dev/null\n"
                     "apt-get clean\n")
    (root / "etc/fstab").write_text(FSTAB)
    # The master's own array in its mdadm.conf (the clone must get its own, not this one).
    conf = root / "etc/mdadm/mdadm.conf"
    text = conf.read_text() if conf.exists() else ""
    conf.write_text(text + f"ARRAY /dev/{MD} metadata=1.2 name={dm.HOSTNAME}:0 UUID={MD_UUID}\n")
    (root / "etc/initramfs-tools/conf.d/resume").write_text("RESUME=none\n")
    script = root / "usr/local/sbin/imageserver-raid-report"
    script.parent.mkdir(parents=True, exist_ok=True)
    script.write_text(RAID_REPORT_SCRIPT)
    os.chmod(script, 0o755)
    unit = root / "etc/systemd/system/imageserver-raid-report.service"
    unit.write_text(RAID_REPORT_SERVICE)
    link = root / "etc/systemd/system/multi-user.target.wants" / unit.name
    link.unlink(missing_ok=True)
    os.symlink(f"/etc/systemd/system/{unit.name}", link)
    _prune(root)


def build(cache_dir: Path) -> Path:

    def make(work: Path) -> None:
        master = dm.build(cache_dir)
        dm._run(["rsync", "-aHAX", "--numeric-ids", f"{master}/", f"{work / 'root'}/"])
        _make(work / "root")

    return dm.cached_build(cache_dir / "debian-master-raid" / cache_key(), make) / "root"


def _sh_heredoc(name: str, text: str) -> str:
    return f"cat <<'EOF_{name}'\n{text.rstrip()}\nEOF_{name}\n"


def stand_ins(bin_dir: Path, disks: tuple[Path, Path]) -> None:
    """mdadm and lvm as they answer on the master (see the module doc): real formats, fixed values."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    members = [f"{d}1" for d in disks]  # sfdisk's name for partition 1 of a disk file
    sectors = (DISK_MB << 20) // 512 - 2048
    pv_bytes = (sectors - 2048) * 512 - 8 * 512 * 1024  # md data offset (1 MiB here) and bitmap room
    extents = pv_bytes // EXTENT
    scan = (f"ARRAY /dev/{MD} level=raid1 num-devices=2 metadata=1.2 name={dm.HOSTNAME}:0 UUID={MD_UUID}\n"
            f"   devices={','.join(members)}\n")
    export = "".join([
        "MD_LEVEL=raid1\nMD_DEVICES=2\nMD_METADATA=1.2\n", f"MD_UUID={MD_UUID}\n", "MD_DEVNAME=0\n",
        f"MD_NAME={dm.HOSTNAME}:0\n",
        *(f"MD_DEVICE_{m.strip('/').replace('/', '_').replace('.', '_')}_ROLE={i}\n"
          f"MD_DEVICE_{m.strip('/').replace('/', '_').replace('.', '_')}_DEV={m}\n" for i, m in enumerate(members))])

    def report(kind: str, rows: list[dict[str, str]]) -> str:
        """LVM's JSON report layout (lvm 2.03: one object per row on one line)."""
        lines = ",\n".join("                  {" + ", ".join(f'"{k}":"{v}"' for k, v in r.items()) + "}"
                           for r in rows)
        return (f'  {{\n      "report": [\n          {{\n              "{kind}": [\n{lines}\n'
                "              ]\n          }\n      ]\n  }\n")

    pvs = report("pv", [{"pv_name": f"/dev/{MD}", "vg_name": VG, "pv_size": str(extents * EXTENT),
                         "dev_size": str(pv_bytes), "pv_uuid": "dvC0Sm-0000-1111-2222-3333-4444-555555"}])
    vgs = report("vg", [{"vg_name": VG, "vg_uuid": "Ab12Cd-0000-1111-2222-3333-4444-555555",
                         "vg_extent_size": str(EXTENT), "vg_extent_count": str(extents),
                         "vg_size": str(extents * EXTENT), "pv_count": "1", "lv_count": "1"}])
    lvs = report("lv", [{"vg_name": VG, "lv_name": LV, "lv_uuid": "Zz99Yy-0000-1111-2222-3333-4444-555555",
                         "lv_size": str(extents * EXTENT), "lv_attr": "-wi-ao----", "segtype": "linear",
                         "devices": f"/dev/{MD}(0)"}])
    json_args = "--reportformat json --units b --nosuffix -o"
    mdadm = ("#!/bin/sh\n# stand-in: what mdadm 4.2 prints on the RAID master (tests/e2e/_raidmaster.py)\n"
             'case "$*" in\n'
             f'"--detail --scan --verbose") {_sh_heredoc("SCAN", scan)} ;;\n'
             f'"--detail --export /dev/{MD}") {_sh_heredoc("EXPORT", export)} ;;\n'
             '*) echo "mdadm stand-in: unexpected arguments: $*" >&2; exit 2 ;;\nesac\n')
    lvm = ("#!/bin/sh\n# stand-in: what LVM 2.03 prints on the RAID master (tests/e2e/_raidmaster.py)\n"
           'case "$*" in\n'
           f'"vgs --noheadings -o vg_name") echo "  {VG}" ;;\n'
           f'"pvs {json_args} pv_name,vg_name,pv_size,dev_size,pv_uuid") {_sh_heredoc("PVS", pvs)} ;;\n'
           f'"vgs {json_args} vg_name,vg_uuid,vg_extent_size,vg_extent_count,vg_size,pv_count,lv_count") '
           f'{_sh_heredoc("VGS", vgs)} ;;\n'
           f'"lvs {json_args} vg_name,lv_name,lv_uuid,lv_size,lv_attr,segtype,devices") {_sh_heredoc("LVS", lvs)} ;;\n'
           '*) echo "lvm stand-in: unexpected arguments: $*" >&2; exit 2 ;;\nesac\n')
    for name, text in (("mdadm", mdadm), ("lvm", lvm)):
        (bin_dir / name).write_text(text)
        os.chmod(bin_dir / name, 0o755)


def new_master(cache_dir: Path, work: Path) -> RaidMaster:
    cached = build(cache_dir)
    root = work / "raid-master-root"
    dm._run(["rsync", "-aHAX", "--numeric-ids", f"{cached}/", f"{root}/"])
    dm.reports_before_getty(root)
    disks = (work / "raid-master-disk0.img", work / "raid-master-disk1.img")
    for disk, table in zip(disks, TABLES, strict=True):
        with open(disk, "wb") as f:
            f.truncate(DISK_MB << 20)
        dm._run(["sfdisk", "-q", str(disk)], input=table)
    bin_dir = work / "raid-master-bin"
    stand_ins(bin_dir, disks)
    return RaidMaster(root=root, disks=disks, machine_id=dm.MASTER_MACHINE_ID, bin_dir=bin_dir)
