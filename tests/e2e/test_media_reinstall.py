"""A machine that never PXE boots, end to end: installed from an ISO, then reinstalled on demand.

The demo's imageserver (lab/demo/scenario.py: lab network, master client captured with
prepareclient + getimage, mkbootenv) serves image `demo`. Then:

1. `imageserver mkbootmedia --iso` with local.cfg (IMAGESERVER, HOSTNAME, static IPADDR/NETMASK/GATEWAY);
   a BIOS VM boots the ISO (CD first), the installer takes local.cfg, installs the disk and the host
   is *installed* (the install's reports authenticated with the token its script carried).
2. The installed disk (loop-mounted on the host) holds /etc/systemimager/updateclient.conf from the
   install; `updateclient --root DISK --autoinstall` (in a namespace at node1's own address, talking HTTP to the
   imageserver like the machine would) marks the host for reinstall and makes the installer the
   disk's extlinux default.
3. The VM boots its disk only: extlinux starts the installer with a fresh token, the host installs
   again, and after that the disk boots the installed system (the install rewrote the boot loader).
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from appliance.boot.installer.runtime import client_script
from lab.demo.disk import loop_partition, mounted
from lab.demo.scenario import MARKER_RE, DemoLab
from lab.netns import lab_unavailable_reason
from lab.qemu import Vm, VmConfig, qemu_unavailable_reason
from tests.e2e._sites import demo_image_site

REPO = Path(__file__).resolve().parents[2]
pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(qemu_unavailable_reason() is not None, reason=str(qemu_unavailable_reason())),
    pytest.mark.skipif(lab_unavailable_reason() is not None, reason=str(lab_unavailable_reason())),
    pytest.mark.skipif(not Path("/usr/lib/ISOLINUX/isolinux.bin").exists(), reason="isolinux is not installed"),
]


@pytest.fixture
def demo(bootenv_cache: Path, debian_kernel, lab_sweep: list[str]) -> Iterator[DemoLab]:
    with demo_image_site(bootenv_cache, debian_kernel) as demo:
        yield demo


def timeline_stages(demo: DemoLab, name: str) -> list[str]:
    assert demo.app is not None
    return [e["stage"] for e in demo.app.get(f"/api/v1/hosts/{name}")["timeline"]]


def test_iso_install_then_updateclient_autoinstall_reinstalls_from_the_disk(demo: DemoLab) -> None:
    app, net = demo.app, demo.net
    assert app is not None and net is not None
    install = demo.new_install("node1", 256)
    # 1. The ISO, with local.cfg naming everything: no DHCP, no PXE. The host has that fixed address on the
    # imageserver too: its install script is served only to the address that is the host's.
    ip = str(net.host(61))
    demo.add_host(install.name, install.mac, ip)
    iso = demo.lab.tmp_path("node1.iso")
    local = {"IMAGESERVER": str(net.server_ip), "HOSTNAME": "node1", "IPADDR": ip, "NETMASK": "255.255.255.0",
             "GATEWAY": str(net.server_ip)}
    out = app.cli("mkbootmedia", "--iso", str(iso), "--efi", "no", "--timeout", "1",
                  *[a for k, v in local.items() for a in ("--set", f"{k}={v}")])
    assert "local.cfg" in out, out
    cdrom = ("-drive", f"file={iso},media=cdrom,if=none,id=cd0,readonly=on", "-device", "ide-cd,drive=cd0,bootindex=0")
    vm = Vm(net, VmConfig(boot="disk", mac=install.mac, disks=[install.disk], memory_mb=512, extra_args=cdrom))
    install.power_on = time.monotonic()
    install.vm = vm.start()
    vm.wait_for(r"imageserver-installer: using local.cfg from /dev/sr0", timeout=90)
    vm.wait_for(rf"imageserver-installer: network: \S+ {install.mac} {ip}/", timeout=30)
    demo.follow([install], timeout=150)
    host = app.get("/api/v1/hosts/node1")
    assert host["state"] == "installed", (host, vm.log()[-3000:])
    vm.wait_exit(timeout=60)  # the installer's reboot ends QEMU (-no-reboot)

    # 2. updateclient --autoinstall on the installed disk, with the settings the install left there.
    with loop_partition(install.disk) as device, mounted(device) as root:
        # The install fetched updateclient from the imageserver (GET /client/updateclient): use that copy.
        script = root / "usr/local/sbin/updateclient"
        assert script.read_bytes() == client_script(REPO / "appliance/data/updateclient")  # as served
        conf = (root / "etc/systemimager/updateclient.conf").read_text()
        assert f"IMAGESERVER=http://{net.server_ip}" in conf and "HOSTNAME=node1" in conf and "TOKEN=" in conf
        # From node1's own address (its update token is good only from there), as the installed system would.
        node1 = net.machine_at(ipaddress.IPv4Address(ip))
        result = node1.run(["sh", str(script), "--root", str(root), "--autoinstall"], check=False, timeout=60)
        assert result.returncode == 0, result.stdout + result.stderr
        extlinux = (root / "boot/extlinux/extlinux.conf").read_text()
        assert extlinux.startswith("DEFAULT imageserver-autoinstall"), extlinux
    assert app.get("/api/v1/hosts/node1")["state"] == "assigned"

    # 3. The disk alone: extlinux starts the installer, which installs again and reports with the new token.
    vm = Vm(net, VmConfig(boot="disk", mac=install.mac, disks=[install.disk], memory_mb=512))
    install.vm = vm.start()
    vm.wait_for(r"imageserver-installer: starting", timeout=90)
    demo.follow([install], timeout=150)
    assert app.get("/api/v1/hosts/node1")["state"] == "installed"
    assert timeline_stages(demo, "node1").count("done") >= 1
    vm.wait_exit(timeout=60)
    vm = Vm(net, VmConfig(boot="disk", mac=install.mac, disks=[install.disk], memory_mb=512))
    install.vm = vm.start()
    assert vm.wait_for(MARKER_RE, timeout=90).group(1) == "node1"  # the installed system, not the installer
    assert vm.log().count("imageserver-installer: starting") == 0

