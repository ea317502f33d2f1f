"""A master client's disk layout (what prepareclient saved) and the image's /etc/fstab.

prepareclient leaves in /etc/systemimager/:
    disks/order              "NAME SIZE_BYTES" per recorded disk, in order
    disks/NAME.sfdisk        `sfdisk --dump` of that disk (absent: no partition table)
    disks/NAME.lsblk.json    `lsblk --json --bytes -o ...` (absent for disk image files)
    mountinfo, swaps         the mount table and swap areas, relative to the exported root
    firmware                 "uefi" or "bios"
    md/scan, md/NAME.export  software RAID: `mdadm --detail --scan --verbose`, and per array
                             `mdadm --detail --export` (absent: no md arrays on the master)
    lvm/{pvs,vgs,lvs}.json   LVM: `lvm pvs|vgs|lvs --reportformat json --units b --nosuffix -o ...`
    btrfs/N.subvolumes       btrfs: per filesystem "device DEV", "default PATH" (empty: the top level) and
                             "subvolume PATH" lines (`btrfs subvolume list` and `get-default`; paths from
                             the top level)

`read_layout` turns that into a `Layout` (stored as JSON in images.layout); `resolve` maps an fstab
entry (UUID=, LABEL=, PARTUUID=, PARTLABEL=, /dev/...) to the disk and partition it lives on, and
`resolve_volume` one on an md array or an LVM logical volume (/dev/md0, /dev/mapper/VG-LV, /dev/VG/LV,
or its filesystem's UUID/LABEL as lsblk saw it), which is how the autoinstall script knows what to
build, format and mount where.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from appliance.images.mounts import Mount, Swap, parse_mountinfo, parse_swaps


class LayoutError(ValueError):
    """The saved layout or the fstab cannot be read or does not fit together; the message says where."""


@dataclass(frozen=True, slots=True)
class Partition:
    number: int
    start: int  # sectors
    size: int  # sectors
    type: str  # GPT type GUID or MBR type code (hex, no 0x), as sfdisk prints it
    uuid: str | None = None  # GPT partition GUID (PARTUUID)
    name: str | None = None  # GPT partition name (PARTLABEL)
    attrs: str | None = None
    bootable: bool = False
    device: str | None = None  # the partition's device on the master (/dev/sda1)
    fstype: str | None = None  # from lsblk, when the master had it
    label: str | None = None
    fsuuid: str | None = None


EXTENDED_TYPES = frozenset({"5", "f", "85"})
ESP_TYPES = frozenset({"c12a7328-f81f-11d2-ba4b-00a0c93ec93b", "ef"})
BIOS_BOOT_TYPE = "21686148-6e49-6f44-744e-656564454649"  # GPT "BIOS boot" partition (GRUB's core.img on GPT)


@dataclass(frozen=True, slots=True)
class Disk:
    name: str  # on the master: "sda", "vda", "nvme0n1", or a file name
    size: int  # bytes
    label: str | None = None  # "gpt" | "dos" | None (no partition table)
    label_id: str | None = None
    sector_size: int = 512
    partitions: tuple[Partition, ...] = ()

    def partuuid(self, p: Partition) -> str | None:
        """PARTUUID as the kernel shows it: the GPT GUID, or for MBR '<disk id>-<nn>'."""
        if self.label == "gpt":
            return p.uuid.lower() if p.uuid else None
        if self.label == "dos" and self.label_id:
            return f"{self.label_id.lower().removeprefix('0x'):0>8}-{p.number:02x}"
        return None


@dataclass(frozen=True, slots=True)
class MdMember:
    device: str  # on the master: /dev/sda1 (as sfdisk names the partition)
    role: str  # "0", "1" ... (its slot), "spare", "journal"


@dataclass(frozen=True, slots=True)
class MdArray:
    """A software RAID array of the master (`mdadm --detail --export`)."""

    device: str  # /dev/md0 or /dev/md/NAME, as `mdadm --detail --scan` names it
    level: str  # raid1, raid0, raid10, raid5, raid6, linear
    raid_devices: int
    metadata: str  # 1.2, 1.0, 0.90 ...
    members: tuple[MdMember, ...] = ()
    name: str | None = None  # MD_NAME, "host:0"
    uuid: str | None = None  # the master's array UUID (a clone's array gets its own)
    fstype: str | None = None  # what lsblk saw on the array itself
    label: str | None = None
    fsuuid: str | None = None

    @property
    def short_name(self) -> str:
        """The part of MD_NAME after "host:" ("0"), else the device's last component ("md0")."""
        return (self.name or "").rpartition(":")[2] or self.device.rsplit("/", 1)[-1]


@dataclass(frozen=True, slots=True)
class LogicalVolume:
    name: str
    size: int  # bytes
    start: int = 0  # its first extent on its first PV: LVs are made again in this (physical) order
    segtype: str = "linear"
    attr: str = ""
    fstype: str | None = None  # from lsblk (/dev/mapper/VG-LV)
    label: str | None = None
    fsuuid: str | None = None


@dataclass(frozen=True, slots=True)
class VolumeGroup:
    name: str
    extent_size: int  # bytes
    extent_count: int
    pvs: tuple[str, ...] = ()  # devices on the master: /dev/md0, /dev/sda2
    lvs: tuple[LogicalVolume, ...] = ()  # in physical order


@dataclass(frozen=True, slots=True)
class BtrfsFilesystem:
    """A btrfs filesystem of the master as prepareclient recorded it: its subvolumes and default subvolume."""

    device: str  # the device it was mounted from on the master (/dev/vda2)
    subvolumes: tuple[str, ...] = ()  # paths from the top level: "@", "@home", "@/.snapshots"
    default: str = ""  # the default subvolume's path; "" is the top level (what mkfs.btrfs leaves)


def mapper_name(vg: str, lv: str) -> str:
    """Device-mapper's name of an LV: VG-LV with every '-' inside a name doubled."""
    return f"{vg.replace('-', '--')}-{lv.replace('-', '--')}"


@dataclass(frozen=True, slots=True)
class Layout:
    disks: tuple[Disk, ...] = ()
    firmware: str = "bios"
    mounts: tuple[Mount, ...] = ()
    swaps: tuple[Swap, ...] = ()
    md: tuple[MdArray, ...] = ()
    vgs: tuple[VolumeGroup, ...] = ()
    btrfs: tuple[BtrfsFilesystem, ...] = ()

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Layout:
        data = json.loads(text)
        disks = tuple(Disk(**{**d, "partitions": tuple(Partition(**p) for p in d["partitions"])})
                      for d in data.get("disks", ()))
        md = tuple(MdArray(**{**a, "members": tuple(MdMember(**m) for m in a["members"])})
                   for a in data.get("md", ()))
        vgs = tuple(VolumeGroup(**{**v, "pvs": tuple(v["pvs"]), "lvs": tuple(LogicalVolume(**lv) for lv in v["lvs"])})
                    for v in data.get("vgs", ()))
        return cls(disks=disks, firmware=data.get("firmware", "bios"),
                   mounts=tuple(Mount(**m) for m in data.get("mounts", ())),
                   swaps=tuple(Swap(**s) for s in data.get("swaps", ())), md=md, vgs=vgs,
                   btrfs=tuple(BtrfsFilesystem(**{**b, "subvolumes": tuple(b["subvolumes"])})
                               for b in data.get("btrfs", ())))

    def md_array(self, device: str) -> MdArray | None:
        return next((a for a in self.md if a.device == device or _md_aliases(a) & {device}), None)

    def partition_at(self, device: str) -> Placement | None:
        """The recorded partition whose master device is `device`."""
        for i, disk in enumerate(self.disks):
            for p in disk.partitions:
                if p.device == device:
                    return Placement(i, p)
        return None


def _md_aliases(a: MdArray) -> set[str]:
    """Names the same array goes by on the master: /dev/md0, /dev/md/0, /dev/md/NAME."""
    names = {a.device}
    short = a.short_name
    names.add(f"/dev/md/{short}")
    if a.device.startswith("/dev/md/"):
        names.add(f"/dev/md{short}" if short.isdigit() else a.device)
    elif a.device.startswith("/dev/md") and a.device[7:].isdigit():
        names.add(f"/dev/md/{a.device[7:]}")
    return names


# --- sfdisk --dump -----------------------------------------------------------------------------------

_PART_LINE = re.compile(r"^(?P<dev>\S+)\s*:\s*(?P<fields>.*)$")


def _dev_number(dev: str) -> int:
    m = re.search(r"(\d+)$", dev)
    if not m:
        raise LayoutError(f"cannot tell the partition number of {dev!r}")
    return int(m.group(1))


def parse_sfdisk_dump(text: str) -> tuple[dict[str, str], list[Partition]]:
    """Header fields (label, label-id, unit, sector-size, ...) and partitions of an `sfdisk --dump`."""
    header: dict[str, str] = {}
    parts: list[Partition] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        m = _PART_LINE.match(line)
        if m and "=" in m["fields"] and ("start=" in m["fields"] or "size=" in m["fields"]):
            values: dict[str, str] = {}
            flags: set[str] = set()
            for item in m["fields"].split(","):
                key, sep, value = item.strip().partition("=")
                if sep:
                    values[key.strip()] = value.strip().strip('"')
                elif key.strip():
                    flags.add(key.strip())
            try:
                parts.append(Partition(
                    number=_dev_number(m["dev"]), start=int(values["start"]), size=int(values["size"]),
                    type=values.get("type", "83").lower(), uuid=values.get("uuid"), name=values.get("name"),
                    attrs=values.get("attrs"), bootable="bootable" in flags, device=m["dev"]))
            except (KeyError, ValueError) as e:
                raise LayoutError(f"sfdisk dump line {raw!r}: {e}") from None
            continue
        key, sep, value = line.partition(":")
        if sep:
            header[key.strip()] = value.strip()
    if "label" not in header and parts:
        raise LayoutError("sfdisk dump has partitions but no 'label:' line")
    return header, parts


def _lsblk_fs(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """lsblk JSON -> {partition device path: its row}, flattened through children."""
    out: dict[str, dict[str, Any]] = {}

    def walk(rows: Sequence[dict[str, Any]]) -> None:
        for row in rows:
            path = row.get("path") or (f"/dev/{row['name']}" if row.get("name") else None)
            if path:
                out[path] = row
            walk(row.get("children") or ())

    walk(doc.get("blockdevices") or ())
    return out


def read_disk(si_dir: Path, name: str, size: int) -> Disk:
    dump = si_dir / "disks" / f"{name}.sfdisk"
    if not dump.exists():
        return Disk(name=name, size=size)
    header, parts = parse_sfdisk_dump(dump.read_text())
    lsblk_file = si_dir / "disks" / f"{name}.lsblk.json"
    rows: dict[str, dict[str, Any]] = {}
    if lsblk_file.exists():
        try:
            rows = _lsblk_fs(json.loads(lsblk_file.read_text()))
        except (ValueError, AttributeError) as e:
            raise LayoutError(f"{lsblk_file}: not lsblk JSON ({e})") from None
    enriched = []
    for p in parts:
        row = rows.get(p.device or "", {})
        enriched.append(Partition(**{**asdict(p), "fstype": row.get("fstype"), "label": row.get("label"),
                                     "fsuuid": row.get("uuid")}))
    return Disk(name=name, size=size, label=header.get("label"), label_id=header.get("label-id"),
                sector_size=int(header.get("sector-size", "512")), partitions=tuple(enriched))


def read_layout(si_dir: Path) -> Layout:
    """The layout prepareclient saved in `si_dir` (an image's etc/systemimager, or a fetched copy)."""
    order = si_dir / "disks" / "order"
    if not order.exists():
        raise LayoutError(f"{order} is missing: prepareclient has not been run on the master client")
    disks = []
    for line in order.read_text().splitlines():
        fields = line.split()
        if len(fields) != 2 or not fields[1].isdigit():
            raise LayoutError(f"{order}: bad line {line!r}")
        disks.append(read_disk(si_dir, fields[0], int(fields[1])))
    mountinfo = si_dir / "mountinfo"
    swaps = si_dir / "swaps"
    firmware = si_dir / "firmware"
    rows = _all_lsblk_rows(si_dir)
    return Layout(
        disks=tuple(disks),
        firmware=firmware.read_text().strip() if firmware.exists() else "bios",
        mounts=tuple(parse_mountinfo(mountinfo.read_text())) if mountinfo.exists() else (),
        swaps=tuple(parse_swaps(swaps.read_text())) if swaps.exists() else (),
        md=read_md(si_dir, rows),
        vgs=read_lvm(si_dir, rows),
        btrfs=read_btrfs(si_dir),
    )


def _all_lsblk_rows(si_dir: Path) -> dict[str, dict[str, Any]]:
    """Every device row of every recorded disk's lsblk JSON (md arrays and LVs are children of their
    partitions there, with their filesystems' UUIDs and labels); each row also gets "_parents", the
    paths of the rows it is a child of (an array shows under each of its members)."""
    rows: dict[str, dict[str, Any]] = {}

    def walk(children: Sequence[dict[str, Any]], parent: str | None) -> None:
        for row in children:
            path = row.get("path") or (f"/dev/{row['name']}" if row.get("name") else None)
            if not path:
                continue
            seen = rows.setdefault(path, {**row, "_parents": set()})
            if parent:
                seen["_parents"].add(parent)
            walk(row.get("children") or (), path)

    for f in sorted((si_dir / "disks").glob("*.lsblk.json")):
        try:
            walk(json.loads(f.read_text()).get("blockdevices") or (), None)
        except (ValueError, AttributeError) as e:
            raise LayoutError(f"{f}: not lsblk JSON ({e})") from None
    return rows


def _md_row(a: MdArray, rows: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """lsblk's row of an array: by one of its names, else the md child of its members (lsblk shows the
    kernel's name, /dev/md127, for what mdadm calls /dev/md/boot)."""
    for name in sorted(_md_aliases(a)):
        if name in rows:
            return rows[name]
    members = {m.device for m in a.members}
    for row in rows.values():
        if str(row.get("type", "")).startswith(("raid", "linear")) and row["_parents"] & members:
            return row
    return {}


# --- mdadm ------------------------------------------------------------------------------------------

def parse_md_scan(text: str) -> list[str]:
    """Array devices of `mdadm --detail --scan [--verbose]` ("ARRAY /dev/md0 level=raid1 ...")."""
    return [f[1] for line in text.splitlines() if len(f := line.split()) >= 2 and f[0] == "ARRAY"]


def parse_md_export(device: str, text: str) -> MdArray:
    """`mdadm --detail --export DEVICE`: MD_LEVEL, MD_DEVICES, MD_METADATA, MD_UUID, MD_NAME and
    MD_DEVICE_<dev>_ROLE / MD_DEVICE_<dev>_DEV per member."""
    values: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.strip().partition("=")
        if sep:
            values[key] = value.strip().strip("'\"")
    try:
        level, count = values["MD_LEVEL"], int(values["MD_DEVICES"])
    except (KeyError, ValueError) as e:
        raise LayoutError(f"mdadm --detail --export {device}: no MD_LEVEL/MD_DEVICES ({e})") from None
    members = []
    for key, dev in values.items():
        if key.startswith("MD_DEVICE_") and key.endswith("_DEV"):
            role = values.get(key.removesuffix("_DEV") + "_ROLE", "spare")
            members.append(MdMember(device=dev, role=role))
    members.sort(key=lambda m: (not m.role.isdigit(), int(m.role) if m.role.isdigit() else 0, m.device))
    return MdArray(device=device, level=level, raid_devices=count, metadata=values.get("MD_METADATA", "1.2"),
                   members=tuple(members), name=values.get("MD_NAME"), uuid=values.get("MD_UUID"))


def read_md(si_dir: Path, rows: dict[str, dict[str, Any]] | None = None) -> tuple[MdArray, ...]:
    scan = si_dir / "md" / "scan"
    if not scan.exists():
        return ()
    arrays = []
    for device in parse_md_scan(scan.read_text()):
        export = si_dir / "md" / f"{device.rsplit('/', 1)[-1]}.export"
        if not export.exists():
            raise LayoutError(f"{export} is missing (prepareclient records one per array of {scan})")
        a = parse_md_export(device, export.read_text())
        row = _md_row(a, rows or {})
        arrays.append(MdArray(**{**asdict(a), "members": a.members, "fstype": row.get("fstype"),
                                 "label": row.get("label"), "fsuuid": row.get("uuid")}))
    return tuple(arrays)


# --- btrfs ------------------------------------------------------------------------------------------

_SUBVOLUME = re.compile(r"[^\s'\"\\]+")


def subvolume_path(path: str, where: str) -> str:
    """A subvolume path from the top level ("@home"; fstab's subvol=/@home too), checked: the install script
    creates it under the new filesystem's top level, so it may not climb out or hold quotes or blanks."""
    clean = path.strip("/")
    if not clean or not _SUBVOLUME.fullmatch(clean) or ".." in clean.split("/"):
        raise LayoutError(f"{where}: btrfs subvolume path {path!r} cannot be made again")
    return clean


def parse_btrfs_record(text: str, where: str) -> BtrfsFilesystem:
    """One btrfs/N.subvolumes file of prepareclient's."""
    device, default, subvolumes = "", "", []
    for line in text.splitlines():
        key, _, value = line.strip().partition(" ")
        value = value.strip()
        if key == "device":
            device = value
        elif key == "default":
            default = subvolume_path(value, where) if value else ""
        elif key == "subvolume":
            subvolumes.append(subvolume_path(value, where))
    if not device:
        raise LayoutError(f"{where}: no 'device' line")
    return BtrfsFilesystem(device=device, subvolumes=tuple(subvolumes), default=default)


def read_btrfs(si_dir: Path) -> tuple[BtrfsFilesystem, ...]:
    d = si_dir / "btrfs"
    if not d.is_dir():
        return ()
    return tuple(parse_btrfs_record(f.read_text(), str(f)) for f in sorted(d.glob("*.subvolumes")))


# --- LVM --------------------------------------------------------------------------------------------

def _lvm_rows(path: Path, kind: str) -> list[dict[str, str]]:
    """The rows of an LVM JSON report (`--reportformat json`: {"report": [{"lv": [{...}]}]})."""
    try:
        doc = json.loads(path.read_text())
        return [row for part in doc["report"] for row in part.get(kind, ())]
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise LayoutError(f"{path}: not an LVM JSON report of {kind}s ({e})") from None


def _lvm_int(path: Path, row: dict[str, str], key: str) -> int:
    try:
        return int(float(str(row[key]).rstrip("Bb")))
    except (KeyError, ValueError) as e:
        raise LayoutError(f"{path}: {key} of {row} is not a number of bytes ({e}; --units b --nosuffix)") from None


_FIRST_EXTENT = re.compile(r"\((\d+)\)")


def read_lvm(si_dir: Path, rows: dict[str, dict[str, Any]] | None = None) -> tuple[VolumeGroup, ...]:
    d = si_dir / "lvm"
    if not (d / "vgs.json").exists():
        return ()
    pvs: dict[str, list[str]] = {}
    if (d / "pvs.json").exists():
        for row in _lvm_rows(d / "pvs.json", "pv"):
            if row.get("vg_name"):
                pvs.setdefault(row["vg_name"], []).append(row["pv_name"])
    lvs: dict[tuple[str, str], LogicalVolume] = {}
    if (d / "lvs.json").exists():
        path = d / "lvs.json"
        for row in _lvm_rows(path, "lv"):
            key = (row["vg_name"], row["lv_name"])
            m = _FIRST_EXTENT.search(row.get("devices", ""))
            start = int(m.group(1)) if m else 0
            if key in lvs:  # one row per segment: the LV starts at its lowest extent
                lvs[key] = LogicalVolume(**{**asdict(lvs[key]), "start": min(lvs[key].start, start)})
                continue
            fs = (rows or {}).get(f"/dev/mapper/{mapper_name(*key)}", {})
            lvs[key] = LogicalVolume(name=key[1], size=_lvm_int(path, row, "lv_size"), start=start,
                                     segtype=row.get("segtype", "linear"), attr=row.get("lv_attr", ""),
                                     fstype=fs.get("fstype"), label=fs.get("label"), fsuuid=fs.get("uuid"))
    groups = []
    path = d / "vgs.json"
    for row in _lvm_rows(path, "vg"):
        name = row["vg_name"]
        mine = sorted((lv for (vg, _), lv in lvs.items() if vg == name), key=lambda lv: (lv.start, lv.name))
        groups.append(VolumeGroup(name=name, extent_size=_lvm_int(path, row, "vg_extent_size"),
                                  extent_count=_lvm_int(path, row, "vg_extent_count"),
                                  pvs=tuple(pvs.get(name, ())), lvs=tuple(mine)))
    return tuple(groups)


# --- fstab ---------------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class FstabEntry:
    spec: str
    mountpoint: str
    fstype: str
    options: str = "defaults"
    dump: str = "0"
    passno: str = "0"
    line: int = 0
    raw: str = ""

    @property
    def option_set(self) -> set[str]:
        return set(self.options.split(","))


@dataclass(frozen=True, slots=True)
class FstabLine:
    """One line of fstab kept verbatim (comments, blanks) or an entry."""

    raw: str
    entry: FstabEntry | None = None


def _fstab_unescape(s: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), s)


def parse_fstab(text: str) -> list[FstabLine]:
    out: list[FstabLine] = []
    for n, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            out.append(FstabLine(raw))
            continue
        f = stripped.split()
        if len(f) < 3:
            raise LayoutError(f"fstab line {n}: {raw!r} has fewer than 3 fields")
        out.append(FstabLine(raw, FstabEntry(
            spec=_fstab_unescape(f[0]), mountpoint=_fstab_unescape(f[1]), fstype=f[2],
            options=f[3] if len(f) > 3 else "defaults", dump=f[4] if len(f) > 4 else "0",
            passno=f[5] if len(f) > 5 else "0", line=n, raw=raw)))
    return out


@dataclass(frozen=True, slots=True)
class Placement:
    disk: int  # index into Layout.disks
    partition: Partition


def resolve(spec: str, layout: Layout) -> Placement | None:
    """The partition an fstab source names, or None (a network/virtual source, or not on a recorded disk)."""
    kind, sep, value = spec.partition("=")
    if not sep:
        for prefix, k in (("/dev/disk/by-uuid/", "UUID"), ("/dev/disk/by-label/", "LABEL"),
                          ("/dev/disk/by-partuuid/", "PARTUUID"), ("/dev/disk/by-partlabel/", "PARTLABEL")):
            if spec.startswith(prefix):
                kind, value = k, spec[len(prefix):]
                break
        else:
            kind, value = "DEV", spec
    kind = kind.upper()
    value = value.strip('"')
    for i, disk in enumerate(layout.disks):
        for p in disk.partitions:
            if kind == "UUID" and p.fsuuid and p.fsuuid.lower() == value.lower():
                return Placement(i, p)
            if kind == "LABEL" and p.label is not None and p.label == value:
                return Placement(i, p)
            if kind == "PARTUUID" and (pu := disk.partuuid(p)) and pu == value.lower():
                return Placement(i, p)
            if kind == "PARTLABEL" and p.name is not None and p.name == value:
                return Placement(i, p)
            if kind == "DEV" and p.device is not None and p.device == value:
                return Placement(i, p)
    return None


@dataclass(frozen=True, slots=True)
class Volume:
    """A filesystem on an md array (`md` is set) or on an LVM logical volume (`vg` and `lv` are)."""

    md: MdArray | None = None
    vg: VolumeGroup | None = None
    lv: LogicalVolume | None = None

    @property
    def label(self) -> str | None:
        return self.md.label if self.md else self.lv.label if self.lv else None

    @property
    def describe(self) -> str:
        if self.md:
            return self.md.device
        assert self.vg and self.lv
        return f"/dev/{self.vg.name}/{self.lv.name}"


def resolve_volume(spec: str, layout: Layout) -> Volume | None:
    """The md array or LVM logical volume an fstab source names, or None."""
    kind, sep, value = spec.partition("=")
    kind = kind.upper() if sep else "DEV"
    value = value.strip('"') if sep else spec
    for prefix, k in (("/dev/disk/by-uuid/", "UUID"), ("/dev/disk/by-label/", "LABEL"),
                      ("/dev/disk/by-id/dm-name-", "DMNAME")):
        if not sep and spec.startswith(prefix):
            kind, value = k, spec[len(prefix):]

    def fs_match(fsuuid: str | None, label: str | None) -> bool:
        return ((kind == "UUID" and fsuuid is not None and fsuuid.lower() == value.lower())
                or (kind == "LABEL" and label is not None and label == value))

    for a in layout.md:
        if (kind == "DEV" and value in _md_aliases(a)) or fs_match(a.fsuuid, a.label):
            return Volume(md=a)
    for vg in layout.vgs:
        for lv in vg.lvs:
            mapper = mapper_name(vg.name, lv.name)
            if ((kind == "DEV" and value in (f"/dev/mapper/{mapper}", f"/dev/{vg.name}/{lv.name}"))
                    or (kind == "DMNAME" and value == mapper) or fs_match(lv.fsuuid, lv.label)):
                return Volume(vg=vg, lv=lv)
    return None


@dataclass(frozen=True, slots=True)
class Stack:
    """What the autoinstall script builds over the partitions before the filesystems: md arrays (in
    order: an array may be a member of none, but a PV may be an array) and volume groups."""

    arrays: tuple[MdArray, ...] = ()
    vgs: tuple[VolumeGroup, ...] = ()

    def member_partitions(self, layout: Layout) -> list[Placement]:
        """Every recorded partition an array or a volume group of the stack is made of."""
        out: list[Placement] = []
        devices = [m.device for a in self.arrays for m in a.members] + [
            pv for vg in self.vgs for pv in vg.pvs if layout.md_array(pv) is None]
        for dev in devices:
            place = layout.partition_at(dev)
            if place is not None:
                out.append(place)
        return out


RAID_LEVELS = frozenset({"raid0", "raid1", "raid4", "raid5", "raid6", "raid10", "linear"})
LV_SEGTYPES = frozenset({"linear", "striped"})


def _stack(layout: Layout, volumes: list[Volume]) -> Stack:
    """The arrays and VGs the placed volumes need, checked: members must be recorded partitions."""
    vgs: list[VolumeGroup] = []
    arrays: list[MdArray] = []
    for v in volumes:
        if v.vg is not None and v.vg not in vgs:
            vgs.append(v.vg)
        if v.md is not None and v.md not in arrays:
            arrays.append(v.md)
    for vg in vgs:
        if not vg.pvs:
            raise LayoutError(f"volume group {vg.name}: no physical volumes recorded (lvm pvs)")
        for lv in vg.lvs:
            if lv.segtype not in LV_SEGTYPES:
                raise LayoutError(f"logical volume {vg.name}/{lv.name} is {lv.segtype}; the autoinstall script "
                                  f"makes {', '.join(sorted(LV_SEGTYPES))} volumes")
        for pv in vg.pvs:
            a = layout.md_array(pv)
            if a is not None:
                if a not in arrays:
                    arrays.append(a)
            elif layout.partition_at(pv) is None:
                raise LayoutError(f"volume group {vg.name}: physical volume {pv} is neither a recorded partition "
                                  "nor an md array")
    for a in arrays:
        if a.level not in RAID_LEVELS:
            raise LayoutError(f"md array {a.device} is {a.level}; the autoinstall script makes "
                              f"{', '.join(sorted(RAID_LEVELS))}")
        for m in a.members:
            if layout.partition_at(m.device) is None:
                raise LayoutError(f"md array {a.device}: member {m.device} is not a partition of a recorded disk")
        if not any(m.role.isdigit() for m in a.members):
            raise LayoutError(f"md array {a.device}: no active member recorded")
    return Stack(arrays=tuple(arrays), vgs=tuple(vgs))


@dataclass(frozen=True, slots=True)
class BtrfsPlan:
    """A btrfs filesystem the install makes: its subvolumes (the recorded ones and every fstab subvol=, parents
    first), its default subvolume, and the fstab entries mounting it after the first (which made it)."""

    place: Placement | Volume
    subvolumes: tuple[str, ...] = ()
    default: str = ""
    mounts: tuple[FstabEntry, ...] = ()


def btrfs_mount_options(e: FstabEntry) -> str:
    """What the install mounts a btrfs entry with: its subvolume and compression (data copied in is
    compressed as on the master); nothing else of fstab's (noauto, x-systemd.*, ... mean nothing here)."""
    return ",".join(o for o in e.options.split(",") if o.startswith(("subvol=", "compress")))


def _btrfs_plans(layout: Layout, placed: list[tuple[Placement | Volume, FstabEntry]],
                 more: dict[int, list[FstabEntry]]) -> tuple[BtrfsPlan, ...]:
    out = []
    for where, e in placed:
        if e.fstype != "btrfs":
            continue
        entries = [e, *more.get(id(where), [])]
        device = where.partition.device if isinstance(where, Placement) else None
        record = next((b for b in layout.btrfs if device and b.device == device), None)
        names = list(record.subvolumes if record else ())
        for entry in entries:
            opts = dict(o.partition("=")[::2] for o in entry.options.split(","))
            if "subvolid" in opts and "subvol" not in opts:
                raise LayoutError(f"fstab line {entry.line}: {entry.mountpoint} names its btrfs subvolume by "
                                  "number (subvolid=), which a new filesystem does not keep; name it (subvol=)")
            if opts.get("subvol"):
                name = subvolume_path(opts["subvol"], f"fstab line {entry.line}")
                if name not in names:
                    names.append(name)
        ordered = tuple(sorted(dict.fromkeys(names), key=lambda n: (n.count("/"), n)))
        out.append(BtrfsPlan(place=where, subvolumes=ordered, default=record.default if record else "",
                             mounts=tuple(entries[1:])))
    return tuple(out)


@dataclass(frozen=True, slots=True)
class Plan:
    """How the autoinstall script rebuilds the disks: what to format and mount, and fstab's new shape."""

    layout: Layout
    filesystems: tuple[tuple[Placement | Volume, FstabEntry], ...]  # filesystems and swap on disk
    swapfiles: tuple[tuple[FstabEntry, int], ...]  # (entry, size in KiB)
    fstab: tuple[FstabLine, ...]
    warnings: tuple[str, ...] = field(default=())
    stack: Stack = field(default_factory=Stack)
    btrfs: tuple[BtrfsPlan, ...] = ()  # one per btrfs filesystem of `filesystems`

    @property
    def subvolume_mounts(self) -> list[tuple[Placement | Volume, FstabEntry]]:
        """fstab entries mounting (another subvolume of) a btrfs filesystem an earlier entry made."""
        return [(b.place, e) for b in self.btrfs for e in b.mounts]

    @property
    def partitions(self) -> list[Placement]:
        """Every partition the install makes something of: filesystems, swap, md members, PVs."""
        out: list[Placement] = [p for p, _ in self.filesystems if isinstance(p, Placement)]
        for p in self.stack.member_partitions(self.layout):
            if (p.disk, p.partition.number) not in {(q.disk, q.partition.number) for q in out}:
                out.append(p)
        return out


SUPPORTED_FILESYSTEMS = frozenset({"ext2", "ext3", "ext4", "xfs", "btrfs", "vfat", "swap"})


def plan(layout: Layout, fstab_text: str, disk_filesystems: frozenset[str]) -> Plan:
    """Match every on-disk fstab entry to a recorded partition; raise LayoutError naming any that cannot be."""
    lines = parse_fstab(fstab_text)
    placed: list[tuple[Placement | Volume, FstabEntry]] = []
    volumes: list[Volume] = []
    swapfiles: list[tuple[FstabEntry, int]] = []
    warnings: list[str] = []
    used: dict[tuple[int, int] | str, Placement | Volume] = {}
    btrfs_more: dict[int, list[FstabEntry]] = {}  # id(place) -> the further btrfs entries on it
    fstypes: dict[int, str] = {}
    swap_sizes = {s.path: s.size_kib for s in layout.swaps if s.kind == "file"}
    for fl in lines:
        e = fl.entry
        if e is None:
            continue
        opts = e.option_set
        if "bind" in opts or "rbind" in opts:
            continue
        on_disk = e.fstype in disk_filesystems or e.fstype == "swap"
        if e.fstype == "swap" and e.spec.startswith("/") and not e.spec.startswith("/dev/"):
            if e.spec in swap_sizes:
                swapfiles.append((e, swap_sizes[e.spec]))
            else:
                warnings.append(f"fstab line {e.line}: swap file {e.spec} was not active on the master; not created")
            continue
        if not on_disk:
            continue
        where: Placement | Volume | None = resolve(e.spec, layout) or resolve_volume(e.spec, layout)
        if where is None:
            if "noauto" in opts or "nofail" in opts:
                warnings.append(f"fstab line {e.line}: {e.spec} ({e.mountpoint}) is on no recorded disk; left as is")
                continue
            raise LayoutError(f"fstab line {e.line}: {e.spec} ({e.mountpoint}, {e.fstype}) matches no partition "
                              "of the recorded disks (prepareclient records UUID/LABEL via lsblk, PARTUUID/"
                              "PARTLABEL via sfdisk)")
        if e.fstype not in SUPPORTED_FILESYSTEMS:
            raise LayoutError(f"fstab line {e.line}: {e.mountpoint} is {e.fstype}; the autoinstall script makes "
                              f"{', '.join(sorted(SUPPORTED_FILESYSTEMS))}")
        key = where.describe if isinstance(where, Volume) else (where.disk, where.partition.number)
        if key in used:
            first = used[key]
            if e.fstype == "btrfs" and fstypes[id(first)] == "btrfs":  # another subvolume of one filesystem
                btrfs_more.setdefault(id(first), []).append(e)
                continue
            what = where.describe if isinstance(where, Volume) else f"partition {where.partition.device}"
            raise LayoutError(f"fstab line {e.line}: {what} is used twice")
        used[key] = where
        fstypes[id(where)] = e.fstype
        if isinstance(where, Volume):
            volumes.append(where)
        placed.append((where, e))
    if not any(e.mountpoint == "/" for _, e in placed) and not any(
            e.mountpoint == "/" for more in btrfs_more.values() for e in more):
        raise LayoutError("fstab has no on-disk entry for / (the root filesystem)")
    stack = _stack(layout, volumes)
    members = {(p.disk, p.partition.number) for p in stack.member_partitions(layout)}
    for where, e in placed:
        if isinstance(where, Placement) and (where.disk, where.partition.number) in members:
            raise LayoutError(f"fstab line {e.line}: {where.partition.device} is a member of an md array or "
                              "volume group, not a filesystem")
    return Plan(layout=layout, filesystems=tuple(placed), swapfiles=tuple(swapfiles), fstab=tuple(lines),
                warnings=tuple(warnings), stack=stack, btrfs=_btrfs_plans(layout, placed, btrfs_more))


SWAP_TYPES = frozenset({"82", "0657fd6d-a4ab-43c4-84e5-0933c84b4f4f"})  # MBR / GPT Linux swap


def _is_swap(p: Partition) -> bool:
    return p.type.lower() in SWAP_TYPES or p.fstype == "swap"


@dataclass(frozen=True, slots=True)
class Growth:
    """Which partition fills a bigger target disk: the last data partition, never a swap partition.
    Swap partitions after it (the tail; on MBR with the extended container holding them) keep their
    sizes and move to the end of the target disk, so the data partition can grow up to them."""

    grower: Partition | None
    tail: tuple[Partition, ...] = ()
    tail_start: int = 0  # sectors: where the tail starts on the master
    tail_span: int = 0  # sectors: from tail_start to the end of the tail's last partition

    @property
    def gap(self) -> int:
        """Sectors between the grower's end and the tail on the master (kept on the target)."""
        return self.tail_start - (self.grower.start + self.grower.size) if self.grower else 0


def growth(disk: Disk) -> Growth:
    parts = sorted(disk.partitions, key=lambda p: p.start)
    data = [p for p in parts if not (disk.label == "dos" and p.type in EXTENDED_TYPES) and not _is_swap(p)]
    if not data:
        return Growth(grower=None)
    grower = max(data, key=lambda p: p.start + p.size)
    tail = tuple(p for p in parts if p.start >= grower.start + grower.size)
    if not tail:
        return Growth(grower=grower)
    start = min(p.start for p in tail)
    return Growth(grower=grower, tail=tail, tail_start=start,
                  tail_span=max(p.start + p.size for p in tail) - start)


def _heredoc_text(s: str) -> str:
    """Text for an unquoted sh here-document: nothing expands but what we write as $((...))."""
    return s.replace("\\", "\\\\").replace("$", "\\$").replace("`", "\\`")


def sfdisk_script(disk: Disk, grow_last: bool = True, tail_var: str | None = None) -> str:
    """sfdisk input recreating `disk`'s table with the same partition numbers, types, starts and sizes.

    Disk and partition GUIDs are left out (each installed machine gets its own). With `grow_last` the
    last data partition (and its extended container) grows to fill the target disk. When swap
    partitions follow it (`growth(disk).tail`), they keep their sizes and start at the sh variable
    `tail_var` (set on the client from the target disk's size): the text is then for an *unquoted*
    here-document, with starts and the grown size as $((...)). Without `tail_var` such a table is
    recreated as it was (nothing grows).
    """
    if disk.label not in ("gpt", "dos"):
        raise LayoutError(f"disk {disk.name}: partition table type {disk.label!r} is not gpt or dos")
    lines = [f"label: {disk.label}", "unit: sectors", ""]
    parts = sorted(disk.partitions, key=lambda p: p.number)
    g = growth(disk)
    moving = grow_last and bool(g.tail) and tail_var is not None
    grows = grow_last and g.grower is not None and (not g.tail or moving)
    text = _heredoc_text if moving else (lambda x: x)
    last_is_logical = g.grower is not None and disk.label == "dos" and g.grower.number > 4
    for p in parts:
        in_tail = moving and p in g.tail
        fields = [f"start=$(({tail_var} + {p.start - g.tail_start}))"] if in_tail else [f"start={p.start}"]
        container = (disk.label == "dos" and p.type in EXTENDED_TYPES
                     and (in_tail or (last_is_logical and g.grower is not None and p.start < g.grower.start)))
        if grows and container:
            pass  # the extended container reaches the end of the disk
        elif grows and p is g.grower and moving:
            assert g.grower is not None
            fields.append(f"size=$(({tail_var} - {g.gap} - {p.start}))")
        elif not (grows and p is g.grower and not g.tail):
            fields.append(f"size={p.size}")
        fields.append(f"type={text(p.type)}")
        if disk.label == "gpt" and p.name:
            if '"' in p.name or "," in p.name:
                raise LayoutError(f"disk {disk.name}: partition name {p.name!r} cannot be written for sfdisk")
            fields.append(f'name="{text(p.name)}"')
        if disk.label == "gpt" and p.attrs:
            fields.append(f'attrs="{text(p.attrs)}"')
        if p.bootable:
            fields.append("bootable")
        # sfdisk takes the partition number from the trailing digits of the name: numbers are kept.
        lines.append(f"part{p.number} : " + ", ".join(fields))
    return "\n".join(lines) + "\n"


def required_bytes(disk: Disk) -> int:
    """The smallest target disk the table fits on (the growing last partition at its old size)."""
    end = max((p.start + p.size for p in disk.partitions), default=0)
    # GPT keeps a backup table (33 sectors) at the end of the disk.
    return (end + (34 if disk.label == "gpt" else 0)) * disk.sector_size
