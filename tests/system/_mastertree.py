"""A master client's root as a directory tree, with everything an image must carry faithfully.

Hard links, relative/absolute/dangling symlinks, device nodes in a static /dev, a FIFO, user.* xattrs
and an ACL, a sparse file, a non-UTF-8 name, a 1000+ byte path and a 255-byte name, odd owners and
setuid bits, busybox as /bin/sh (so chroot hooks run), a post-install hook, and a disk image whose
GPT table (ESP, root, /srv, swap) is what prepareclient records. fstab names the partitions by
PARTUUID; /boot/efi (vfat) is listed only when this kernel can mount vfat.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

MiB = 1 << 20
DISK_TABLE = "label: gpt\n,16M,U\n,96M,L\n,320M,L\n,,S\n"  # ESP, /, /srv (xfs needs 300 MB), swap
DISK_BYTES = 456 * MiB
NON_UTF8 = b"caf\xe9-latin1"
HOOK = b"#!/bin/sh\necho \"hook ran for $HOSTNAME on $IMAGE\" > /etc/hook-ran\n"


@dataclass(frozen=True, slots=True)
class Master:
    root: Path
    disk: Path
    partuuids: tuple[str, ...]
    vfat: bool


def kernel_has(fs: str) -> bool:
    return any(line.split()[-1] == fs for line in Path("/proc/filesystems").read_text().splitlines() if line.strip())


def build_master(root: Path, disk: Path) -> Master:
    with open(disk, "wb") as f:
        f.truncate(DISK_BYTES)
    subprocess.run(["sfdisk", "-q", str(disk)], input=DISK_TABLE, text=True, check=True, capture_output=True)
    dump = subprocess.run(["sfdisk", "--dump", str(disk)], text=True, check=True, capture_output=True).stdout
    uuids = tuple(line.split("uuid=")[1].split(",")[0].strip() for line in dump.splitlines() if "uuid=" in line)
    vfat = kernel_has("vfat")

    def d(rel: str, mode: int = 0o755) -> Path:
        p = root / rel
        p.mkdir(parents=True, exist_ok=True)
        os.chmod(p, mode)
        return p

    def f(rel: str, data: bytes | str, mode: int = 0o644, owner: tuple[int, int] = (0, 0)) -> Path:
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data.encode() if isinstance(data, str) else data)
        os.chmod(p, mode)
        os.chown(p, *owner)
        return p

    for rel in ("bin", "sbin", "dev", "etc", "proc", "sys", "tmp", "run", "var/tmp", "mnt/ram", "boot/efi", "srv",
                "usr/bin", "usr/share/doc", "home/alice"):
        d(rel)
    os.chmod(root / "tmp", 0o1777)
    shutil.copy2("/bin/busybox", root / "bin/busybox")
    for applet in ("sh", "echo", "cat", "ls"):
        os.symlink("busybox", root / "bin" / applet)
    fstab = ""
    if vfat:
        fstab += f"PARTUUID={uuids[0]} /boot/efi vfat umask=0077 0 1\n"
    fstab += (f"PARTUUID={uuids[1]} / ext4 errors=remount-ro 0 1\n"
              f"PARTUUID={uuids[2]} /srv xfs defaults 0 2\n"
              f"PARTUUID={uuids[3]} none swap sw 0 0\n"
              "proc /proc proc defaults 0 0\n"
              "tmpfs /tmp tmpfs defaults 0 0\n")
    f("etc/fstab", fstab)
    f("etc/hostname", "master\n")
    f("etc/hosts", "127.0.0.1\tlocalhost\n127.0.1.1\tmaster\n")
    f("etc/motd", "welcome to the master\n")
    f("etc/passwd", "root:x:0:0:root:/root:/bin/sh\nalice:x:1234:5678::/home/alice:/bin/sh\n")
    f("etc/shadow", "root:*:19000:0:99999:7:::\n", 0o640, (0, 42))
    d("etc/systemd/network")
    # A networkd system as far as the installer can tell (it writes the network config for what the image uses).
    f("usr/lib/systemd/systemd-networkd", "#!/bin/sh\n", 0o755)
    f("etc/systemimager/post-install/10-marker", HOOK, 0o755)
    f("home/alice/notes", "private\n", 0o600, (1234, 5678))
    os.chown(root / "home/alice", 1234, 5678)
    os.chmod(root / "home/alice", 0o750)
    f("usr/bin/tool", os.urandom(4096), 0o4755)
    f("usr/bin/big", os.urandom(2 * MiB))
    os.link(root / "usr/bin/tool", root / "usr/bin/tool-hardlink")
    os.link(root / "usr/bin/tool", root / "sbin/tool-too")
    f("usr/share/doc/gone", "to be deleted in v2\n")
    f("usr/share/doc/readme", "docs\n")
    os.symlink("../share/doc/readme", root / "usr/bin/readme-rel")
    os.symlink("/etc/motd", root / "usr/bin/motd-abs")
    os.symlink("/nonexistent/target", root / "usr/bin/dangling")
    os.mknod(root / "dev/null", 0o666 | 0o020000, os.makedev(1, 3))
    os.mknod(root / "dev/loop9", 0o660 | 0o060000, os.makedev(7, 9))
    d("var/spool")
    os.mkfifo(root / "var/spool/fifo", 0o620)
    xf = f("etc/xattr-file", "has attributes\n")
    os.setxattr(xf, "user.role", b"web")
    os.setxattr(root / "etc/systemd", "user.dir-note", b"a directory attribute")
    subprocess.run(["setfacl", "-m", "u:1234:rw", str(root / "usr/share/doc/readme")], check=True)
    with open(root / "var/sparse.img", "wb") as sp:
        sp.truncate(64 * MiB)
        sp.seek(1 * MiB)
        sp.write(b"data in the middle")
        sp.seek(64 * MiB - 5)
        sp.write(b"end!\n")
    with open(os.path.join(os.fsencode(root / "home/alice"), NON_UTF8), "wb") as nu:
        nu.write(b"latin-1 file name\n")
    deep = root / "usr/share/deep"
    for i in range(20):
        deep = deep / f"level-{i:02d}-{'x' * 40}"
    deep.mkdir(parents=True)
    (deep / ("n" * 255)).write_text("at the end of a long path\n")
    f("srv/www/index.html", "<h1>served from /srv (xfs on the installed machine)</h1>\n")
    f("boot/efi/EFI/BOOT/readme.txt", "on the ESP\n")
    f("tmp/runtime-junk", "must not be captured\n")
    f("run/pidfile", "123\n")
    # rsync compares a symlink's or special file's mtime with the source's to the second before setting it,
    # so one made in the same second as the pull keeps its own nanoseconds: give them a time in the past.
    for entry in root.rglob("*"):
        if entry.is_symlink() or not (entry.is_dir() or entry.is_file()):
            os.utime(entry, ns=(1_600_000_000_123_456_789, 1_600_000_000_123_456_789), follow_symlinks=False)
    return Master(root=root, disk=disk, partuuids=uuids, vfat=vfat)


def mount_virtual(root: Path) -> list[Path]:
    """proc at /proc and a tmpfs (with a file) at /mnt/ram inside the tree; returns what to unmount."""
    mounted: list[Path] = []
    subprocess.run(["mount", "-t", "proc", "proc", str(root / "proc")], check=True)
    mounted.append(root / "proc")
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(root / "mnt/ram")], check=True)
    mounted.append(root / "mnt/ram")
    (root / "mnt/ram/in-ram").write_text("tmpfs content must not be captured\n")
    return mounted


def unmount(paths: list[Path]) -> None:
    for p in reversed(paths):
        subprocess.run(["umount", "-l", str(p)], capture_output=True)
