"""PXE boot from the imageserver alone, in QEMU (TCG) on a lab network.

The VM's NIC ROM is iPXE (QEMU's ipxe-qemu ROM), so its first DHCP request already says "iPXE" and our
DHCP server answers with the script URL; the real path is then ours end to end:
  our DHCP -> GET /boot/<mac>.ipxe from our HTTP server -> the installer kernel + initrd over HTTP
  (/boot/files/installer/...) -> the initrd prints a marker with the kernel command line.
The pxelinux test goes: our DHCP -> iPXE script that chains pxelinux.0 over our TFTP ([boot] loader =
"pxelinux"; an iPXE ROM will not run pxelinux otherwise) -> pxelinux.cfg/01-<mac> rendered by our TFTP
server from the same boot decision -> kernel + initrd over TFTP -> the same marker.

The installer here is a test stand-in: a Debian kernel (appliance.boot.bootenv) and a tiny initrd whose
/init echoes /proc/cmdline and powers off.
"""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import time
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import pytest

from appliance.boot.bootenv import InitrdSpec, Kernel, build_initrd
from lab.daemon import Daemon
from lab.netns import Lab
from lab.qemu import Vm, VmConfig, VmNetwork, qemu_unavailable_reason, random_mac, start_ra_sender, vm_network
from state.db import connect

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
MARKER = r"PXE-TEST-BOOTED cmdline=\[([^\]]*)\]"
INIT = """#!/bin/sh
mount -t proc proc /proc
echo "PXE-TEST-BOOTED cmdline=[$(cat /proc/cmdline)]" >/dev/console
poweroff -f
"""


@pytest.fixture(autouse=True)
def _needs_qemu() -> None:
    reason = qemu_unavailable_reason()
    if reason:
        pytest.skip(reason)


@pytest.fixture(scope="module")
def installer(debian_kernel: Kernel, bootenv_cache: Path) -> tuple[Path, Path]:
    return debian_kernel.vmlinuz, build_initrd(InitrdSpec(init=INIT), bootenv_cache)


@dataclass
class Appliance(Daemon):
    """`imageserver serve` in the lab's server namespace (lab.daemon's driver), with DHCP, TFTP and HTTP on
    its interface."""

    def log_tail(self) -> str:
        return self.proc.output()[-3000:] if self.proc is not None else ""

    def status(self) -> dict:
        return self.api("/api/v1/status")

    def writable_db(self) -> sqlite3.Connection:
        # A second writer next to the daemon, as the hosts CLI will be: WAL lets both work.
        return sqlite3.connect(self.state_dir / "imageserver.db", timeout=10, isolation_level=None)

    def add_host(self, mac: str, name: str = "node01", image: str = "base") -> None:
        with closing(self.writable_db()) as conn:
            conn.execute("INSERT OR IGNORE INTO images(name, version, path, created) VALUES (?, 1, ?, 0)",
                         (image, f"/images/{image}/v1"))
            conn.execute("INSERT INTO hosts(name, mac, image, state, created, updated) "
                         "VALUES (?, ?, ?, 'assigned', 0, 0)", (name, mac, image))

    def token(self, name: str = "node01") -> str | None:
        with closing(self.writable_db()) as conn:
            row = conn.execute("SELECT install_token FROM hosts WHERE name = ?", (name,)).fetchone()
        return row[0] if row else None


def appliance(lab: Lab, net: VmNetwork, installer: tuple[Path, Path], *, loader: str = "ipxe",
              poll_seconds: int = 5, extra: str = "", kernel_cmdline: str = "console=ttyS0 panic=-1") -> Appliance:
    state = lab.tmp_path("state")
    (state / "boot" / "installer").mkdir(parents=True)
    shutil.copyfile(installer[0], state / "boot" / "installer" / "vmlinuz")
    shutil.copyfile(installer[1], state / "boot" / "installer" / "initrd.img")
    config = lab.tmp_path("imageserver.toml")
    config.write_text(f"""
[appliance]
state_dir = "{state}"
interface = "{net.server_if}"
address = "{net.server_ip}"
log_level = "debug"

[dhcp]
subnet = "{net.subnet}"
pool = "{net.host(100)}-{net.host(150)}"
conflict_probe = false

[tftp]
enabled = true

[http]
port = 80

[boot]
loader = "{loader}"
poll_seconds = {poll_seconds}
kernel_cmdline = "{kernel_cmdline}"
{extra}""")
    app = Appliance(net.server, config=config, state_dir=state)
    # Create the schema before the daemon starts (hosts are added straight into the database).
    connect(state / "imageserver.db").close()
    return app


def assert_nonce_not_token(args: dict[str, str], app: Appliance) -> None:
    """A boot file anyone may fetch: the kernel line carries a fetch nonce, never the install token."""
    assert "INSTALL_TOKEN" not in args, args
    token = app.token()  # issued at this boot, on disk before the script was handed out
    assert token is not None
    assert args.get("INSTALL_NONCE") and token not in " ".join(args.values()), args


def _args(cmdline: str) -> dict[str, str]:
    return dict(word.split("=", 1) for word in cmdline.split() if "=" in word)


def test_ipxe_rom_waits_then_installs_once_the_host_is_assigned(lab: Lab, installer: tuple[Path, Path]) -> None:
    net = vm_network(lab)
    start_ra_sender(net.server, net.server_if)
    app = appliance(lab, net, installer, poll_seconds=1).start()
    mac = random_mac()
    vm = Vm(net, VmConfig(boot="network", mac=mac, memory_mb=512)).start()
    # Unknown machine: it polls /boot/<mac>.ipxe, which answers "wait".
    deadline = time.monotonic() + 60
    while app.status()["services"]["http"]["counters"].get("boot_wait", 0) < 2:
        assert time.monotonic() < deadline, f"the VM never polled: {app.log_tail()}"
        assert vm.proc is not None and vm.proc.alive()
        time.sleep(0.2)
    assert "PXE-TEST-BOOTED" not in vm.log()
    # Assigning the host takes effect at the next poll: no restart, no reload.
    app.add_host(mac)
    match = vm.wait_for(MARKER, timeout=90)
    booted = vm.elapsed()
    args = _args(match.group(1))
    assert args["IMAGESERVER"] == str(net.server_ip)
    assert args["HOSTNAME"] == "node01"
    assert (args["IMAGE"], args["VERSION"]) == ("base", "1")
    assert args["MAC"] == mac
    assert_nonce_not_token(args, app)
    assert args["console"] == "ttyS0"
    counters = app.status()["services"]["http"]["counters"]
    assert counters["boot_install"] >= 1
    assert counters["files"] >= 2  # kernel + initrd over HTTP
    machines = app.api(f"/api/v1/machines/{mac}")  # reads need a token: Daemon.api sends the admin token
    assert machines["host"] == "node01" and machines["boot"]["kind"] == "install"
    print(f"\n[timing] iPXE: QEMU start to installer marker {booted:.1f} s (including the wait)")


def test_a_held_machine_is_inspected_by_the_real_installer_and_powers_off(
        lab: Lab, debian_kernel: Kernel, bootenv_cache: Path) -> None:
    """[discovery] inspect: an unknown machine boots the real installer once, which posts its inventory (its
    disk's serial, its NIC) and powers off without writing its disk; its next decision is the wait loop."""
    from appliance.boot.installer import installer_spec

    real = (debian_kernel.vmlinuz, build_initrd(installer_spec(debian_kernel), bootenv_cache))
    net = vm_network(lab)
    start_ra_sender(net.server, net.server_if)
    app = appliance(lab, net, real, poll_seconds=1, extra="[discovery]\ninspect = true\n",
                    kernel_cmdline="console=ttyS0 panic=-1 LLDP_WAIT=2").start()
    mac, disk = random_mac(), lab.tmp_path("inspected.img")
    with open(disk, "wb") as out:
        out.truncate(64 << 20)
    vm = Vm(net, VmConfig(boot="network", mac=mac, memory_mb=512, extra_args=(
        "-drive", f"file={disk},format=raw,if=none,id=d0", "-device", "virtio-blk-pci,drive=d0,serial=INSPECT-0001",
    ))).start()
    vm.wait_for(r"inspection done; powering off", timeout=240)
    inspected = vm.elapsed()
    assert vm.proc is not None
    vm.proc.wait(60)  # powered off: QEMU ends
    inv = app.api(f"/api/v1/machines/{mac}/inventory")["inventory"]
    assert [(d["name"], d["serial"], d["size"]) for d in inv["disks"]] == [("/dev/vda", "INSPECT-0001", 64 << 20)]
    assert [(n["mac_address"], n["driver"], n["lldp"]) for n in inv["interfaces"]] == [(mac, "virtio_net", None)]
    assert inv["system_vendor"]["manufacturer"] == "QEMU"
    with open(disk, "rb") as f:
        assert f.read() == bytes(64 << 20), "inspection writes no disk"
    machine = app.api(f"/api/v1/machines/{mac}")
    assert machine["host"] is None and machine["boot"]["kind"] == "wait", machine
    print(f"\n[timing] inspect: QEMU start to powered off {inspected:.1f} s")


OVMF = Path("/usr/share/ovmf/OVMF.fd")


@pytest.mark.skipif(not OVMF.exists(), reason="OVMF firmware is not installed (Debian package ovmf)")
def test_uefi_ipxe_boots_the_installer(lab: Lab, installer: tuple[Path, Path]) -> None:
    net = vm_network(lab)
    start_ra_sender(net.server, net.server_if)
    app = appliance(lab, net, installer).start()
    mac = random_mac()
    app.add_host(mac)
    vm = Vm(net, VmConfig(boot="network", mac=mac, memory_mb=512, extra_args=("-bios", str(OVMF)))).start()
    match = vm.wait_for(MARKER, timeout=120)
    booted = vm.elapsed()
    args = _args(match.group(1))
    assert args["HOSTNAME"] == "node01" and args["MAC"] == mac
    assert_nonce_not_token(args, app)
    # The EFI stub found the initrd iPXE registered under the name the command line gives.
    assert args["initrd"] == "initrd.img"
    machine = app.api(f"/api/v1/machines/{mac}")  # reads need a token: Daemon.api sends the admin token
    assert machine["arch"] == 7, machine  # DHCP option 93: EFI x86-64, so this really was the UEFI path
    print(f"\n[timing] UEFI iPXE: QEMU start to installer marker {booted:.1f} s")


def test_pxelinux_waits_then_installs_over_tftp(lab: Lab, installer: tuple[Path, Path]) -> None:
    net = vm_network(lab)
    start_ra_sender(net.server, net.server_if)
    app = appliance(lab, net, installer, loader="pxelinux", poll_seconds=1).start()
    mac = random_mac()
    vm = Vm(net, VmConfig(boot="network", mac=mac, memory_mb=512)).start()

    def tftp_configs() -> int:
        return app.status()["services"]["tftp"]["counters"].get("dynamic_served", 0)

    # Unknown: pxelinux shows its prompt for poll_seconds, re-runs itself and asks for its config again.
    deadline = time.monotonic() + 60
    while tftp_configs() < 2:
        assert time.monotonic() < deadline, f"pxelinux never asked twice: {app.log_tail()}"
        assert vm.proc is not None and vm.proc.alive()
        time.sleep(0.2)
    app.add_host(mac)
    match = vm.wait_for(MARKER, timeout=90)
    booted = vm.elapsed()
    cmdline = match.group(1)
    args = _args(cmdline)
    # pxelinux (not iPXE) loaded this kernel: it adds BOOT_IMAGE and its own initrd= argument.
    assert args["BOOT_IMAGE"] == "installer/vmlinuz"
    assert args["initrd"] == "installer/initrd.img"
    assert args["HOSTNAME"] == "node01" and args["MAC"] == mac and args["IMAGE"] == "base"
    assert_nonce_not_token(args, app)
    tftp = app.status()["services"]["tftp"]["counters"]
    assert tftp["dynamic_served"] >= 3  # wait, wait, install
    assert tftp["transfers_completed"] >= 7  # pxelinux.0 + ldlinux.c32 per round, configs, kernel, initrd
    print(f"\n[timing] pxelinux: QEMU start to installer marker {booted:.1f} s (including the wait)")


# A 512-byte MBR that writes a marker to COM1 and halts: xor ax,ax; mov ds,ax; cld; mov si,msg;
# mov dx,0x3f8; next: lodsb; test al,al; jz halt; out dx,al; jmp next; halt: cli; hlt; jmp halt; msg.
LOCAL_MARKER = "LOCAL-DISK-BOOTED"
_MBR_CODE = bytes.fromhex("31c08ed8fc be177c baf803 ac 84c0 7403 ee ebf8 fa f4 ebfc")


def marker_disk(path: Path) -> Path:
    code = _MBR_CODE + LOCAL_MARKER.encode() + b"\r\n\x00"
    assert len(_MBR_CODE) == 23  # msg sits at 0x7c00 + 23 = 0x7c17, as `mov si` says
    sector = code.ljust(510, b"\x00") + b"\x55\xaa"
    path.write_bytes(sector.ljust(1 << 20, b"\x00"))
    return path


def installed_host(lab: Lab, installer: tuple[Path, Path]) -> tuple[VmNetwork, Appliance, str]:
    """A lab network, the appliance, and a host it believes installed (so its boot script says "local")."""
    net = vm_network(lab)
    start_ra_sender(net.server, net.server_if)
    app = appliance(lab, net, installer).start()
    mac = random_mac()
    app.add_host(mac)
    with closing(app.writable_db()) as conn:
        conn.execute("UPDATE hosts SET state = 'installed', running_version = 1 WHERE mac = ?", (mac,))
    return net, app, mac


def test_installed_host_boots_its_local_disk_through_sanboot(lab: Lab, installer: tuple[Path, Path]) -> None:
    net, app, mac = installed_host(lab, installer)
    disk = marker_disk(lab.tmp_path("disk.img"))
    firmware_log = lab.tmp_path("seabios.log")
    # The disk is not in the boot order. (`-boot strict=on` cannot keep SeaBIOS from falling back to it:
    # with strict on, SeaBIOS gives the disk no drive 0x80 at all and sanboot fails.) SeaBIOS's debug
    # console says "Booting from Hard Disk" when the firmware boots the disk itself; it must not.
    # A VGA card (never displayed): without one, iPXE's sanboot under SeaBIOS did not reach the MBR here.
    extra = ("-drive", f"file={disk},format=raw,if=none,id=local", "-device", "virtio-blk-pci,drive=local",
             "-device", "VGA", "-debugcon", f"file:{firmware_log}", "-global", "isa-debugcon.iobase=0x402")
    vm = Vm(net, VmConfig(boot="network", mac=mac, memory_mb=256, extra_args=extra)).start()
    vm.wait_for(LOCAL_MARKER, timeout=60)
    booted = vm.elapsed()
    firmware = firmware_log.read_text(errors="replace")
    assert "Booting from ROM" in firmware  # iPXE ran ...
    assert "Booting from Hard Disk" not in firmware  # ... and the disk was started by its sanboot
    counters = app.status()["services"]["http"]["counters"]
    assert counters["boot_local"] == 1
    assert counters.get("boot_install", 0) == 0 and counters.get("files", 0) == 0
    print(f"\n[timing] local disk via sanboot: QEMU start to marker {booted:.1f} s")


UEFI_LOCAL_MARKER = "LOCAL-ESP-BOOTED"
ESP_TYPE = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"


def esp_marker_disk(path: Path) -> Path:
    """A GPT disk whose ESP holds \\EFI\\BOOT\\BOOTX64.EFI: a standalone GRUB that prints a marker on the
    serial line and halts, i.e. what the firmware's own "boot the disk" entry starts."""
    work = path.parent / "esp-build"
    work.mkdir(exist_ok=True)
    cfg = work / "grub.cfg"
    cfg.write_text(f"serial --unit=0 --speed=115200\nterminal_output serial console\necho {UEFI_LOCAL_MARKER}\n"
                   "halt\n")
    loader = work / "BOOTX64.EFI"
    subprocess.run(["grub-mkstandalone", "-O", "x86_64-efi", "--locales=", "--themes=", "--fonts=",
                    "--install-modules=serial echo halt terminal normal configfile", "-o", str(loader),
                    f"boot/grub/grub.cfg={cfg}"], check=True, capture_output=True, timeout=60)
    esp = work / "esp.img"
    esp.unlink(missing_ok=True)
    subprocess.run(["mkfs.vfat", "-C", str(esp), str(8 * 1024)], check=True, capture_output=True)  # KiB
    subprocess.run(["mmd", "-i", str(esp), "::/EFI", "::/EFI/BOOT"], check=True, capture_output=True)
    subprocess.run(["mcopy", "-i", str(esp), str(loader), "::/EFI/BOOT/BOOTX64.EFI"], check=True, capture_output=True)
    with open(path, "wb") as f:
        f.truncate(16 << 20)
    subprocess.run(["sfdisk", "-q", str(path)], input=f"label: gpt\nstart=2048, size=16384, type={ESP_TYPE}\n",
                   text=True, check=True, capture_output=True)
    with open(path, "r+b") as f:
        f.seek(2048 * 512)
        f.write(esp.read_bytes())
    return path


@pytest.mark.skipif(not OVMF.exists(), reason="OVMF firmware is not installed (Debian package ovmf)")
@pytest.mark.skipif(shutil.which("grub-mkstandalone") is None, reason="grub-mkstandalone is missing (grub-common)")
def test_uefi_installed_host_goes_on_to_its_disk_in_the_firmware_boot_order(lab: Lab,
                                                                             installer: tuple[Path, Path]) -> None:
    """UEFI: network first, disk second in the boot order (as a sysadmin sets PXE nodes up). The boot script of
    an installed host must make edk2 go on to the disk; a plain `exit` (success) opened the setup menu instead."""
    net, app, mac = installed_host(lab, installer)
    disk = esp_marker_disk(lab.tmp_path("esp-disk.img"))
    vm = Vm(net, VmConfig(boot="network", mac=mac, memory_mb=512, disks=(disk,),
                          extra_args=("-bios", str(OVMF)))).start()
    vm.wait_for(UEFI_LOCAL_MARKER, timeout=240)
    booted = vm.elapsed()
    assert "UiApp" not in vm.log()
    counters = app.status()["services"]["http"]["counters"]
    # edk2 has several network entries per NIC (PXE and HTTP boot, v4 and v6) before the disk: each one that
    # reaches us is told "local" and steps on with exit 1. Nothing ever starts the installer.
    assert counters["boot_local"] >= 1
    assert counters.get("boot_install", 0) == 0
    machine = app.api(f"/api/v1/machines/{mac}")  # reads need a token: Daemon.api sends the admin token
    assert machine["arch"] == 7, machine  # the UEFI path
    print(f"\n[timing] UEFI local disk via exit 1: QEMU start to marker {booted:.1f} s")
