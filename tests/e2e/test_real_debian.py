"""A real Debian master (debootstrap, cached: tests/e2e/_debianmaster.py) captured with the real
prepareclient + getimage, installed over PXE into a QEMU VM (TCG, BIOS), booted from its own disk to
`login:` on the serial console. Then, on the running system (its report line on the console) and on
the VM's disk afterwards (a loop device over its root partition): the assigned hostname; root by UUID in
grub.cfg and fstab; a machine-id and ssh host keys not the master's, and nothing at any path of the
installer's per-machine list that is the master's (the master has state planted at each: DHCP client
leases, DUIDs and secrets, NetworkManager's, networkd's, seeds, the journal); the initramfs resume device
this machine's swap, not the master's, and no master identity in the initramfs; ifupdown configured for
the NIC's predictable name (found by its MAC), by DHCP, and the running system holding its reserved
address. Here: Debian 13 BIOS as trixie installs (xfs root, dhcpcd-base, persistent journal).

The install, the report and the disk checks are the other real-OS tests' too, one VM test per capability:
Debian 12 BIOS (ext4, dhclient) is test_kernel_update.py's first install and boot, before it updates the
kernel; UEFI, with these checks and the ESP's: the Debian 13 masters shaped as other distribution families
lay theirs out (btrfs subvolumes, RHEL-shaped) in test_real_distros.py (a file of its own: `make test` runs
files side by side), the Debian 12 master in test_uefi_http_boot.py (firmware HTTP boot) and
test_secure_boot.py (OVMF's PXE, shim).
"""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab.demo.disk import loop_partition, mounted
from lab.demo.scenario import DemoLab, Install, _kill_all
from lab.netns import lab_unavailable_reason
from lab.qemu import Vm, VmConfig, qemu_unavailable_reason, random_mac
from tests.e2e import _debianmaster as dm
from tests.e2e._sites import real_os_site

REPO = Path(__file__).resolve().parents[2]
PREPARECLIENT = REPO / "appliance" / "data" / "prepareclient"

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(qemu_unavailable_reason() is not None, reason=str(qemu_unavailable_reason())),
    pytest.mark.skipif(lab_unavailable_reason() is not None, reason=str(lab_unavailable_reason())),
]


def fs_uuid(device: str) -> str:
    return subprocess.run(["blkid", "-c", "/dev/null", "-o", "value", "-s", "UUID", device], capture_output=True,
                          text=True, check=True).stdout.strip()


OVMF = Path("/usr/share/ovmf/OVMF.fd")


def capture(demo: DemoLab, master: dm.DebianMaster, image: str, env: dict[str, str] | None = None) -> None:
    """prepareclient on the master (its tree and disk file; `env` added), getimage on the imageserver."""
    assert demo.app is not None and demo.master is not None and demo.net is not None
    env = {**demo.app.env(), "SYSTEMIMAGER_ROOT": str(master.root), "SYSTEMIMAGER_DISKS": str(master.disk),
           "SYSTEMIMAGER_RUN": str(demo.lab.tmp_path(f"prepareclient-{image}")), **(env or {})}
    try:
        out = demo.master.run(["sh", str(PREPARECLIENT), "--server", str(demo.net.server_ip)], env=env)
        print("prepareclient:", out.stdout.strip())
        text = demo.app.cli("getimage", "--master-client", str(demo.master_ip), "--image", image, "--yes",
                            timeout=900)
        print("getimage:", text.strip())
    finally:
        demo.master.run(["sh", str(PREPARECLIENT), "--stop"], env=env, check=False)
        _kill_all(demo.master)


@pytest.fixture(scope="module")
def site(bootenv_cache: Path, debian_kernel, lab_sweep: list[str]) -> Iterator[DemoLab]:
    with real_os_site(bootenv_cache, debian_kernel) as demo:
        yield demo


REPORT = rf"{dm.REPORT_MARKER} hostname=(\S+) addr=(\S+)=(\S+)/\d+ machine-id=(\S+)\s+root="


def install_over_pxe(demo: DemoLab, image: str, name: str, firmware_args: tuple[str, ...] = (),
                     timeout: float = 600) -> Install:
    """A new VM installed with `image` over PXE and powered off by the installer: what the install reported."""
    app = demo.app
    assert app is not None and demo.net is not None
    install = demo.new_install(name, 1536, mac=random_mac())
    app.cli("hosts", "add", install.name, "--mac", install.mac, "--image", image)
    install.power_on = time.monotonic()
    install.vm = Vm(demo.net, VmConfig(boot="network", mac=install.mac, disks=[install.disk], memory_mb=768,
                                       extra_args=firmware_args)).start()
    demo.follow([install], timeout=timeout)
    # The copy progress counts bytes written: it never goes back (df's did, on xfs).
    assert install.progress and install.progress == sorted(install.progress), install.progress
    host = app.get(f"/api/v1/hosts/{name}")
    assert host["state"] == "installed", host
    stages = [e["stage"] for e in host["timeline"]]
    assert {"identity", "initramfs", "bootloader"} <= set(stages), stages
    install.vm.wait_exit(timeout=120)
    return install


def boot_to_login(vm: Vm, name: str, login_timeout: float, report_timeout: float = 180
                  ) -> tuple[tuple[str, ...], str, float]:
    """`vm`, just started, to `NAME login:` and then its REPORT line, then stopped: (the REPORT's groups, the
    serial log, seconds from start to login)."""
    booted = time.monotonic()
    try:
        vm.wait_for(rf"{name} login:", timeout=login_timeout)
        login_after = time.monotonic() - booted
        report = vm.wait_for(REPORT, timeout=report_timeout)
    finally:
        log = vm.log()
        vm.stop()
    print("report:", report.group(0))
    return report.groups(), log, login_after


def check_report(demo: DemoLab, master: dm.DebianMaster, name: str, report: tuple[str, ...], log: str) -> str:
    """The running clone's REPORT line (the groups of REPORT) and serial log: this machine, not the master.
    Returns its interface name."""
    assert demo.app is not None
    hostname, ifname, address, machine_id = report
    assert hostname == name
    assert machine_id != master.machine_id, "the clone kept the master's machine-id"
    assert not ifname.startswith("eth") and ifname != dm.MASTER_IFACE, ifname
    binding = demo.app.get(f"/api/v1/hosts/{name}")["binding"]
    assert binding and binding["ip"] == address, (binding, address)
    assert "Gave up waiting for suspend/resume device" not in log, "the initramfs waited for the master's swap"
    return ifname


def check_installed_disk(disk: Path, master: dm.DebianMaster, name: str, ifname: str, mac: str,
                         firmware_args: tuple[str, ...] = (), root_fstype: str = "ext4",
                         recipe: dm.Recipe = dm.BOOKWORM) -> None:
    """check_disk on the root partition of a clone's disk file (its VM not running), the ESP's too on UEFI."""
    # Its VM may have been powered off, not shut down: mounting replays the ext4 journal (debugfs would not).
    with loop_partition(disk, 2 if firmware_args else 1) as device:
        if root_fstype == "btrfs":  # the top level: every subvolume under it
            with mounted(device, "btrfs", "subvolid=5") as top:
                check_btrfs(top, fs_uuid(device))
                check_disk(top / dm.BTRFS_SUBVOLUMES["/"], fs_uuid(device), master, name, ifname, recipe, mac)
        else:
            with mounted(device, root_fstype) as root:
                check_disk(root, fs_uuid(device), master, name, ifname, recipe, mac)
    if firmware_args:
        with loop_partition(disk, 1) as esp:
            version = subprocess.run(["blkid", "-p", "-o", "value", "-s", "VERSION", esp], capture_output=True,
                                     text=True).stdout.strip()
        assert version == "FAT32", f"the EFI system partition is {version}, not FAT32"


def install_and_boot(demo: DemoLab, master: dm.DebianMaster, image: str, name: str,
                     firmware_args: tuple[str, ...] = (), root_fstype: str = "ext4",
                     recipe: dm.Recipe = dm.BOOKWORM) -> None:
    """Install `image` on a new VM over PXE, boot its disk to login, check what makes it this machine."""
    assert demo.net is not None
    install = install_over_pxe(demo, image, name, firmware_args)
    # UEFI: the disk first (the firmware's four network entries before it cost 240 s under TCG; the
    # imageserver's local-boot exit is test_pxe_boot's). BIOS: PXE first, the imageserver says local.
    boot = "disk" if firmware_args else "network"
    vm = Vm(demo.net, VmConfig(boot=boot, mac=install.mac, disks=[install.disk], memory_mb=768,
                               extra_args=firmware_args)).start()
    report, log, login_after = boot_to_login(vm, name, 420)
    firmware = "UEFI" if firmware_args else "BIOS"
    print(f"\n[timing] {firmware}: power-on -> installed {install.installed_after:.0f} s; "
          f"power-on -> login: {login_after:.0f} s (second boot, own disk)")
    ifname = check_report(demo, master, name, report, log)
    check_installed_disk(install.disk, master, name, ifname, install.mac, firmware_args, root_fstype, recipe)


def check_btrfs(top: Path, uuid: str) -> None:
    """The clone's btrfs has the master's subvolumes (the recorded @snapshots too) and default subvolume, and
    fstab mounts them by the new UUID with the master's options."""
    listing = subprocess.run(["btrfs", "subvolume", "list", str(top)], capture_output=True, text=True,
                             check=True).stdout
    assert sorted(line.split(" path ")[1] for line in listing.splitlines()) == sorted(dm.BTRFS_RECORDED), listing
    default = subprocess.run(["btrfs", "subvolume", "get-default", str(top)], capture_output=True, text=True,
                             check=True).stdout
    assert default.strip().endswith(f" path {dm.BTRFS_DEFAULT}"), default
    root = top / dm.BTRFS_SUBVOLUMES["/"]
    fstab = (root / "etc/fstab").read_text()
    for mountpoint, subvolume in dm.BTRFS_SUBVOLUMES.items():
        assert re.search(rf"^UUID={uuid}\s+{mountpoint}\s+btrfs\s+{dm.BTRFS_OPTIONS},subvol={subvolume}\s", fstab,
                         re.M), fstab
    home_file = dm.HOME_FILE.removeprefix("home/")
    assert (top / "@home" / home_file).is_file() and not (root / dm.HOME_FILE).exists(), "/home is not in @home"
    grub = (root / "boot/grub/grub.cfg").read_text()
    assert "rootflags=subvol=@" in grub, grub[-1500:]


def booted_initrd(root: Path) -> Path:
    """The initramfs of GRUB's first entry (the one the machine boots)."""
    grub = (root / "boot/grub/grub.cfg").read_text()
    name = re.search(r"^\s*initrd\s+(\S+)", grub, re.M)
    assert name, grub[-1500:]
    return root / "boot" / name.group(1).rsplit("/", 1)[-1]


def check_disk(root: Path, root_uuid: str, master: dm.DebianMaster, name: str, ifname: str,
               recipe: dm.Recipe = dm.BOOKWORM, mac: str = "") -> None:
    grub = (root / "boot/grub/grub.cfg").read_text()
    assert f"root=UUID={root_uuid}" in grub and "root=/dev/" not in grub, grub[-1500:]
    fstab = (root / "etc/fstab").read_text()
    assert re.search(rf"^UUID={root_uuid}\s+/\s", fstab, re.M), fstab
    assert (root / "etc/hostname").read_text().strip() == name
    machine_id = (root / "etc/machine-id").read_text().strip()
    assert machine_id not in ("", master.machine_id)
    seed = root / "var/lib/systemd/random-seed"
    assert not seed.exists() or seed.read_bytes() != b"\x42" * 512, "the master's random seed"
    assert not (root / f"var/lib/dhcp/dhclient.{dm.MASTER_IFACE}.leases").exists(), "the master's lease"
    initrd_path = booted_initrd(root)
    if recipe.initramfs == "dracut":
        check_dracut(root, grub, master, initrd_path, name, machine_id)
    else:
        resume = (root / "etc/initramfs-tools/conf.d/resume").read_text()
        assert dm.MASTER_SWAP_UUID not in resume and "RESUME=UUID=" in resume, resume
        # The initramfs the machine boots ends in the same setting (the archive the kernel unpacks last).
        initrd = initrd_path.read_bytes()
        assert initrd.rfind(resume.strip().encode()) > initrd.rfind(b"conf/conf.d/resume") > 0
        check_initramfs(master, initrd_path, recipe.arch)
    # Nothing per-machine of the master's: under /var/lib (DHCP clients, NetworkManager, networkd, seeds),
    # /var/log/journal, or in the initramfs (its etc/machine-id, etc/hostname: above).
    assert dm.master_state_on(root) == [], "the clone keeps the master's per-machine state"
    assert dm.ssh_fingerprints(root).isdisjoint(master.ssh_fingerprints), "ssh host keys are the master's"
    if recipe.network == "networkmanager":
        keyfile = root / "etc/NetworkManager/system-connections/imageserver.nmconnection"
        net = keyfile.read_text()
        assert f"mac-address={mac.lower()}" in net and "method=auto" in net, net
        assert keyfile.stat().st_mode & 0o077 == 0, "NetworkManager ignores a keyfile others can read"
        net_files = ["etc/NetworkManager/system-connections/imageserver.nmconnection"]
    else:
        net = (root / "etc/network/interfaces.d/imageserver").read_text()
        assert f"allow-hotplug {ifname}" in net and f"iface {ifname} inet dhcp" in net, net
        interfaces = (root / "etc/network/interfaces").read_text()
        assert not re.search(rf"^\s*iface {dm.MASTER_IFACE}\b", interfaces, re.M), interfaces
        net_files = ["etc/network/interfaces.d/imageserver"]
    for path in ("boot/grub/grub.cfg", "etc/default/grub", "etc/fstab", *net_files):
        assert "INSTALL_TOKEN" not in (root / path).read_text(), path


def lsinitrd(master: dm.DebianMaster, initrd: Path, member: str) -> str:
    """A file of a dracut initramfs, read by the image's own lsinitrd (in the master's tree)."""
    inside = master.root / "tmp" / f"imageserver-{initrd.name}"
    inside.write_bytes(initrd.read_bytes())
    try:
        return subprocess.run(["chroot", str(master.root), "lsinitrd", "-f", member, f"/tmp/{inside.name}"],
                              capture_output=True, text=True, check=True).stdout.strip()
    finally:
        inside.unlink()


def check_dracut(root: Path, grub: str, master: dm.DebianMaster, initrd: Path, name: str, machine_id: str) -> None:
    """resume= names this machine's swap wherever the master's command line named the master's, and the
    host-only initramfs was made again by the image's dracut: the clone's machine-id and hostname in it."""
    default_grub = (root / "etc/default/grub").read_text()
    swap = re.search(r"resume=UUID=(\S+?)[\s\"]", default_grub)
    assert swap and swap.group(1) != dm.MASTER_SWAP_UUID, default_grub
    entries = list((root / "boot/loader/entries").glob("*.conf"))
    assert entries, "the image's BLS entry is gone"
    for entry in entries:
        options = next(line for line in entry.read_text().splitlines() if line.startswith("options "))
        assert f"resume=UUID={swap.group(1)}" in options and dm.MASTER_SWAP_UUID not in options, options
        assert "root=PARTUUID=" in options and dm.GPT_PARTUUIDS[1] not in options, options
    assert f"resume=UUID={swap.group(1)}" in grub and dm.MASTER_SWAP_UUID not in grub, grub[-1500:]
    image_initrd = master.root / "boot" / initrd.name
    # The master's host-only initramfs holds the master's identity (what the clone's must not).
    assert lsinitrd(master, image_initrd, "etc/machine-id") == dm.MASTER_MACHINE_ID
    assert lsinitrd(master, image_initrd, "etc/hostname") == dm.HOSTNAME
    assert lsinitrd(master, initrd, "etc/machine-id") == machine_id
    assert lsinitrd(master, initrd, "etc/hostname") == name


def _cpio_names(data: bytes) -> list[str]:
    """The member names of uncompressed newc cpio archives, one after another (zero padding between)."""
    names, at = [], 0
    while (at := data.find(b"070701", at)) >= 0:
        size, namesize = int(data[at + 54:at + 62], 16), int(data[at + 94:at + 102], 16)
        name = data[at + 110:at + 110 + namesize - 1].decode()
        if name != "TRAILER!!!":
            names.append(name)
        at += (110 + namesize + 3) // 4 * 4
        at += (size + 3) // 4 * 4
    return names


def check_initramfs(master: dm.DebianMaster, clone_initrd: Path, arch: str = dm.HOST_ARCH) -> None:
    """The clone's initramfs is the image's (unpacked by the image's own unmkinitramfs, of the image's `arch`:
    no machine-id or hostname of the master's in it) with an archive appended that holds only the retied
    settings."""
    image_initrd = master.root / "boot" / clone_initrd.name
    base = image_initrd.read_bytes()
    clone = clone_initrd.read_bytes()
    assert clone.startswith(base), "the initramfs was rebuilt, not amended: check it as a whole"
    appended = _cpio_names(clone[len(base):])
    assert set(appended) <= {"conf", "conf/conf.d", "conf/conf.d/resume", "etc", "etc/mdadm",
                             "etc/mdadm/mdadm.conf"}, appended
    unpacked = master.root / "tmp/imageserver-unmkinitramfs"
    dm.in_tree(master.root, ["unmkinitramfs", f"/boot/{image_initrd.name}", "/tmp/imageserver-unmkinitramfs"], arch)
    files = [p for p in unpacked.rglob("*") if p.is_file()]
    assert any(p.name.startswith("virtio") for p in files), "unmkinitramfs unpacked no modules"
    for p in files:
        if p.name in ("machine-id", "hostname") and p.parent.name == "etc":
            text = p.read_text().strip()
            assert text not in (master.machine_id, dm.HOSTNAME), f"{p.relative_to(unpacked)}: {text}"


def test_bios_debian13_master_on_xfs_with_dhcpcd_and_a_persistent_journal_boots_as_itself(site: DemoLab) -> None:
    """Debian 13 (trixie) as it installs: ifupdown with dhcpcd-base, whose DUID (with the master's MAC) and
    secret, and the master's persistent journal, must not reach the clone. Its root is xfs (as RHEL-family
    masters' are; fsck pass 0, as theirs): the installer in the VM makes and mounts it with its own module
    (a host kernel with xfs built in hid a missing one), and its copy progress never goes back on xfs."""
    master = dm.new_master(site.cache_dir, site.lab.tmp_path("trixie").parent, "bios", dm.TRIXIE)
    assert (master.root / "var/lib/dhcpcd/duid").read_text() == dm.MASTER_DHCPCD_DUID
    assert (master.root / "var/log/journal" / dm.MASTER_MACHINE_ID).is_dir()
    fstab = master.root / "etc/fstab"
    fstab.write_text(fstab.read_text().replace(" / ext4 errors=remount-ro 0 1", " / xfs defaults 0 0"))
    assert " / xfs " in fstab.read_text()
    capture(site, master, "debian13")
    install_and_boot(site, master, "debian13", "node3", root_fstype="xfs")
    assert site.app is not None
    assert "xfs on $DEV0_1 for /" in (site.app.state_dir / "scripts/debian13.master").read_text()

