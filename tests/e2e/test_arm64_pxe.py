"""arm64 end to end: a real arm64 Debian 12 master (built on this amd64 box: tests/e2e/_debianmaster.py
ARM64_BOOKWORM, its maintainer scripts run by qemu-user in a user namespace of their own) is captured, and a
blank arm64 VM (qemu-system-aarch64 -M virt, Cortex-A57 under TCG, Debian's AAVMF firmware) PXE-installs
it and boots its own disk to `login:` as itself.

The chain under test, all of it arm64 and the boot environment built on this amd64 box by `mkbootenv --arch
arm64`: AAVMF's own PXE (option 93 = 11) -> our DHCP names grubaa64.efi (Debian's signed network GRUB) ->
TFTP -> GRUB reads grub/grub.cfg, then grub/grub.cfg-01-<mac> rendered from the same boot decision iPXE
machines get, and picks installer-arm64/ by its $grub_cpu -> Debian's arm64 kernel + our initrd with the
arm64 userland -> the installer reports with `uname -r` (the arm64 kernel), partitions, copies the image
and installs the image's GRUB with --target=arm64-efi at the removable path EFI/BOOT/BOOTAA64.EFI (the VM's
NVRAM keeps no entry) -> the VM boots its disk: its hostname, its own machine-id and ssh host keys, root by
UUID, its reserved address (the serial report of _debianmaster) and the disk checks of test_real_debian.

And the arch rules on the way, in the same site (one arm64 VM: TCG time is the suite's budget):
- getimage records the image's architecture, arm64, from the master's ELF binaries;
- an x64 machine (its DHCP said option 93 = 7) given the arm64 image is refused with the reason;
- the arm64 VM's host was first assigned the amd64 demo image before its machine was ever seen (nothing to
  check then): at boot its firmware says arm64, and the boot decision refuses the install with the reason
  (the host's status, GRUB's console) instead of serving an installer; assigned the arm64 image, it installs;
- the status document lists both installers, amd64 and arm64.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from appliance.boot.installer import install_bootenv
from lab.demo.disk import loop_partition, mounted
from lab.demo.scenario import DemoLab
from lab.netns import Lab, lab_unavailable_reason
from lab.qemu import Vm, VmConfig, aarch64_unavailable_reason, random_mac
from tests.e2e import _debianmaster as dm
from tests.e2e._foreignarch import unavailable_reason as foreign_unavailable_reason
from tests.e2e.test_real_debian import boot_to_login, capture, check_disk, check_report, fs_uuid

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(aarch64_unavailable_reason() is not None, reason=str(aarch64_unavailable_reason())),
    pytest.mark.skipif(lab_unavailable_reason() is not None, reason=str(lab_unavailable_reason())),
    pytest.mark.skipif(foreign_unavailable_reason("arm64") is not None,
                       reason=str(foreign_unavailable_reason("arm64"))),
]

IMAGE = "debian12-arm64"
X64_MAC = "52:54:00:07:00:07"


@pytest.fixture(scope="module")
def arm64_site(bootenv_cache: Path, debian_kernel, lab_sweep: list[str]) -> Iterator[DemoLab]:
    with Lab() as lab:
        demo = DemoLab(lab, cache_dir=bootenv_cache, kernel_package=debian_kernel.package, say=print)
        demo.kernel = debian_kernel
        demo.network()
        demo.master_tree()
        # arm64's serial console is the PL011 (ttyAMA0); GRUB's own lines go there too.
        demo.appliance(kernel_cmdline="console=ttyAMA0,115200 panic=-1")
        demo.capture()  # the amd64 demo image "demo": the image of the wrong architecture below
        demo.bootenv()
        yield demo


def sight_x64_machine(demo: DemoLab) -> None:
    """An x64 UEFI PXE ROM's DISCOVER/REQUEST (option 93 = 7) from the master's namespace: the machine is known
    as x64 (what a real one's firmware says before anything is assigned to it)."""
    assert demo.master is not None
    links = demo.master.run(["ip", "-o", "link", "show"]).stdout
    iface = next(m.group(1) for m in re.finditer(r"^\d+: ([^:@]+)", links, re.M) if m.group(1) != "lo")
    x64 = {"93": "0007", "60": b"PXEClient:Arch:00007:UNDI:003016".hex()}
    argv = [sys.executable, "-m", "tests.system._rawdhcp", iface, "discover",
            json.dumps([{"mac": X64_MAC, "options": x64, "request": True}])]
    assert demo.app is not None
    reply = json.loads(demo.master.run(argv, timeout=60, env=demo.app.env()).stdout)[0]
    assert reply["ack"] is not None, reply


def test_arm64_master_installs_over_pxe_on_an_arm64_vm_and_boots_its_disk_as_itself(arm64_site: DemoLab) -> None:
    demo = arm64_site
    app = demo.app
    assert app is not None and demo.net is not None
    started = time.monotonic()
    env = install_bootenv(app.state_dir, demo.cache_dir, arch="arm64")
    mkbootenv_seconds = time.monotonic() - started
    assert env.kernel_package.endswith("-arm64") and env.vmlinuz.parent.name == "installer-arm64"
    release = env.kernel_package.removeprefix("linux-image-")
    installers = app.get("/api/v1/status")["services"]["bootfiles"]["installers"]
    assert set(installers) == {"amd64", "arm64"}, installers
    assert installers["arm64"] == {"kernel": "installer-arm64/vmlinuz", "initrd": "installer-arm64/initrd.img"}

    started = time.monotonic()
    master = dm.new_master(demo.cache_dir, demo.lab.tmp_path("arm64").parent, "uefi", dm.ARM64_BOOKWORM)
    master_seconds = time.monotonic() - started
    started = time.monotonic()
    capture(demo, master, IMAGE)
    capture_seconds = time.monotonic() - started
    arches = {(i["name"], i["arch"]) for i in app.get("/api/v1/images")["images"]}
    assert {(IMAGE, "arm64"), ("demo", "x86_64")} <= arches, arches

    # An x64 machine is not given the arm64 image: refused, with the reason, nothing written.
    sight_x64_machine(demo)
    refused = app.run_cli("hosts", "add", "x64node", "--mac", X64_MAC, "--image", IMAGE, timeout=60)
    assert refused.returncode != 0, refused.stdout
    assert "the image is arm64" in refused.stderr and "client architecture 7" in refused.stderr, refused.stderr
    assert app.run_cli("hosts", "show", "x64node", timeout=60).returncode != 0

    # The arm64 machine's host, assigned the amd64 demo image before the machine was ever seen.
    name = "arm1"
    install = demo.new_install(name, 1536, mac=random_mac())
    app.cli("hosts", "add", name, "--mac", install.mac, "--image", "demo")
    install.power_on = time.monotonic()
    vm = Vm(demo.net, VmConfig(boot="network", mac=install.mac, disks=[install.disk], memory_mb=1024,
                               arch="aarch64")).start()
    install.vm = vm
    try:
        refusal = vm.wait_for(r"imageserver: refused to install demo v\d+ on host arm1: [^\r\n]*", timeout=240)
        boot = app.get(f"/api/v1/hosts/{name}")["boot"]
        assert boot["kind"] == "wait" and "the image is x86_64" in boot["reason"], boot
        assert "client architecture 11" in boot["reason"], boot
        assert not any(e["stage"] == "installer" for e in app.get(f"/api/v1/hosts/{name}").get("timeline") or [])
        refused_after = time.monotonic() - install.power_on
        # Given the arm64 image, the same GRUB loop installs it at its next ask.
        app.cli("hosts", "set", name, "--image", IMAGE)
        grub = vm.wait_for(rf"imageserver: installing image {IMAGE} v\d+ on arm1", timeout=120)
        grub_after = time.monotonic() - install.power_on
        demo.follow([install], timeout=1800)
        host = app.get(f"/api/v1/hosts/{name}")
        stages = [e["stage"] for e in host["timeline"]]
        first = next(e for e in host["timeline"] if e["stage"] == "installer")
        vm.wait_exit(timeout=180)
    finally:
        log = vm.log()
        vm.stop()
    assert host["state"] == "installed", (host["state"], stages, log[-3000:])
    assert release in str(first.get("detail")), first  # "<iface> <address>, kernel <uname -r>"
    assert grub.group(0) in log and f"imageserver-installer: starting ({release})" in log, log[-3000:]
    assert {"identity", "initramfs", "bootloader"} <= set(stages), stages
    bootloader = next(e for e in host["timeline"] if e["stage"] == "bootloader")
    assert "grub for UEFI" in str(bootloader.get("detail")), bootloader

    # Its own disk, through AAVMF's removable-media path (no NVRAM entry), to login as itself.
    vm = Vm(demo.net, VmConfig(boot="disk", mac=install.mac, disks=[install.disk], memory_mb=1024,
                               arch="aarch64")).start()
    report, log, login_after = boot_to_login(vm, name, 900, report_timeout=300)
    print(f"\n[timing] arm64: mkbootenv --arch arm64 {mkbootenv_seconds:.0f} s; master tree (cached or built) "
          f"{master_seconds:.0f} s; capture {capture_seconds:.0f} s; power-on -> refused {refused_after:.0f} s; "
          f"-> GRUB's install line {grub_after:.0f} s; -> installed {install.installed_after:.0f} s; "
          f"own disk -> login: {login_after:.0f} s")
    print("refusal:", refusal.group(0))
    ifname = check_report(demo, master, name, report, log)

    with loop_partition(install.disk, 2) as device, mounted(device, "ext4") as root:
        check_disk(root, fs_uuid(device), master, name, ifname, dm.ARM64_BOOKWORM, install.mac)
    # The ESP read with mtools (the host's kernel may have no vfat): GRUB at the removable path, which AAVMF
    # found with no NVRAM entry (the boot above went through it).
    with loop_partition(install.disk, 1) as esp:
        listing = subprocess.run(["mdir", "-a", "-b", "-/", "-i", esp, "::/"], capture_output=True, text=True,
                                 check=True).stdout
    assert "::/EFI/BOOT/BOOTAA64.EFI" in listing.upper(), listing
