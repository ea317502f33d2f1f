"""A master client's disk layout (what prepareclient saved) and the image's /etc/fstab.

prepareclient leaves in /etc/systemimager/:
    disks/order              "NAME SIZE_BYTES" per recorded disk, in order
    disks/NAME.sfdisk        `sfdisk --dump` of that disk (absent: no partition table)
    disks/NAME.lsblk.json    `lsblk --json --bytes -o ...` (absent for disk image files)
    mountinfo, swaps         the mount table and swap areas, relative to the exported root
    firmware                 "uefi" or "bios"

`read_layout` turns that into a `Layout` (stored as JSON in images.layout); `resolve` maps an fstab
entry (UUID=, LABEL=, PARTUUID=, PARTLABEL=, /dev/...) to the disk and partition it lives on, which
is how the autoinstall script knows what to format and mount where.
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
class Layout:
    disks: tuple[Disk, ...] = ()
    firmware: str = "bios"
    mounts: tuple[Mount, ...] = ()
    swaps: tuple[Swap, ...] = ()

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Layout:
        data = json.loads(text)
        disks = tuple(Disk(**{**d, "partitions": tuple(Partition(**p) for p in d["partitions"])})
                      for d in data.get("disks", ()))
        return cls(disks=disks, firmware=data.get("firmware", "bios"),
                   mounts=tuple(Mount(**m) for m in data.get("mounts", ())),
                   swaps=tuple(Swap(**s) for s in data.get("swaps", ())))


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
    return Layout(
        disks=tuple(disks),
        firmware=firmware.read_text().strip() if firmware.exists() else "bios",
        mounts=tuple(parse_mountinfo(mountinfo.read_text())) if mountinfo.exists() else (),
        swaps=tuple(parse_swaps(swaps.read_text())) if swaps.exists() else (),
    )


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
class Plan:
    """How the autoinstall script rebuilds the disks: what to format and mount, and fstab's new shape."""

    layout: Layout
    filesystems: tuple[tuple[Placement, FstabEntry], ...]  # disk filesystems and swap partitions
    swapfiles: tuple[tuple[FstabEntry, int], ...]  # (entry, size in KiB)
    fstab: tuple[FstabLine, ...]
    warnings: tuple[str, ...] = field(default=())


SUPPORTED_FILESYSTEMS = frozenset({"ext2", "ext3", "ext4", "xfs", "vfat", "swap"})


def plan(layout: Layout, fstab_text: str, disk_filesystems: frozenset[str]) -> Plan:
    """Match every on-disk fstab entry to a recorded partition; raise LayoutError naming any that cannot be."""
    lines = parse_fstab(fstab_text)
    placed: list[tuple[Placement, FstabEntry]] = []
    swapfiles: list[tuple[FstabEntry, int]] = []
    warnings: list[str] = []
    used: set[tuple[int, int]] = set()
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
        where = resolve(e.spec, layout)
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
        key = (where.disk, where.partition.number)
        if key in used:
            raise LayoutError(f"fstab line {e.line}: partition {where.partition.device} is used twice")
        used.add(key)
        placed.append((where, e))
    if not any(e.mountpoint == "/" for _, e in placed):
        raise LayoutError("fstab has no on-disk entry for / (the root filesystem)")
    return Plan(layout=layout, filesystems=tuple(placed), swapfiles=tuple(swapfiles), fstab=tuple(lines),
                warnings=tuple(warnings))


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
