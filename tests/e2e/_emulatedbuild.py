"""What makes debootstrap's second stage cheaper when every command of it runs under qemu-user (a foreign-arch
master, tests/e2e/_debianmaster.py): the emulated work is cut, the tree that comes out is the same.

- The tree's package list is cut to the stanzas debootstrap installs: its second stage parses that list with
  its Perl pkgdetails (emulated: about a minute a parse, three parses) to fill dpkg's available file and to
  resolve each pre-dependency. The list is pruned from the master afterwards in any case.
- dpkg's build settings (_debianmaster's, as for every master: no fsync, none of the files the master drops
  anyway) matter most here: fewer files written emulated, and the kernel's depmod reads fewer modules.
- The .debs' data repacked uncompressed here (natively, before the second stage): dpkg-deb's xz decompression
  emulated is the most of the kernel package's unpack (its modules are about 400 MB).
- The ssh host keys made here (openssh-server's postinst makes only the missing ones): an RSA key emulated
  takes tens of seconds.
- No initramfs while packages are configured (INITRD=No: the kernel's postinst.d hook skips it; initramfs-tools'
  trigger then finds no initramfs to update): the caller builds it once, at the end, then links it as the
  kernel's postinst would have (link_initramfs).
"""

from __future__ import annotations

import lzma
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

# The second stage's environment: the kernel's initramfs hook does nothing (/etc/kernel/postinst.d/initramfs-tools)
SECOND_STAGE_ENV = {"INITRD": "No"}


def trim_package_lists(root: Path) -> int:
    """Cut the first stage's Packages lists in `root` to the stanzas of the packages it chose to install
    (debootstrap/required and debootstrap/base); returns how many stanzas are kept."""
    wanted = set()
    for name in ("required", "base"):
        wanted.update((root / "debootstrap" / name).read_text().split())
    kept = 0
    for packages in (root / "var/lib/apt/lists").glob("*_Packages"):
        stanzas = packages.read_text().split("\n\n")
        chosen = [s for s in stanzas if _package_name(s) in wanted]
        packages.write_text("\n\n".join(chosen) + "\n\n")
        kept += len(chosen)
    return kept


def _package_name(stanza: str) -> str:
    for line in stanza.splitlines():
        if line.startswith("Package:"):
            return line.partition(":")[2].strip()
    return ""


SSH_HOST_KEY_TYPES = ("rsa", "ecdsa", "ed25519")  # what openssh-server's postinst makes (sshd_config's default)


def make_ssh_host_keys(root: Path) -> None:
    """The tree's ssh host keys, made by this box's ssh-keygen as the postinst in the tree would make them."""
    ssh = root / "etc/ssh"
    ssh.mkdir(parents=True, exist_ok=True)
    for kind in SSH_HOST_KEY_TYPES:
        subprocess.run(["ssh-keygen", "-q", "-f", str(ssh / f"ssh_host_{kind}_key"), "-N", "", "-t", kind],
                       check=True, capture_output=True)


def link_initramfs(root: Path) -> None:
    """/initrd.img and /initrd.img.old beside /vmlinuz and /vmlinuz.old, naming the initramfs of the same kernel:
    what linux-update-symlinks (the kernel's postinst) makes when the initramfs exists at its time."""
    for kernel_link in ("vmlinuz", "vmlinuz.old"):
        link = root / kernel_link
        if not link.is_symlink():
            continue
        target = os.readlink(link).replace("vmlinuz-", "initrd.img-")
        initrd_link = root / kernel_link.replace("vmlinuz", "initrd.img")
        if (root / target).exists() and not initrd_link.is_symlink():
            os.symlink(target, initrd_link)


AR_MAGIC = b"!<arch>\n"


# Repacked from this size: the kernel's (about 60 MB, 340 MB unpacked). The others are under 3 MB: little
# emulated decompression to save, and repacking all of them writes some 250 MB more here.
UNCOMPRESS_FROM_BYTES = 8 << 20


def uncompress_debs(root: Path, from_bytes: int = UNCOMPRESS_FROM_BYTES) -> int:
    """Each .deb of `from_bytes` or more that the second stage installs (debootstrap/debpaths) whose data.tar is
    xz-compressed, rewritten with the same members and an uncompressed data.tar (dpkg-deb reads either);
    returns how many."""
    done = 0
    for line in (root / "debootstrap/debpaths").read_text().splitlines():
        deb = root / line.split()[1].lstrip("/")
        if deb.stat().st_size >= from_bytes and _uncompress_deb(deb):
            done += 1
    return done


def _uncompress_deb(deb: Path) -> bool:
    with open(deb, "rb") as f:
        if f.read(len(AR_MAGIC)) != AR_MAGIC:
            return False
        members = list(_ar_members(f))
        if not any(name == "data.tar.xz" for name, _, _ in members):
            return False
        new = deb.with_name(f".{deb.name}.tmp")
        with open(new, "wb") as out:
            out.write(AR_MAGIC)
            for name, offset, size in members:
                f.seek(offset)
                if name == "data.tar.xz":
                    with lzma.LZMAFile(_Limited(f, size)) as data:
                        _ar_add(out, "data.tar", data)
                else:
                    _ar_add(out, name, _Limited(f, size))
    os.replace(new, deb)
    return True


def _ar_members(f: BinaryIO) -> Iterator[tuple[str, int, int]]:
    """(name, data offset, size) of each member of the ar archive `f` (positioned after the magic)."""
    while header := f.read(60):
        name, size = header[:16].decode().strip().rstrip("/"), int(header[48:58])
        offset = f.tell()
        yield name, offset, size
        f.seek(offset + size + size % 2)


def _ar_add(out: BinaryIO, name: str, data: BinaryIO) -> None:
    """Append a member to the ar archive `out`: its header written once its size is known."""
    header_at = out.tell()
    out.write(b" " * 60)
    shutil.copyfileobj(data, out, 1 << 20)
    size = out.tell() - header_at - 60
    if size % 2:
        out.write(b"\n")
    end = out.tell()
    out.seek(header_at)
    out.write(f"{name:<16}{0:<12}{0:<6}{0:<6}{'100644':<8}{size:<10}`\n".encode())
    out.seek(end)


class _Limited:
    """The next `size` bytes of a file, as a readable stream."""

    def __init__(self, f: BinaryIO, size: int) -> None:
        self.f, self.left = f, size

    def read(self, n: int = -1) -> bytes:
        n = self.left if n < 0 else min(n, self.left)
        data = self.f.read(n)
        self.left -= len(data)
        return data
