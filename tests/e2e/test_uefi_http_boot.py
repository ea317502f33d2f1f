"""UEFI HTTP boot end to end: OVMF with its PXE switched off (fw_cfg IPv4PXESupport=no, IPv6PXESupport=no)
and no iPXE option ROM on the NIC boots over HTTPv4 first (LAB.md), so the firmware's own HTTP boot client is
what asks: DHCPDISCOVER with option 60 "HTTPClient:Arch:00016" and option 93 = 16 -> our OFFER with the URL
of ipxe.efi as boot file and "HTTPClient" echoed -> HEAD + GET http://<imageserver>/boot/files/ipxe.efi ->
iPXE asks again (user class iPXE) -> the host's boot script (install) -> the installer installs the real
Debian 12 UEFI master's image (tests/e2e/_debianmaster.py, cached) -> the machine boots its own disk to
`login:` as itself. TFTP sees no request at all: the daemon's TFTP counters stay empty.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab.demo.disk import loop_partition, mounted
from lab.demo.scenario import DemoLab
from lab.netns import lab_unavailable_reason
from lab.qemu import BootFrom, Vm, VmConfig, qemu_unavailable_reason, random_mac
from tests.e2e import _debianmaster as dm
from tests.e2e._sites import real_os_site
from tests.e2e.test_real_debian import OVMF, boot_to_login, capture, check_disk, check_report, fs_uuid

IMAGE = "debian12-http"
# OVMF's PXE off: its boot options for the NIC are then HTTPv4 and HTTPv6 only (edk2's fw_cfg switches).
HTTP_BOOT_ONLY = ("-bios", str(OVMF),
                  "-fw_cfg", "name=opt/org.tianocore/IPv4PXESupport,string=no",
                  "-fw_cfg", "name=opt/org.tianocore/IPv6PXESupport,string=no")

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(qemu_unavailable_reason() is not None, reason=str(qemu_unavailable_reason())),
    pytest.mark.skipif(lab_unavailable_reason() is not None, reason=str(lab_unavailable_reason())),
    pytest.mark.skipif(not OVMF.exists(), reason="OVMF firmware is not installed (Debian package ovmf)"),
]


@pytest.fixture(scope="module")
def site(bootenv_cache: Path, debian_kernel, lab_sweep: list[str]) -> Iterator[DemoLab]:
    with real_os_site(bootenv_cache, debian_kernel) as demo:
        yield demo


def test_ovmf_http_boot_installs_a_machine_without_tftp(site: DemoLab) -> None:
    app = site.app
    assert app is not None and site.net is not None
    started = time.monotonic()
    master = dm.new_master(site.cache_dir, site.lab.tmp_path("uefi").parent, "uefi")
    capture(site, master, IMAGE)
    # getimage read the architecture from the captured tree's own /bin/sh (merged /usr: links inside the tree).
    assert [i["arch"] for i in app.get("/api/v1/images")["images"] if i["name"] == IMAGE] == ["x86_64"]
    name = "node7"
    install = site.new_install(name, 1536, mac=random_mac())
    app.cli("hosts", "add", name, "--mac", install.mac, "--image", IMAGE)

    def machine(boot: BootFrom) -> VmConfig:
        return VmConfig(boot=boot, mac=install.mac, disks=[install.disk], memory_mb=768, option_rom=False,
                        extra_args=HTTP_BOOT_ONLY)

    install.power_on = time.monotonic()
    install.vm = Vm(site.net, machine("network")).start()
    site.follow([install], timeout=600)
    host = app.get(f"/api/v1/hosts/{name}")
    assert host["state"] == "installed", host
    install.vm.wait_exit(timeout=120)
    firmware_log = install.vm.log()

    # The firmware itself booted over HTTP: our DHCP server answered it as an HTTPClient (the machine record
    # shows iPXE's later requests, arch 7), and the installer came from that chain; TFTP saw nothing.
    services = app.get("/api/v1/status")["services"]
    assert services["dhcp"]["counters"].get("http_boot_replies", 0) >= 2, services["dhcp"]["counters"]  # OFFER+ACK
    assert "imageserver-installer: starting" in firmware_log, firmware_log[-3000:]
    http, tftp = services["http"]["counters"], services["tftp"]["counters"]
    assert not any(tftp.values()), f"TFTP saw requests: {tftp}"
    assert http.get("files", 0) >= 3, http  # ipxe.efi, the installer's kernel and initrd
    assert app.get(f"/api/v1/machines/{install.mac}")["boot"]["kind"] == "local"

    # Its own disk, first in the boot order (as test_real_debian's UEFI install): login as itself.
    report, log, login_after = boot_to_login(Vm(site.net, machine("disk")).start(), name, 420)
    ifname = check_report(site, master, name, report, log)
    with loop_partition(install.disk, 2) as device, mounted(device) as root:
        check_disk(root, fs_uuid(device), master, name, ifname)
    assert not any(app.get("/api/v1/status")["services"]["tftp"]["counters"].values())
    print(f"\n[timing] UEFI HTTP boot: power-on -> installed {install.installed_after:.0f} s; own disk -> login "
          f"{login_after:.0f} s; whole test {time.monotonic() - started:.0f} s; http counters {http}")
