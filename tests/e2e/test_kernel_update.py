"""A real Debian 12 machine moves to an image version with another kernel: updateclient, reboot, login.

v1 of the image is the real Debian master (tests/e2e/_debianmaster.py) with curl and a getty on its
second serial port; v2 is the same system with linux-image-cloud-amd64 instead of the generic kernel
(tests/e2e/_kernelswap.py, made by apt in a chroot, cached). Both are captured with the real
prepareclient + getimage as versions 1 and 2 of one image. A QEMU VM (TCG, BIOS) is installed with
v1 over PXE and boots its own disk; v2 is captured while it boots. This install and first boot are the
suite's Debian 12 BIOS one (one VM test per capability) and carry every check of test_real_debian.py: the
copy progress never goes back, the install's timeline stages, the running clone's report (its hostname,
a predictable NIC name, its reserved address, a machine-id not the master's, no wait for the master's
swap) and check_disk on the disk as v1 installed it (copied before the first boot; v1 has the master's
per-machine state planted, as test_real_debian's masters). The test logs in as root on the
VM's second serial port (a unix socket: the lab's first serial console is an output file), checks it
runs the generic kernel, runs the installed `updateclient` (no arguments: the host follows the image's
newest version) and reboots. The machine comes back on the cloud kernel to `login:`, with the same
hostname, machine-id and reserved address, GRUB naming only the new kernel; a second updateclient,
run on the new kernel, removes the old kernel's modules that the first one had to keep while that
kernel was running.
"""

from __future__ import annotations

import re
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from appliance.images.layout import parse_sfdisk_dump
from lab.demo.scenario import DemoLab
from lab.netns import lab_unavailable_reason
from lab.qemu import Vm, VmConfig, qemu_unavailable_reason
from tests.e2e import _debianmaster as dm
from tests.e2e import _kernelswap as ks
from tests.e2e._sites import real_os_site
from tests.e2e.test_real_debian import REPORT, capture, check_installed_disk, check_report, install_over_pxe

IMAGE = "debian12k"
# TCG on a shared 2-core box: a real Debian boot took 5-7 minutes to login under a load of 12.
LOGIN_TIMEOUT = 900
NAME = "knode1"

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(qemu_unavailable_reason() is not None, reason=str(qemu_unavailable_reason())),
    pytest.mark.skipif(lab_unavailable_reason() is not None, reason=str(lab_unavailable_reason())),
]


class SerialShell:
    """A root shell over the VM's second serial port (QEMU's unix socket chardev), by logging in."""

    def __init__(self, path: Path, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                self.sock.connect(str(path))
                break
            except OSError:
                self.sock.close()
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        self.buf = ""
        self.lock = threading.Lock()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        while True:
            try:
                data = self.sock.recv(4096)
            except OSError:
                return
            if not data:
                return
            with self.lock:
                self.buf += data.decode(errors="replace")

    def send(self, text: str) -> None:
        self.sock.sendall(text.encode())

    def expect(self, pattern: str, timeout: float, since: int = 0, poke: str | None = None) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        next_poke = time.monotonic()
        while time.monotonic() < deadline:
            with self.lock:
                m = re.compile(pattern, re.M | re.S).search(self.buf, since)
            if m:
                return m
            if poke is not None and time.monotonic() >= next_poke:
                self.send(poke)
                next_poke = time.monotonic() + 5
            time.sleep(0.2)
        raise AssertionError(f"no {pattern!r} on ttyS1 within {timeout} s; tail:\n{self.buf[-3000:]}")

    def login(self, timeout: float = 600) -> None:
        # agetty prints its prompt once at start (maybe before we connected): an empty line asks again.
        self.expect(r"login: $", timeout, poke="\r")
        mark = len(self.buf)
        self.send("root\r")
        self.expect(r"Password: ", 30, since=mark)
        mark = len(self.buf)
        self.send(f"{dm.ROOT_PASSWORD}\r")
        self.expect(r"# $", 60, since=mark)
        self.run("stty -echo cols 1000", 30)

    def run(self, command: str, timeout: float) -> tuple[int, str]:
        """Run `command` in the root shell: (exit status, output)."""
        tag = f"T{time.monotonic_ns()}"
        with self.lock:
            mark = len(self.buf)
        self.send(f"echo {tag}-BEGIN; {command}; echo {tag}-RC=$?\r")
        # Not anchored: bash's bracketed-paste escape precedes the output; the echoed command line
        # (before stty -echo) has "; " after BEGIN and "$?" after RC=, so it never matches.
        m = self.expect(rf"{tag}-BEGIN\r?\n(.*?){tag}-RC=(\d+)", timeout, since=mark)
        return int(m.group(2)), m.group(1).replace("\r", "")

    def close(self) -> None:
        self.sock.close()


@pytest.fixture(scope="module")
def site(bootenv_cache: Path, debian_kernel, lab_sweep: list[str]) -> Iterator[DemoLab]:
    with real_os_site(bootenv_cache, debian_kernel) as demo:
        yield demo


def boot(demo: DemoLab, mac: str, disk: Path) -> tuple[Vm, Path]:
    """The installed machine from its disk (PXE first: the imageserver says local), ttyS1 on a socket."""
    assert demo.net is not None
    sock = demo.lab.tmp_path("ttyS1.sock")
    extra = ("-chardev", f"socket,id=ttys1,path={sock},server=on,wait=off", "-serial", "chardev:ttys1")
    vm = Vm(demo.net, VmConfig(boot="network", mac=mac, disks=[disk], memory_mb=768, extra_args=extra)).start()
    return vm, sock


def test_bios_update_to_another_kernel_reboots_to_login_as_the_same_machine(site: DemoLab) -> None:
    app = site.app
    assert app is not None
    work = site.lab.tmp_path("kernelswap").parent
    v1 = ks.new_master(site.cache_dir, work, 1)
    v2 = ks.new_master(site.cache_dir, work, 2)
    [generic] = ks.kernel_releases(v1.root)
    [cloud] = ks.kernel_releases(v2.root)
    assert generic != cloud and "cloud" in cloud
    capture(site, v1, IMAGE)

    install = install_over_pxe(site, IMAGE, NAME, timeout=1200)
    # The disk as v1 installed it, for check_disk once the first boot has named its NIC (the VM writes to
    # install.disk from its first boot on, and updates it to v2 before it is ever powered off).
    installed = site.lab.tmp_path(f"{NAME}-v1-disk.img")
    subprocess.run(["cp", "--sparse=always", str(install.disk), str(installed)], check=True)

    vm, sock = boot(site, install.mac, install.disk)
    started = time.monotonic()
    # v2 is captured while the machine boots (the host follows the image's newest version).
    capture(site, v2, IMAGE)
    assert [v["version"] for v in app.get("/api/v1/images")["images"] if v["name"] == IMAGE] == [1, 2]
    try:
        vm.wait_for(rf"{NAME} login:", timeout=LOGIN_TIMEOUT)
        first_login = time.monotonic() - started
        print(f"\n[timing] install (power-on -> installed) {install.installed_after:.0f} s; "
              f"own disk boot -> login {first_login:.0f} s")
        before = vm.wait_for(REPORT, timeout=300).groups()
        t0 = time.monotonic()
        ifname = check_report(site, v1, NAME, before, vm.log())
        check_installed_disk(installed, v1, NAME, ifname, install.mac)
        installed.unlink()
        print(f"[timing] checks of the report and the v1 disk {time.monotonic() - t0:.0f} s")
        shell = SerialShell(sock)
        shell.login()
        assert shell.run("uname -r", 30) == (0, f"{generic}\n")
        t0 = time.monotonic()
        rc, out = shell.run("updateclient 2>&1", 1500)
        update_took = time.monotonic() - t0
        print(f"[timing] updateclient v1 -> v2 (new kernel, initramfs + grub.cfg regenerated) {update_took:.0f} s")
        print("updateclient:", out)
        assert rc == 0, out
        assert "kernels changed" in out and "grub.cfg regenerated" in out, out
        # The running kernel's modules are kept until it is no longer running; the new kernel is in place.
        assert shell.run("ls -1 /lib/modules", 30) == (0, "".join(f"{k}\n" for k in sorted([generic, cloud])))
        boot_files = shell.run("ls -1 /boot", 30)[1].split()
        assert f"vmlinuz-{cloud}" in boot_files and f"initrd.img-{cloud}" in boot_files, boot_files
        assert not [f for f in boot_files if generic in f], boot_files
        rc, grub = shell.run("grep -c vmlinuz-" + generic + " /boot/grub/grub.cfg; grep -c vmlinuz-" + cloud
                             + " /boot/grub/grub.cfg", 30)
        assert grub.split()[0] == "0" and int(grub.split()[1]) >= 1, grub
        shell.send("systemctl reboot\r")
        vm.wait_exit(timeout=600)
        shell.close()
    finally:
        log = vm.log()
        vm.stop()
    host = app.get(f"/api/v1/hosts/{NAME}")
    assert host["running_version"] == 2, host

    vm, sock = boot(site, install.mac, install.disk)
    started = time.monotonic()
    try:
        vm.wait_for(rf"{NAME} login:", timeout=LOGIN_TIMEOUT)
        second_login = time.monotonic() - started
        print(f"[timing] reboot -> login on the new kernel {second_login:.0f} s")
        after = vm.wait_for(REPORT, timeout=300).groups()
        shell = SerialShell(sock)
        shell.login()
        assert shell.run("uname -r", 30) == (0, f"{cloud}\n")
        assert shell.run("cat /etc/hostname", 30) == (0, f"{NAME}\n")
        # The old kernel is not running any more: the next update takes its modules away.
        rc, out = shell.run("updateclient 2>&1", 600)
        assert rc == 0, out
        assert "kernels changed" not in out, out
        assert shell.run("ls -1 /lib/modules", 30) == (0, f"{cloud}\n")
        shell.close()
    finally:
        log += vm.log()
        vm.stop()
    print(f"\n[timing] install (power-on -> installed) {install.installed_after:.0f} s; boot -> login "
          f"{first_login:.0f} s; updateclient (v1 -> v2, new kernel) {update_took:.0f} s; "
          f"reboot -> login on the new kernel {second_login:.0f} s")
    assert before == after, (before, after)  # hostname, interface, address, machine-id
    hostname, _, address, machine_id = after
    assert hostname == NAME and machine_id != dm.MASTER_MACHINE_ID
    assert app.get(f"/api/v1/hosts/{NAME}")["binding"]["ip"] == address
    assert "Gave up waiting for suspend/resume device" not in log
    # The disk grew (1536 MiB, the master's 1152): root took it, the swap at its end kept its size.
    master_parts = {p.number: p for p in parse_sfdisk_dump(sfdisk_dump(v1.disk))[1]}
    parts = {p.number: p for p in parse_sfdisk_dump(sfdisk_dump(install.disk))[1]}
    assert parts[5].size == master_parts[5].size, "the swap partition grew"
    assert parts[1].size > master_parts[1].size + 300 * 2048, "root did not grow"
    assert (parts[5].start + parts[5].size) * 512 > (1536 - 2) << 20


def sfdisk_dump(disk: Path) -> str:
    return subprocess.run(["sfdisk", "--dump", str(disk)], capture_output=True, text=True, check=True).stdout
