"""What getimage leaves out of an image: everything that is not on a real on-disk filesystem.

Input is what prepareclient saved on the master client (/etc/systemimager/mountinfo and swaps,
mount points already relative to the exported root). The rules, in order:

- "/" is always captured: it is the image (its filesystem type is not checked: a master client in
  a container or a test tree may sit on overlay or tmpfs).
- A mount whose filesystem type is not an on-disk one (proc, sysfs, tmpfs, devtmpfs, devpts, cgroup,
  nfs, cifs, fuse.*, overlay, squashfs, iso9660, autofs ... anything not in DISK_FILESYSTEMS) has its
  contents excluded; the mount point directory itself is kept so the installed system can mount there.
  An allow-list, not a deny-list: an unknown virtual filesystem is left out rather than copied.
- A bind mount (mountinfo root field other than "/") is excluded too: its data is captured where its
  filesystem is mounted normally. A btrfs subvolume mount (/home from subvol=@home: its root field is the
  subvolume, as its superblock options' subvol= say) is not a bind mount: captured.
- /proc and /sys contents are always excluded (kernel interfaces, even when not mounted).
- Runtime content: /tmp/*, /var/tmp/*, /run/*, /var/run/*, /var/lock/* (state of the running master,
  meaningless or harmful on another machine).
- Per-machine state: the "drop" entries of the installer's per-machine.paths (DHCP client DUIDs, secrets
  and leases, NetworkManager's secret key, random seeds, the persistent journal ...); the installer
  removes the same paths from every clone (images captured before an entry was listed still carry it).
- /dev: on every current system /dev is a devtmpfs mount, so its contents go by the mount rule and the
  installed system's kernel populates it at boot. A /dev that is part of the root filesystem (no
  devtmpfs: old systems, chroots, test trees) holds static device nodes by definition, and is kept.
- Swap files listed in /proc/swaps (type "file") are excluded: gigabytes of nothing; the autoinstall
  script makes a new swap file of the same size.
- Patterns given with --exclude are added last, verbatim (rsync filter syntax).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from appliance.boot.installer.per_machine import dropped

DISK_FILESYSTEMS = frozenset({
    "ext2", "ext3", "ext4", "xfs", "btrfs", "vfat", "msdos", "fat", "exfat", "reiserfs", "jfs", "f2fs",
    "ntfs", "ntfs3", "zfs", "bcachefs", "nilfs2", "hfsplus", "minix",
})
ALWAYS = ("/proc", "/sys")
RUNTIME_DIRS = ("/tmp", "/var/tmp", "/run", "/var/run", "/var/lock")

_OCTAL = re.compile(r"\\([0-7]{3})")


def _unescape(field: str) -> str:
    """The kernel writes space, tab, newline and backslash in mount points as \\040 \\011 \\012 \\134."""
    return _OCTAL.sub(lambda m: chr(int(m.group(1), 8)), field)


@dataclass(frozen=True, slots=True)
class Mount:
    mountpoint: str
    fstype: str
    source: str = ""
    root: str = "/"  # the part of the filesystem mounted here (mountinfo field 4); not "/" for bind mounts
    # the superblock options (mountinfo's last field): btrfs's subvol=/@home (not part of a mount's identity)
    options: str = field(default="", compare=False)

    @property
    def is_subvolume(self) -> bool:
        """A btrfs subvolume mounted as itself (not a directory inside one bound elsewhere)."""
        subvol = next((o[7:] for o in self.options.split(",") if o.startswith("subvol=")), None)
        return self.fstype == "btrfs" and subvol is not None and subvol.rstrip("/") == self.root.rstrip("/")


@dataclass(frozen=True, slots=True)
class Swap:
    path: str
    kind: str  # "file" | "partition"
    size_kib: int


@dataclass(frozen=True, slots=True)
class Exclude:
    pattern: str  # an rsync exclude pattern, anchored at the transfer root
    reason: str


def parse_mountinfo(text: str) -> list[Mount]:
    """/proc/self/mountinfo: "ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTS [OPTIONAL...] - FSTYPE SOURCE SUPER"."""
    out: list[Mount] = []
    for line in text.splitlines():
        fields = line.split(" ")
        if len(fields) < 7 or "-" not in fields[6:]:
            continue
        sep = fields.index("-", 6)
        fstype = fields[sep + 1] if sep + 1 < len(fields) else ""
        source = fields[sep + 2] if sep + 2 < len(fields) else ""
        options = fields[sep + 3] if sep + 3 < len(fields) else ""
        out.append(Mount(_unescape(fields[4]), fstype, _unescape(source), _unescape(fields[3]), _unescape(options)))
    return out


def parse_mounts(text: str) -> list[Mount]:
    """/proc/mounts (or /etc/mtab): "SOURCE MOUNTPOINT FSTYPE OPTS DUMP PASS"."""
    out: list[Mount] = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 3 and not line.startswith("#"):
            out.append(Mount(_unescape(fields[1]), fields[2], _unescape(fields[0])))
    return out


def parse_swaps(text: str) -> list[Swap]:
    out: list[Swap] = []
    for line in text.splitlines()[1:]:  # the first line is the header
        fields = line.split()
        if len(fields) >= 3 and fields[2].isdigit():
            out.append(Swap(_unescape(fields[0]), fields[1], int(fields[2])))
    return out


def rsync_escape(path: str) -> str:
    """Make a literal path safe inside a pattern that has wildcards (rsync honours '\\' escapes then)."""
    return re.sub(r"([\\*?\[])", r"\\\1", path)


def _contents(mountpoint: str) -> str:
    return rsync_escape(mountpoint.rstrip("/")) + "/*"


def _literal(path: str) -> str:
    """An exact path as a pattern: rsync reads '\\' as an escape only in patterns that have wildcards."""
    return rsync_escape(path) if re.search(r"[*?\[]", path) else path


def exclusions(mounts: Iterable[Mount], swaps: Iterable[Swap] = (), extra: Sequence[str] = ()) -> list[Exclude]:
    """The exclude list for a master client, each with the reason (shown by getimage)."""
    out: list[Exclude] = []
    seen: set[str] = set()

    def add(pattern: str, reason: str) -> None:
        if pattern not in seen:
            seen.add(pattern)
            out.append(Exclude(pattern, reason))

    for path in ALWAYS:
        add(_contents(path), "kernel interface")
    for m in sorted(mounts, key=lambda m: m.mountpoint):
        if m.mountpoint == "/" or not m.mountpoint.startswith("/"):
            continue
        if m.fstype not in DISK_FILESYSTEMS:
            add(_contents(m.mountpoint), f"{m.fstype} mount")
        elif m.root != "/" and not m.is_subvolume:
            add(_contents(m.mountpoint), f"bind mount of {m.root} ({m.fstype})")
    for path in RUNTIME_DIRS:
        add(_contents(path), "runtime state")
    for pattern in dropped():
        add(pattern, "per-machine state")
    for s in swaps:
        if s.kind == "file" and s.path.startswith("/"):
            add(_literal(s.path), f"swap file ({s.size_kib} KiB)")
    for pattern in extra:
        add(pattern, "--exclude")
    return out
