"""The demo master client: a small busybox system that boots from its own disk.

`build_demo_tree(root, kernel, cache_dir)` writes a complete root file system into `root`: busybox
and its applet links, `/sbin/init` printing `IMAGESERVER-INSTALLED hostname=<hostname>` on the
console, /etc (hostname, fstab, passwd, a post-install hook), and /boot with the Debian kernel, a
tiny initramfs that mounts root= and switch_roots to it, and an extlinux.conf. The kernel's driver modules for disks,
file systems and NICs go into /lib/modules too: a real system carries them, and they make the image
large enough (~25 MB) that a 16 MB disk cannot hold it.
"""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

from appliance.boot import bootenv

HERE = Path(__file__).parent
ROOT_INIT = HERE / "rootinit.sh"
INITRAMFS_INIT = HERE / "initramfs-init.sh"
MARKER = "IMAGESERVER-INSTALLED"
MASTER_HOSTNAME = "master"
# The initramfs only needs to reach the root file system.
INITRAMFS_MODULES = ("virtio_pci", "virtio_blk", "virtio_scsi", "sd_mod", "ahci", "nvme", "ext4")
# Module subtrees copied into /lib/modules/<release> of the image (as shipped, compressed).
IMAGE_MODULE_DIRS = ("kernel/fs", "kernel/drivers/block", "kernel/drivers/net/ethernet/intel",
                     "kernel/drivers/net/ethernet/realtek", "kernel/drivers/scsi", "kernel/drivers/virtio",
                     "kernel/drivers/ata", "kernel/drivers/nvme", "kernel/lib", "kernel/crypto")
KERNEL_CMDLINE = "console=ttyS0,115200 panic=-1"


def _write(path: Path, text: str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)


def extlinux_conf(release: str, root: str = "LABEL=root") -> str:
    return (f"# extlinux.conf of the demo client (root by label: the install makes a new file system)\n"
            f"DEFAULT linux\nPROMPT 0\nTIMEOUT 0\nSERIAL 0 115200\n"
            f"LABEL linux\n  LINUX /boot/vmlinuz-{release}\n  INITRD /boot/initrd.img-{release}\n"
            f"  APPEND root={root} {KERNEL_CMDLINE}\n")


def demo_initramfs(kernel: bootenv.Kernel, cache_dir: Path) -> Path:
    """The demo client's own initramfs (cached like the installer's)."""
    spec = bootenv.InitrdSpec(init=INITRAMFS_INIT.read_text(), modules=INITRAMFS_MODULES, kernel=kernel)
    return bootenv.build_initrd(spec, cache_dir)


def build_demo_tree(root: Path, kernel: bootenv.Kernel, cache_dir: Path,
                    hostname: str = MASTER_HOSTNAME) -> Path:
    """Write the demo master client's root file system into `root` (created; must not exist yet)."""
    root.mkdir(parents=True)
    for directory in ("bin", "sbin", "usr/bin", "usr/sbin", "etc", "proc", "sys", "dev", "tmp", "run",
                      "root", "mnt", "var/log", "boot/extlinux"):
        (root / directory).mkdir(parents=True, exist_ok=True)
    (root / "tmp").chmod(0o1777)
    shutil.copy2(bootenv.BUSYBOX, root / "bin/busybox")
    for applet in bootenv._busybox_applets(bootenv.BUSYBOX):  # the applet list of the same binary
        link = root / applet.lstrip("/")
        if not link.exists() and not link.is_symlink():
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(os.path.relpath(root / "bin/busybox", link.parent))
    (root / "sbin/init").unlink(missing_ok=True)
    _write(root / "sbin/init", ROOT_INIT.read_text(), 0o755)
    _write(root / "etc/hostname", f"{hostname}\n")
    _write(root / "etc/hosts", f"127.0.0.1\tlocalhost\n127.0.1.1\t{hostname}\n")
    _write(root / "etc/fstab", "# <file system> <mount point> <type> <options> <dump> <pass>\n"
                               "LABEL=root / ext4 defaults 0 1\n")
    _write(root / "etc/passwd", "root:x:0:0:root:/root:/bin/sh\n")
    _write(root / "etc/group", "root:x:0:\n")
    _write(root / "etc/os-release", 'NAME="imageserver demo client"\nID=imageserver-demo\n')
    release = kernel.release
    shutil.copy2(kernel.vmlinuz, root / f"boot/vmlinuz-{release}")
    shutil.copy2(demo_initramfs(kernel, cache_dir), root / f"boot/initrd.img-{release}")
    _write(root / "boot/extlinux/extlinux.conf", extlinux_conf(release))
    modules = root / "lib/modules" / release
    for sub in IMAGE_MODULE_DIRS:
        source = kernel.modules_dir / sub
        if source.is_dir():
            shutil.copytree(source, modules / sub, dirs_exist_ok=True)
    for name in ("modules.order", "modules.builtin", "modules.dep"):
        if (kernel.modules_dir / name).is_file():
            shutil.copy2(kernel.modules_dir / name, modules / name)
    return root


def tree_bytes(root: Path) -> int:
    """Bytes of regular files under `root` (what an install copies)."""
    total = 0
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            info = os.lstat(os.path.join(dirpath, name))
            if stat.S_ISREG(info.st_mode):
                total += info.st_size
    return total
