"""A real Debian 12 (or 13: Recipe) master client for the e2e tests, built once by debootstrap and cached
by input hash.

What a sysadmin's master looks like: minbase + systemd, udev, the Debian kernel and initramfs-tools,
GRUB (BIOS and EFI binaries), ifupdown + dhclient, openssh-server, fdisk, rsync. Made into a master the
way one is in real life: its own identity (machine-id, ssh host keys, a random seed, a DHCP lease of
its own NIC `ens3`), fstab by PARTUUID of an MBR disk whose swap lives in an extended partition,
initramfs RESUME= naming that swap by UUID, GRUB on the serial console, a root password.

No loop devices: the master's root is a directory (prepareclient's SYSTEMIMAGER_ROOT) and its disk a
sparse file holding only the partition table (SYSTEMIMAGER_DISKS), like tests/system/_mastertree.py.
The disk's label-id is fixed, so the PARTUUIDs in the cached tree's fstab match every new disk file.

The cache entry (/var/cache/imageserver/test/debian-master/<hash>/root) is keyed by the suite, mirror,
package list and BUILD_VERSION (bump it when the recipe below changes); debootstrap's .debs are kept
in debootstrap-debs/ next to it so a recipe change does not download them again.

The Debian 13 recipes share one base (Recipe.base): the suite debootstrapped once with the packages every
one of them has (debian-base/<hash>/root, cached the same way); each master's tree is a copy of it with the
rest of its packages installed by apt, whose .debs are kept in apt-debs/<suite>/ for the next master. A
derived master's key holds its base's key.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from appliance.boot.installer.per_machine import per_machine_paths
from tests.e2e import _emulatedbuild as emulated
from tests.e2e._foreignarch import with_foreign_arch

SUITE = "bookworm"
MIRROR = "debootstrap-default"  # no mirror argument: debootstrap takes its own default Debian mirror
PACKAGES = ("systemd-sysv", "udev", "linux-image-amd64", "initramfs-tools", "kmod", "grub-pc-bin",
            "grub-efi-amd64-bin", "grub2-common", "ifupdown", "isc-dhcp-client", "openssh-server", "fdisk",
            "rsync", "iproute2",
            # Secure Boot (the SB e2e test): Debian's signed shim and GRUB; the kernel above is the signed one.
            "shim-signed", "grub-efi-amd64-signed")
BUILD_VERSION = 2  # 2: dpkg without fsync or docs while building, the initramfs built once (_masterize)
HOST_ARCH = "amd64"  # Debian's name of this box's architecture (the suite runs on amd64)
ROOT_PASSWORD = "imageserver"
HOSTNAME = "debmaster"
MASTER_IFACE = "ens3"  # the master's own NIC name: a clone's is another (Debian names virtio-net ens2 here)
LABEL_ID = "0x5eed1312"
DISK_TABLE = f"label: dos\nlabel-id: {LABEL_ID}\n,1000M,L,*\n,,E\n,,S\n"  # root; extended with swap (p5)
DISK_MB = 1152
MASTER_MACHINE_ID = "0123456789abcdef0123456789abcdef"
MASTER_SWAP_UUID = "5eed0000-1312-4000-8000-000000000005"
MASTER_RANDOM_SEED = b"\x42" * 512
REPORT_MARKER = "REALOS-REPORT"
# Pruned to keep the image (and every TCG install) small: nothing a virtio server needs.
PRUNE = ("usr/share/doc", "usr/share/man", "usr/share/info", "usr/share/locale", "var/cache/apt",
         "var/lib/apt/lists")
PRUNE_MODULES = ("drivers/gpu", "drivers/net/wireless", "drivers/media", "drivers/infiniband", "drivers/staging",
                 "drivers/net/ethernet", "drivers/bluetooth", "drivers/iio", "drivers/isdn", "drivers/hid",
                 "drivers/usb", "sound", "net/wireless", "net/mac80211", "net/bluetooth", "fs/ocfs2", "fs/btrfs")

# Prints the running system's facts on the serial console once it has an address: what the e2e test
# reads without logging in (the lab's serial console is an output file).
def report_service(console: str = "ttyS0") -> str:
    """The report unit, writing to the serial console `console` (ttyS0 on x86, the PL011 ttyAMA0 on arm64)."""
    return REPORT_SERVICE.replace("TTYPath=/dev/ttyS0", f"TTYPath=/dev/{console}")


REPORT_SERVICE = f"""[Unit]
Description=imageserver e2e: report this machine on the serial console
After=network.target systemd-user-sessions.service

[Service]
Type=oneshot
StandardOutput=tty
TTYPath=/dev/ttyS0
ExecStart=/bin/sh -c 'i=0; while [ $i -lt 90 ] && ! ip -4 -o addr show scope global | grep -q inet; do sleep 1; \\
i=$((i+1)); done; for a in $(ip -4 -o addr show scope global | tr -s " " | cut -d" " -f2,4 | tr " " "="); do \\
echo "{REPORT_MARKER} hostname=$(hostname) addr=$a machine-id=$(cat /etc/machine-id) \\
root=$(findmnt -no SOURCE /) uptime=$(cut -d" " -f1 /proc/uptime)"; done'

[Install]
WantedBy=multi-user.target
"""


# Set on each master copy (not in the cached tree, whose key holds REPORT_SERVICE): the report waits for an
# address the DHCP server gave, not dhcpcd's IPv4LL fallback (169.254/16, also scope global), which a clone
# on a loaded box can take while its DHCP exchange is still under way.
REPORT_LEASED_ADDRESS = f"""[Service]
ExecStart=
ExecStart=/bin/sh -c 'leased() {{ ip -4 -o addr show scope global | grep inet | grep -v " 169[.]254[.]"; }}; \\
i=0; while [ $i -lt 120 ] && ! leased >/dev/null; do sleep 1; i=$((i+1)); done; \\
for a in $(leased | tr -s " " | cut -d" " -f2,4 | tr " " "="); do \\
echo "{REPORT_MARKER} hostname=$(hostname) addr=$a machine-id=$(cat /etc/machine-id) \\
root=$(findmnt -no SOURCE /) uptime=$(cut -d" " -f1 /proc/uptime)"; done'
"""


class MasterBuildError(RuntimeError):
    pass


@dataclass(frozen=True, slots=True)
class DebianMaster:
    root: Path  # a per-test copy of the cached tree: prepareclient writes /etc/systemimager into it
    disk: Path  # the master's disk: only its partition table
    machine_id: str
    ssh_fingerprints: frozenset[str]


@dataclass(frozen=True, slots=True)
class Recipe:
    """What a master tree is built from: the suite, its packages, how its DHCP client and journal are set up."""

    suite: str
    packages: tuple[str, ...]
    build_version: int
    dhcp_client: str = "dhclient"  # "dhclient" (isc-dhcp-client) | "dhcpcd" (dhcpcd-base) | "networkmanager"
    persistent_journal: bool = False
    # "initramfs-tools" (resume in conf.d/resume) | "dracut" (host-only, as RHEL builds it; resume= on the kernel
    # command line in /etc/default/grub and a BLS entry, as RHEL's installer writes them)
    initramfs: str = "initramfs-tools"
    network: str = "ifupdown"  # "ifupdown" (/etc/network/interfaces) | "networkmanager" (a keyfile for ens3)
    root_fs: str = "ext4"  # the master's root: "ext4", "xfs", or "btrfs" (subvolumes @ and @home)
    # Installed by apt-get in the tree after debootstrap: debootstrap takes the first of a dependency's
    # alternatives (initramfs-tools for the kernel), apt the one asked for (dracut).
    apt_packages: tuple[str, ...] = ()
    # The packages of a debootstrapped base shared by the suite's recipes (built once, cached: build_base);
    # empty: this recipe's own debootstrap. With a base, the rest of packages and apt_packages come by apt.
    base: tuple[str, ...] = ()
    # Debian's name of the tree's CPU architecture. Another than this box's: debootstrap --foreign here, its
    # second stage and every chroot step run by qemu-user in a user namespace of their own (_foreignarch.py).
    arch: str = "amd64"

    @property
    def console(self) -> str:
        """The serial console's device: the PL011 on QEMU's arm64 virt machine, the 8250 on a PC."""
        return "ttyAMA0" if self.arch == "arm64" else "ttyS0"

    @property
    def prune_modules(self) -> tuple[str, ...]:
        """The kernel's module directories left out of the tree (a btrfs root keeps its own)."""
        return tuple(m for m in PRUNE_MODULES if not (self.root_fs == "btrfs" and m == "fs/btrfs"))


BOOKWORM = Recipe(SUITE, PACKAGES, BUILD_VERSION)
# Debian 12 for arm64 (UEFI only: GRUB's arm64-efi, installed by the installer with --target=arm64-efi), the
# minimal set that boots QEMU's virt machine to login: built on this amd64 box (tests/e2e/_foreignarch.py,
# _emulatedbuild.py). zstd: initramfs-tools' default compressor (without it gzip, several times slower emulated).
ARM64_BOOKWORM = Recipe(SUITE, ("systemd-sysv", "udev", "linux-image-arm64", "initramfs-tools", "zstd", "kmod",
                                "grub-efi-arm64-bin", "grub2-common", "ifupdown", "isc-dhcp-client",
                                "openssh-server", "fdisk", "rsync", "iproute2"), 3, arch="arm64")
# Debian 13 as trixie installs it: ifupdown with dhcpcd-base (no isc-dhcp-client), a persistent journal.
# BIOS only: no signed shim and GRUB.
_NOT_ON_TRIXIE = ("isc-dhcp-client", "shim-signed", "grub-efi-amd64-signed")
# What every Debian 13 master below has: debootstrapped once (a cold cache built each recipe's own in 5-7 min).
# No kernel: its initramfs tool differs (initramfs-tools, or dracut for the RHEL-shaped master).
TRIXIE_BASE = ("systemd-sysv", "udev", "kmod", "grub2-common", "openssh-server", "fdisk", "rsync", "iproute2")
TRIXIE = Recipe("trixie", (*(p for p in PACKAGES if p not in _NOT_ON_TRIXIE), "dhcpcd-base"), 1,
                dhcp_client="dhcpcd", persistent_journal=True, base=TRIXIE_BASE)
# Debian 13 on a btrfs root laid out as Ubuntu and openSUSE do: subvolumes @ (/) and @home (/home), mounted
# with compression, the btrfs tools in the image and the kernel's btrfs module in its initramfs.
BTRFS_TRIXIE = Recipe("trixie", (*TRIXIE.packages, "btrfs-progs"), 1, dhcp_client="dhcpcd",
                      persistent_journal=True, root_fs="btrfs", base=TRIXIE_BASE)
BTRFS_SUBVOLUMES = {"/": "@", "/home": "@home"}
BTRFS_OPTIONS = "compress=zstd:1,noatime"
HOME_FILE = "home/admin/.profile"
# A RHEL-shaped master from Debian 13's packages: UEFI (GPT, ESP, xfs root, swap), grub-efi, a host-only
# dracut initramfs, NetworkManager with a keyfile, resume=UUID= on the kernel command line in
# /etc/default/grub and in a BLS entry, a persistent journal; no ifupdown and no DHCP client of its own.
RHEL_SHAPED = Recipe("trixie", ("systemd-sysv", "udev", "kmod", "grub2-common", "openssh-server", "fdisk", "rsync",
                                "iproute2", "xfsprogs"), 2,
                     dhcp_client="networkmanager", persistent_journal=True, initramfs="dracut",
                     network="networkmanager", root_fs="xfs",
                     apt_packages=("linux-image-amd64", "dracut", "grub-efi-amd64", "network-manager"),
                     base=TRIXIE_BASE)
# The master's NetworkManager keyfile (named for its own NIC, as RHEL's installer names it).
MASTER_NM_KEYFILE = f"""[connection]
id={MASTER_IFACE}
uuid=5eed0000-1312-4000-8000-0000000000e3
type=ethernet
interface-name={MASTER_IFACE}

[ipv4]
method=auto

[ipv6]
method=auto
addr-gen-mode=stable-privacy
"""
# The master's DHCP unique identifier (DUID-LL, its MAC 52:54:00:5e:ed:13) and stable-privacy secret.
MASTER_DHCPCD_DUID = "00:03:00:01:52:54:00:5e:ed:13\n"
MASTER_DHCPCD_SECRET = b"\x5e\xed" * 32


def cache_key(recipe: Recipe = BOOKWORM) -> str:
    inputs: dict[str, object] = {"suite": recipe.suite, "mirror": MIRROR, "packages": sorted(recipe.packages),
                                 "version": recipe.build_version, "table": DISK_TABLE,
                                 "prune": [*PRUNE, *PRUNE_MODULES], "report": report_service(recipe.console)}
    if recipe.arch != HOST_ARCH:
        inputs["initramfs_modules"] = FOREIGN_INITRAMFS_MODULES
    if recipe != BOOKWORM:  # the Debian 12 key as it always was (its cached tree stays valid)
        inputs.update(dhcp_client=recipe.dhcp_client, persistent_journal=recipe.persistent_journal)
    defaults = Recipe("", (), 0)
    for key in ("initramfs", "network", "root_fs", "apt_packages", "arch"):  # the Debian 13 key as it was, too
        if getattr(recipe, key) != getattr(defaults, key):
            inputs[key] = getattr(recipe, key)
    if recipe.prune_modules != PRUNE_MODULES:
        inputs["prune"] = [*PRUNE, *recipe.prune_modules]
    if recipe.initramfs == "dracut":
        inputs["dracut"] = DRACUT_HOSTONLY
    if recipe.network == "networkmanager":
        inputs["nm"] = MASTER_NM_KEYFILE
    if recipe.base:
        inputs["base"] = base_key(recipe)
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:16]


BASE_VERSION = 2  # bump when build_base changes (2: dpkg without fsync or docs, no initramfs from the hooks)


def base_key(recipe: Recipe) -> str:
    """The cache key of `recipe`'s shared base: what debootstrap is given, and how the base is made."""
    inputs = {"suite": recipe.suite, "mirror": MIRROR, "packages": sorted(recipe.base), "version": BASE_VERSION}
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:16]


def _run(argv: list[str], **kw: object) -> str:
    result = subprocess.run(argv, capture_output=True, text=True, **kw)  # type: ignore[call-overload]
    if result.returncode != 0:
        raise MasterBuildError(f"{' '.join(argv)} failed ({result.returncode}):\n{result.stdout[-2000:]}"
                               f"\n{result.stderr[-3000:]}")
    return result.stdout


def _chroot(root: Path, script: str, arch: str = "amd64") -> str:
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "DEBIAN_FRONTEND": "noninteractive", "LC_ALL": "C",
           "HOME": "/root"}
    return in_tree(root, ["/bin/sh", "-ec", script], arch, env)


def in_tree(root: Path, argv: list[str], arch: str = HOST_ARCH, env: dict[str, str] | None = None,
            timeout: float = 3600) -> str:
    """`chroot root argv...`: directly for this box's architecture, through qemu-user in a user namespace
    with its own binfmt_misc for another (the host's binfmt_misc is never touched)."""
    command = ["chroot", str(root), *argv]
    env = env if env is not None else {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C"}
    if arch == HOST_ARCH:
        return _run(command, env=env, timeout=timeout)
    result = with_foreign_arch(arch, command, timeout=timeout, env=env)
    if result.returncode != 0:
        raise MasterBuildError(f"{' '.join(command)} ({arch}) failed ({result.returncode}):\n"
                               f"{result.stdout[-2000:]}\n{result.stderr[-3000:]}")
    return result.stdout


def _partuuid(number: int) -> str:
    return f"{LABEL_ID.removeprefix('0x')}-{number:02x}"


# dracut as RHEL configures it: host-only (the image holds this machine's drivers, and its /etc/machine-id
# and /etc/hostname); the virtio drivers and xfs are there in any case (the tree is built on another host).
DRACUT_HOSTONLY = 'hostonly="yes"\nadd_drivers+=" virtio_blk virtio_pci virtio_scsi xfs "\n'


# A foreign-architecture master's initramfs holds the modules a QEMU virt machine needs for its root, not
# initramfs-tools' "most": under qemu-user every module costs several emulated forks (measured here: "most" took
# more than 15 min for Debian's arm64 kernel, with its SoC drivers). Built once, by _masterize.
FOREIGN_INITRAMFS_MODULES = ("virtio_pci", "virtio_blk", "virtio_scsi", "virtio_net", "ext4", "vfat", "nls_cp437",
                             "nls_ascii")


def _initramfs_module_list(root: Path) -> None:
    conf = root / "etc/initramfs-tools"
    (conf / "conf.d").mkdir(parents=True, exist_ok=True)
    (conf / "conf.d/imageserver-modules").write_text("MODULES=list\n")
    (conf / "modules").write_text("".join(f"{m}\n" for m in FOREIGN_INITRAMFS_MODULES))


# dpkg's settings while a tree is built (written after debootstrap's first stage, removed by _masterize): a test
# master's tree is made whole and only then used, so dpkg need not fsync every file it unpacks (nothing measurable on
# this box's disk; a CI disk may differ), and what _masterize prunes anyway (documentation, the kernel's unused
# modules) is never unpacked. With the initramfs built once, a cold Debian 13 base and its three masters took 117 s
# instead of 209 s, Debian 12's master 72 s instead of 106 s (this 2-core box, lightly loaded, December 2026).
BUILD_DPKG_CFG = "etc/dpkg/dpkg.cfg.d/imageserver-build"
BUILD_DPKG_SETTINGS = ("force-unsafe-io\npath-exclude=/usr/share/doc/*\npath-exclude=/usr/share/man/*\n"
                       "path-exclude=/usr/share/info/*\npath-exclude=/usr/share/locale/*\n")


def _build_dpkg_settings(root: Path, prune_modules: tuple[str, ...] = ()) -> None:
    """The build's dpkg settings in the tree `root`, leaving out the kernel module directories `prune_modules`
    (a package's path: /lib/modules in Debian 12, /usr/lib/modules in 13; dpkg's * matches a slash too)."""
    (root / BUILD_DPKG_CFG).parent.mkdir(parents=True, exist_ok=True)
    (root / BUILD_DPKG_CFG).write_text(BUILD_DPKG_SETTINGS + "".join(
        f"path-exclude=*/modules/*/kernel/{rel}/*\n" for rel in prune_modules))


def _apt_install(root: Path, packages: tuple[str, ...], archives: Path | None = None, arch: str = HOST_ARCH
                 ) -> None:
    """apt-get install in the debootstrapped tree (its own sources.list; no service started). `archives`: a
    directory of .debs kept between trees (bound on the tree's /var/cache/apt/archives, so not cleaned)."""
    if not packages:
        return
    shutil.copyfile("/etc/resolv.conf", root / "etc/resolv.conf")
    policy = root / "usr/sbin/policy-rc.d"
    policy.write_text("#!/bin/sh\nexit 101\n")
    policy.chmod(0o755)
    try:
        with _bound_system(root, archives):
            # INITRD=No: a kernel's hook (initramfs-tools' or dracut's) builds no initramfs, nor does a trigger
            # of its tool; _masterize builds it once, with the tree's own tool and configuration.
            _chroot(root, "export INITRD=No\napt-get update -qq\n"
                          f"apt-get install -y -qq --no-install-recommends {' '.join(packages)}\n"
                          + ("" if archives else "apt-get clean\n"), arch)
    finally:
        policy.unlink()


@contextlib.contextmanager
def _bound_system(root: Path, archives: Path | None = None) -> Iterator[None]:
    mounts = []
    try:
        for fs in ("proc", "sys", "dev"):
            _run(["mount", "--bind", f"/{fs}", str(root / fs)])
            mounts.append(root / fs)
        if archives is not None:
            (archives / "partial").mkdir(parents=True, exist_ok=True)
            (root / "var/cache/apt/archives").mkdir(parents=True, exist_ok=True)
            _run(["mount", "--bind", str(archives), str(root / "var/cache/apt/archives")])
            mounts.append(root / "var/cache/apt/archives")
        # dracut turns host-only mode off unless /run is a mount too (a tree of its own, not the host's)
        _run(["mount", "-t", "tmpfs", "tmpfs", str(root / "run")])
        mounts.append(root / "run")
        yield
    finally:
        for m in reversed(mounts):
            subprocess.run(["umount", "-l", str(m)], capture_output=True)


def _masterize(root: Path, recipe: Recipe = BOOKWORM) -> None:
    """The configuration a sysadmin gives a master (inside the debootstrapped tree)."""
    (root / "etc/hostname").write_text(f"{HOSTNAME}\n")
    (root / "etc/hosts").write_text(f"127.0.0.1\tlocalhost\n127.0.1.1\t{HOSTNAME}\n")
    (root / "etc/fstab").write_text(
        "# <file system> <mount point> <type> <options> <dump> <pass>\n"
        f"PARTUUID={_partuuid(1)} / ext4 errors=remount-ro 0 1\n"
        f"PARTUUID={_partuuid(5)} none swap sw 0 0\n")
    if recipe.network == "networkmanager":
        keyfile = root / f"etc/NetworkManager/system-connections/{MASTER_IFACE}.nmconnection"
        keyfile.parent.mkdir(parents=True, exist_ok=True)
        keyfile.write_text(MASTER_NM_KEYFILE)
        keyfile.chmod(0o600)
    else:
        (root / "etc/network/interfaces").write_text(
            "source /etc/network/interfaces.d/*\n\nauto lo\niface lo inet loopback\n\n"
            f"allow-hotplug {MASTER_IFACE}\niface {MASTER_IFACE} inet dhcp\n")
    cmdline = f"console={recipe.console},115200"
    if recipe.initramfs == "dracut":
        cmdline += f" resume=UUID={MASTER_SWAP_UUID}"  # where RHEL's installer puts it
        (root / "etc/dracut.conf.d").mkdir(parents=True, exist_ok=True)
        (root / "etc/dracut.conf.d/90-imageserver-hostonly.conf").write_text(DRACUT_HOSTONLY)
    else:
        (root / "etc/initramfs-tools/conf.d").mkdir(parents=True, exist_ok=True)
        (root / "etc/initramfs-tools/conf.d/resume").write_text(f"RESUME=UUID={MASTER_SWAP_UUID}\n")
    (root / "etc/default").mkdir(exist_ok=True)
    # GRUB's own terminal: the PC's first serial port; on arm64 the firmware's console (AAVMF's is the PL011,
    # which GRUB's serial command does not know as unit 0).
    terminal = ('GRUB_TERMINAL=console\n' if recipe.arch == "arm64" else
                'GRUB_TERMINAL=serial\nGRUB_SERIAL_COMMAND="serial --unit=0 --speed=115200"\n')
    (root / "etc/default/grub").write_text(
        'GRUB_DEFAULT=0\nGRUB_TIMEOUT=1\nGRUB_DISTRIBUTOR="Debian"\nGRUB_CMDLINE_LINUX_DEFAULT=""\n'
        f'GRUB_CMDLINE_LINUX="{cmdline}"\n' + terminal)
    if recipe.initramfs == "dracut":
        # A BLS entry as RHEL's kernel-install writes it (named by the machine-id; Debian's GRUB reads none).
        entries = root / "boot/loader/entries"
        entries.mkdir(parents=True, exist_ok=True)
        for modules in (root / "lib/modules").iterdir():
            kver = modules.name
            (entries / f"{MASTER_MACHINE_ID}-{kver}.conf").write_text(
                f"title Debian GNU/Linux ({kver})\nversion {kver}\nlinux /boot/vmlinuz-{kver}\n"
                f"initrd /boot/initrd.img-{kver}\noptions root=PARTUUID={GPT_PARTUUIDS[1]} ro {cmdline}\n")
    (root / "etc/machine-id").write_text(f"{MASTER_MACHINE_ID}\n")
    (root / "var/lib/systemd").mkdir(parents=True, exist_ok=True)
    (root / "var/lib/systemd/random-seed").write_bytes(MASTER_RANDOM_SEED)
    os.chmod(root / "var/lib/systemd/random-seed", 0o600)
    if recipe.dhcp_client == "networkmanager":
        # What NetworkManager leaves after the master's first lease: its secret key (DUIDs and stable-privacy
        # addresses derive from it), its internal client's lease and its timestamps.
        nm = root / "var/lib/NetworkManager"
        nm.mkdir(parents=True, exist_ok=True)
        (nm / "secret_key").write_bytes(MASTER_DHCPCD_SECRET)
        (nm / f"internal-5eed0000-1312-4000-8000-0000000000e3-{MASTER_IFACE}.lease").write_text(
            "# This is private data. Do not parse.\nADDRESS=192.0.2.77\n")
        (nm / "timestamps").write_text("[timestamps]\n5eed0000-1312-4000-8000-0000000000e3=1765000000\n")
    elif recipe.dhcp_client == "dhcpcd":
        # What dhcpcd leaves after the master's first lease: its DUID, its secret, the lease.
        (root / "var/lib/dhcpcd").mkdir(parents=True, exist_ok=True)
        (root / "var/lib/dhcpcd/duid").write_text(MASTER_DHCPCD_DUID)
        (root / "var/lib/dhcpcd/secret").write_bytes(MASTER_DHCPCD_SECRET)
        (root / f"var/lib/dhcpcd/{MASTER_IFACE}.lease").write_bytes(b"\x02\x01\x06\x00master lease")
    else:
        (root / "var/lib/dhcp").mkdir(parents=True, exist_ok=True)
        (root / f"var/lib/dhcp/dhclient.{MASTER_IFACE}.leases").write_text(
            f'lease {{\n  interface "{MASTER_IFACE}";\n  fixed-address 192.0.2.77;\n}}\n')
    if recipe.persistent_journal:
        # journald keeps the journal in /var/log/journal/<machine-id>/ once the directory exists.
        journal = root / "var/log/journal" / MASTER_MACHINE_ID
        journal.mkdir(parents=True, exist_ok=True)
        (journal / "system.journal").write_bytes(b"LPKSHHRH" + f"master {MASTER_MACHINE_ID}".encode())
    unit = root / "etc/systemd/system/imageserver-report.service"
    unit.write_text(report_service(recipe.console))
    wants = root / "etc/systemd/system/multi-user.target.wants"
    wants.mkdir(parents=True, exist_ok=True)
    (wants / unit.name).unlink(missing_ok=True)
    os.symlink(f"/etc/systemd/system/{unit.name}", wants / unit.name)
    (root / BUILD_DPKG_CFG).unlink(missing_ok=True)  # the master's dpkg is as Debian sets it up
    for rel in PRUNE:
        shutil.rmtree(root / rel, ignore_errors=True)
    (root / "var/lib/apt/lists/partial").mkdir(parents=True, exist_ok=True)
    (root / "var/cache/apt/archives/partial").mkdir(parents=True, exist_ok=True)
    for modules in (root / "lib/modules").iterdir():
        for rel in recipe.prune_modules:
            shutil.rmtree(modules / "kernel" / rel, ignore_errors=True)
    # Created (not updated): the kernel was installed without one (INITRD=No), and so without the /initrd.img
    # link its postinst makes beside /vmlinuz: made now, by the same tool.
    initramfs = ("dracut -f --regenerate-all\n" if recipe.initramfs == "dracut" else
                 "update-initramfs -c -k all\n")
    if recipe.arch == HOST_ARCH:
        initramfs += ("for k in /lib/modules/*; do\n"
                      '  linux-update-symlinks install "${k##*/}" "/boot/vmlinuz-${k##*/}"\ndone\n')
    else:
        _initramfs_module_list(root)
        initramfs = "update-initramfs -c -k all\n"  # the first one: none was made by the second stage
    with _bound_system(root):
        _chroot(root, f"echo 'root:{ROOT_PASSWORD}' | chpasswd\n"
                      "for k in /lib/modules/*; do depmod \"${k##*/}\"; done\n" + initramfs, recipe.arch)
    if recipe.arch != HOST_ARCH:
        emulated.link_initramfs(root)


@contextlib.contextmanager
def build_lock(entry: Path) -> Iterator[None]:
    """One builder per cache entry: parallel test workers (pytest -n) wait for the first one's tree
    instead of building it again (and removing the entry another worker is copying from)."""
    entry.parent.mkdir(parents=True, exist_ok=True)
    with open(entry.with_name(f".{entry.name}.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def cached_build(entry: Path, make: Callable[[Path], None]) -> Path:
    """The cache entry directory, made by `make(work)` into a private work directory if it is missing, then
    renamed into place whole (a killed build leaves no entry that looks done)."""
    if (entry / "ok").exists():
        return entry
    with build_lock(entry):
        if (entry / "ok").exists():  # built by another worker while this one waited for the lock
            return entry
        work = entry.with_name(f".{entry.name}.{os.getpid()}.tmp")
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        started = time.monotonic()
        make(work)
        (work / "ok").write_text(f"built in {time.monotonic() - started:.0f} s\n")
        shutil.rmtree(entry, ignore_errors=True)
        os.replace(work, entry)
    return entry


def _debootstrap(cache_dir: Path, suite: str, packages: tuple[str, ...], root: Path, arch: str = HOST_ARCH,
                 prune_modules: tuple[str, ...] = ()) -> None:
    if shutil.which("debootstrap") is None:
        raise MasterBuildError("debootstrap is not installed (Debian package debootstrap; `make deps`)")
    debs = cache_dir / "debootstrap-debs"
    debs.mkdir(parents=True, exist_ok=True)
    include = f"--include={','.join(packages)}"
    if arch == HOST_ARCH:
        # Both stages here, the build's dpkg settings written between them (the first only unpacks; the
        # second's dpkg then neither syncs nor unpacks documentation), the kernel's hook told to build no
        # initramfs (INITRD=No: debootstrap keeps the environment): _masterize builds the only one.
        _run(["debootstrap", "--foreign", "--variant=minbase", f"--cache-dir={debs}", include, suite, str(root)],
             timeout=1800)
        _build_dpkg_settings(root, prune_modules)
        in_tree(root, ["/debootstrap/debootstrap", "--second-stage"],
                env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C", "INITRD": "No"}, timeout=1800)
        return
    # The first stage here (it makes /dev's nodes as real root), the second in the tree by qemu-user.
    _run(["debootstrap", "--foreign", f"--arch={arch}", "--variant=minbase", f"--cache-dir={debs}", include, suite,
          str(root)], timeout=1800)
    _initramfs_module_list(root)
    emulated.trim_package_lists(root)
    emulated.uncompress_debs(root)
    if "openssh-server" in packages:
        emulated.make_ssh_host_keys(root)
    # container=lxc: no mknod test in the second stage (a user namespace makes no device nodes; the first stage
    # made them). No initramfs made in it (emulated.SECOND_STAGE_ENV): _masterize makes the one the master has.
    _build_dpkg_settings(root, prune_modules)
    in_tree(root, ["/debootstrap/debootstrap", "--second-stage"], arch,
            {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C", "container": "lxc", **emulated.SECOND_STAGE_ENV})


def build_base(cache_dir: Path, recipe: Recipe) -> Path:
    """The cached tree that `recipe` shares with the other recipes of its base: the suite debootstrapped
    with recipe.base (built once; its masters copy it, so it is never changed)."""

    def make(work: Path) -> None:
        _debootstrap(cache_dir, recipe.suite, recipe.base, work / "root")

    return cached_build(cache_dir / "debian-base" / base_key(recipe), make) / "root"


def build(cache_dir: Path, recipe: Recipe = BOOKWORM) -> Path:
    """The cached master tree for `recipe`, built (debootstrap or a copy of its base, apt, _masterize) if
    missing."""

    def make(work: Path) -> None:
        root = work / "root"
        if recipe.base:
            # A copy of the shared base (reflinks where the filesystem has them; hard links, ACLs and
            # xattrs kept), then the recipe's other packages by apt, their .debs kept for the next master.
            _run(["cp", "-a", "--reflink=auto", str(build_base(cache_dir, recipe)), str(root)])
            _build_dpkg_settings(root, recipe.prune_modules)
            rest = tuple(p for p in (*recipe.packages, *recipe.apt_packages) if p not in recipe.base)
            archives = cache_dir / "apt-debs" / recipe.suite
            with build_lock(archives):  # one apt at a time in the shared .debs directory
                _apt_install(root, rest, archives)
        else:
            _debootstrap(cache_dir, recipe.suite, recipe.packages, root, recipe.arch, recipe.prune_modules)
            _apt_install(root, recipe.apt_packages, arch=recipe.arch)
        _masterize(root, recipe)

    return cached_build(cache_dir / "debian-master" / cache_key(recipe), make) / "root"


def ssh_fingerprints(root: Path) -> frozenset[str]:
    keys = sorted((root / "etc/ssh").glob("ssh_host_*_key.pub"))
    return frozenset(_run(["ssh-keygen", "-l", "-f", str(k)]).split()[1] for k in keys)


# The UEFI master: GPT with an EFI system partition; partition UUIDs fixed like the MBR label-id.
GPT_PARTUUIDS = ("5eed0001-1312-4000-8000-000000000001", "5eed0001-1312-4000-8000-000000000002",
                 "5eed0001-1312-4000-8000-000000000003")
GPT_TABLE = (f"label: gpt\nsize=64MiB, type=U, uuid={GPT_PARTUUIDS[0]}\n"
             f"size=1000MiB, type=L, uuid={GPT_PARTUUIDS[1]}\ntype=S, uuid={GPT_PARTUUIDS[2]}\n")
GPT_FSTAB = ("# <file system> <mount point> <type> <options> <dump> <pass>\n"
             f"PARTUUID={GPT_PARTUUIDS[1]} / ext4 errors=remount-ro 0 1\n"
             f"PARTUUID={GPT_PARTUUIDS[0]} /boot/efi vfat umask=0077 0 1\n"
             f"PARTUUID={GPT_PARTUUIDS[2]} none swap sw 0 0\n")


# Starting serial-getty@ttyS0 hangs the serial line up (the unit's TTYVHangup=yes): a report unit that
# still writes to it afterwards loses its output (seen on a loaded box: both reports "Starting", then
# login:, then nothing). Each report finishes before the getty starts. A drop-in of the per-test copy,
# so the cached trees (and their keys) stay as they are.
REPORT_BEFORE_GETTY = "[Unit]\nBefore=serial-getty@ttyS0.service\n"


def reports_before_getty(root: Path, console: str = "ttyS0") -> None:
    """Order every imageserver-*report unit of the tree `root` before the serial getty of `console`."""
    for unit in (root / "etc/systemd/system").glob("imageserver-*report.service"):
        drop_in = unit.parent / f"{unit.name}.d"
        drop_in.mkdir(exist_ok=True)
        (drop_in / "before-serial-getty.conf").write_text(REPORT_BEFORE_GETTY.replace("ttyS0", console))
    leased = root / "etc/systemd/system/imageserver-report.service.d"
    if leased.is_dir():
        (leased / "leased-address.conf").write_text(REPORT_LEASED_ADDRESS)


def new_master(cache_dir: Path, work: Path, firmware: str = "bios", recipe: Recipe = BOOKWORM) -> DebianMaster:
    """A master for one test: a copy of the cached tree (rsync, keeping hard links, ACLs, xattrs) and
    its disk file, with a file of master state at every per-machine path the tree does not have already
    (plant_per_machine_state). firmware="uefi": a GPT disk with an EFI system partition at /boot/efi."""
    cached = build(cache_dir, recipe)
    # Named by the recipe: two masters of one suite in one work directory (a module's tests) stay apart.
    name = f"debian-master-{recipe.suite}-{cache_key(recipe)[:8]}-{firmware}"
    root = work / f"{name}-root"
    _run(["rsync", "-aHAX", "--numeric-ids", f"{cached}/", f"{root}/"])
    reports_before_getty(root, recipe.console)
    plant_per_machine_state(root)
    disk = work / f"{name}-disk.img"
    with open(disk, "wb") as f:
        f.truncate(DISK_MB << 20)
    _run(["sfdisk", "-q", str(disk)], input=GPT_TABLE if firmware == "uefi" else DISK_TABLE)
    if firmware == "uefi":
        (root / "etc/fstab").write_text(GPT_FSTAB)
        (root / "boot/efi").mkdir(parents=True, exist_ok=True)
    root_line = re.compile(r"^(\S+) / ext4 errors=remount-ro 0 1$", re.M)
    fstab = (root / "etc/fstab").read_text()
    if recipe.root_fs == "xfs":  # as RHEL's installer writes it (no fsck pass for xfs)
        fstab = root_line.sub(r"\1 / xfs defaults 0 0", fstab)
    elif recipe.root_fs == "btrfs":  # as Ubuntu's installer writes it: one filesystem, a line per subvolume
        fstab = root_line.sub("\n".join(rf"\1 {mp} btrfs {BTRFS_OPTIONS},subvol={sv} 0 0"
                                        for mp, sv in BTRFS_SUBVOLUMES.items()), fstab)
    (root / "etc/fstab").write_text(fstab)
    if recipe.root_fs == "btrfs":  # something in /home: the clone must have it in @home, not in @
        (root / "home/admin").mkdir(parents=True, exist_ok=True)
        (root / HOME_FILE).write_text("# the master's admin\n")
    return DebianMaster(root=root, disk=disk, machine_id=MASTER_MACHINE_ID,
                        ssh_fingerprints=ssh_fingerprints(root))


# The content of every file plant_per_machine_state makes: a clone's file that holds it is the master's.
MASTER_STATE = b"imageserver e2e: the master's per-machine state\n"


def plant_per_machine_state(root: Path) -> list[Path]:
    """A file of master state at each "drop" path of the installer's per-machine list (each * made a name)
    where the tree has none: whatever family's software would keep there, the clone must not have it."""
    planted = []
    for entry in per_machine_paths():
        if entry.action != "drop":
            continue
        path = root / entry.path.lstrip("/").replace("*", "imageserver-master")
        if entry.path.startswith("/var/log/journal/"):
            path = path.with_name(MASTER_MACHINE_ID) / "system@imageserver-master.journal"
        if any(root.glob(entry.path.lstrip("/"))):
            continue  # the recipe made a real one
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(MASTER_STATE)
        planted.append(path)
    return planted


def master_state_on(root: Path) -> list[str]:
    """The per-machine paths of a clone's tree `root` that still hold the master's: a planted file, the
    recipe's own (dhcpcd's DUID and secret, dhclient's lease), or the master's journal directory."""
    masters = {MASTER_STATE, MASTER_DHCPCD_DUID.encode(), MASTER_DHCPCD_SECRET, MASTER_RANDOM_SEED}
    found = []
    for entry in per_machine_paths():
        if entry.action != "drop":
            continue
        for path in root.glob(entry.path.lstrip("/")):
            named = path.name == MASTER_MACHINE_ID or "imageserver-master" in path.name or MASTER_IFACE in path.name
            if named or (path.is_file() and path.read_bytes() in masters):
                found.append(str(path.relative_to(root)))
    return found


# The btrfs master's subvolumes as `btrfs subvolume list` shows them (@snapshots is mounted nowhere: only
# prepareclient's record brings it), and its default subvolume (@, as openSUSE sets its root's).
BTRFS_RECORDED = ("@", "@home", "@snapshots")
BTRFS_DEFAULT = "@"


def btrfs_stand_in(bin_dir: Path, subvolumes: tuple[str, ...] = BTRFS_RECORDED, default: str = BTRFS_DEFAULT) -> None:
    """A `btrfs` command first on prepareclient's PATH that answers as btrfs-progs does on a master whose root
    filesystem holds `subvolumes` (the test master's root is a directory, on no btrfs)."""
    ids = {name: 256 + n for n, name in enumerate(subvolumes)}
    # -a: the top level's children as <FS_TREE>/NAME, nested ones by their whole path
    listing = "".join(f"ID {i} gen 42 top level {ids.get(name.rpartition('/')[0], 5)} path "
                      f"{name if '/' in name else '<FS_TREE>/' + name}\\n" for name, i in ids.items())
    shown = f"ID {ids[default]} gen 42 top level 5 path {default}" if default else "ID 5 (FS_TREE)"
    bin_dir.mkdir(parents=True, exist_ok=True)
    tool = bin_dir / "btrfs"
    tool.write_text("#!/bin/sh\n# stand-in: what btrfs-progs prints on the btrfs master (tests/e2e/_debianmaster.py)\n"
                    'case "$1 $2" in\n'
                    f"'subvolume list') [ \"$3\" = -a ] && printf '{listing}' ;;\n"
                    f"'subvolume get-default') echo '{shown}' ;;\n"
                    '*) echo "btrfs stand-in: unexpected arguments: $*" >&2; exit 2 ;;\nesac\n')
    tool.chmod(0o755)
