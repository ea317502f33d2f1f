"""Boot media in QEMU (TCG): a machine that does not PXE boot starts the installer from an ISO or a
USB image made by `imageserver mkbootmedia`, and the installer takes its settings from the medium's
local.cfg (not DHCP: none runs here, and the kernel command line names nothing).

The lab's server namespace runs busybox httpd with an autoinstall script for the VM's MAC at
/install/MAC/script; the script prints what it was given. So one marker proves the chain: firmware ->
isolinux / syslinux / GRUB EFI -> kernel + initrd -> /init -> local.cfg from the medium -> static
network from it -> the script fetched from the IMAGESERVER it names. (The BIOS ISO path is proven
by a whole install in tests/e2e/test_media_reinstall.py.)
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from appliance.boot import bootmedia
from appliance.boot.installer import install_bootenv
from appliance.boot.installer.runtime import RUNTIME_PATH
from lab.netns import Lab
from lab.qemu import Vm, VmConfig, VmNetwork, qemu_unavailable_reason, vm_network
from lab.servers import start_httpd

REPO = Path(__file__).resolve().parents[2]
OVMF = Path("/usr/share/ovmf/OVMF.fd")
pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(qemu_unavailable_reason() is not None, reason=str(qemu_unavailable_reason())),
    pytest.mark.skipif(not Path("/usr/lib/ISOLINUX/isolinux.bin").exists(), reason="isolinux is not installed"),
]

MAC = "52:54:00:b0:07:01"
SCRIPT = """\
echo "MEDIA-SCRIPT-SAW host=$HOSTNAME ip=$IPADDR mask=$NETMASK gw=$GATEWAY server=$IMAGESERVER"
exit 0
"""
# What the installer prints once its network is up from local.cfg: "network: IFACE MAC IP/MASK gw GW ...".
NETWORK_LINE = r"imageserver-installer: network: (\S+) (\S+) (\S+)/(\S+) gw (\S+) imageserver (\S+)"


@pytest.fixture
def net(lab: Lab, tmp_path: Path) -> Iterator[VmNetwork]:
    network = vm_network(lab)
    www = tmp_path / "www"
    (www / "install" / MAC).mkdir(parents=True)
    (www / "install" / MAC / "script").write_text(SCRIPT)
    start_httpd(network.server, network.server_ip, www)
    yield network


@pytest.fixture
def state(tmp_path: Path, bootenv_cache: Path, debian_kernel) -> Path:
    install_bootenv(tmp_path / "state", bootenv_cache, debian_kernel.package)
    return tmp_path / "state"


def make_media(state: Path, net: VmNetwork, kind: str, out: Path, *extra: str) -> dict[str, str]:
    values = {"IMAGESERVER": str(net.server_ip), "HOSTNAME": "media7", "IPADDR": str(net.host(77)),
              "NETMASK": "255.255.255.0", "GATEWAY": str(net.server_ip), "DEVICE": "eth0"}
    env = {**os.environ, "PYTHONPATH": str(REPO), "IMAGESERVER_CONFIG": "/nonexistent/imageserver.toml"}
    args = [arg for k, v in values.items() for arg in ("--set", f"{k}={v}")]
    subprocess.run([sys.executable, "-m", "appliance.cli", "mkbootmedia", "--state-dir", str(state), f"--{kind}",
                    str(out), "--append", "console=ttyS0,115200 panic=-1", "--timeout", "1", *args, *extra],
                   check=True, env=env, cwd=REPO, capture_output=True, timeout=120)
    return values


def check_installer_took_local_cfg(vm: Vm, values: dict[str, str], device: str) -> None:
    vm.wait_for(rf"imageserver-installer: using local.cfg from {device}", timeout=90)
    line = vm.wait_for(NETWORK_LINE, timeout=30).groups()
    assert line == (values["DEVICE"], MAC, values["IPADDR"], values["NETMASK"], values["GATEWAY"],
                    f"http://{values['IMAGESERVER']}"), line
    saw = vm.wait_for(r"MEDIA-SCRIPT-SAW (.*)", timeout=30).group(1).strip()
    assert saw == (f"host={values['HOSTNAME']} ip={values['IPADDR']} mask={values['NETMASK']} "
                   f"gw={values['GATEWAY']} server={values['IMAGESERVER']}")
    assert "udhcpc" not in vm.log(), "local.cfg gave a static address: no DHCP"


def blank_disk(tmp_path: Path) -> Path:
    disk = tmp_path / "disk.img"
    with open(disk, "wb") as f:
        f.truncate(32 << 20)
    return disk


def cdrom(iso: Path) -> tuple[str, ...]:
    # bootindex 0: before the blank disk (1) and the NIC; the firmware boots the CD.
    return ("-drive", f"file={iso},media=cdrom,if=none,id=cd0,readonly=on", "-device", "ide-cd,drive=cd0,bootindex=0")


def test_bios_machine_boots_the_usb_stick_and_the_installer_reads_local_cfg(net: VmNetwork, state: Path,
                                                                             tmp_path: Path) -> None:
    # The script also runs the autoinstall scripts' own disk choice (the runtime in the installer initrd):
    # the stick is never a target.
    (tmp_path / "www" / "install" / MAC / "script").write_text(  # what the net fixture's httpd serves
        f". {RUNTIME_PATH}/lib/disks.sh\n"
        f"echo \"MEDIA-DISKS media=$MEDIA_DEVICE targets=$(list_disks | tr '\\n' ' ')\"\n{SCRIPT}")
    usb = tmp_path / "media.img"
    values = make_media(state, net, "usb", usb, "--efi", "no")
    # A real USB stick on an xHCI controller, first in the boot order; the machine's disk is virtio.
    stick = ("-device", "qemu-xhci,id=xhci", "-drive", f"file={usb},format=raw,if=none,id=stick",
             "-device", "usb-storage,bus=xhci.0,drive=stick,bootindex=0")
    with Vm(net, VmConfig(boot="disk", mac=MAC, disks=[blank_disk(tmp_path)], extra_args=stick)) as vm:
        vm.wait_for(r"SYSLINUX", timeout=60)
        vm.wait_for(r"imageserver-installer: boot medium: /dev/sda1", timeout=90)
        check_installer_took_local_cfg(vm, values, "/dev/sda1")
        assert vm.wait_for(r"MEDIA-DISKS (.*)", timeout=5).group(1).strip() == "media=/dev/sda1 targets=/dev/vda"


@pytest.mark.skipif(not OVMF.exists(), reason="OVMF firmware is not installed (Debian package ovmf)")
@pytest.mark.skipif(not bootmedia.efi_available(), reason="GRUB EFI (grub-efi-amd64-bin) is not installed")
def test_uefi_machine_boots_the_iso_through_grub(net: VmNetwork, state: Path, tmp_path: Path) -> None:
    iso = tmp_path / "media-efi.iso"
    values = make_media(state, net, "iso", iso, "--efi", "yes")
    config = VmConfig(boot="disk", mac=MAC, disks=[blank_disk(tmp_path)],
                      extra_args=("-bios", str(OVMF), *cdrom(iso)))
    with Vm(net, config) as vm:
        vm.wait_for(r"Booting `imageserver installer'", timeout=90)
        check_installer_took_local_cfg(vm, values, "/dev/sr0")
