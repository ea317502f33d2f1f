"""A real Debian 12 master (debootstrap, cached: tests/e2e/_debianmaster.py) captured with the real
prepareclient + getimage, installed over PXE into a QEMU VM (TCG, BIOS), booted from its own disk to
`login:` on the serial console. Then, on the running system (its report line on the console) and on
the VM's disk file afterwards (debugfs, no loop device): the assigned hostname; root by UUID in
grub.cfg and fstab; a machine-id, ssh host keys, random seed and DHCP leases not the master's; the
initramfs resume device this machine's swap, not the master's; ifupdown configured for the NIC's
predictable name (found by its MAC), by DHCP, and the running system holding its reserved address.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from appliance.demo.scenario import DemoLab, _kill_all
from appliance.lab.netns import Lab, lab_unavailable_reason
from appliance.lab.qemu import Vm, VmConfig, qemu_unavailable_reason, random_mac
from tests.e2e import _debianmaster as dm

REPO = Path(__file__).resolve().parents[2]
IMAGE = "debian12"
PREPARECLIENT = REPO / "appliance" / "data" / "prepareclient"

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(qemu_unavailable_reason() is not None, reason=str(qemu_unavailable_reason())),
    pytest.mark.skipif(lab_unavailable_reason() is not None, reason=str(lab_unavailable_reason())),
]


class DiskFile:
    """Read an ext4 partition of a raw disk file with debugfs (its ?offset= io option): no loop device."""

    def __init__(self, disk: Path, number: int) -> None:
        table = json.loads(subprocess.run(["sfdisk", "-J", str(disk)], capture_output=True, text=True,
                                          check=True).stdout)["partitiontable"]
        part = next(p for p in table["partitions"] if p["node"].endswith(str(number)))
        self.spec = f"{disk}?offset={part['start'] * 512}"

    def _debugfs(self, request: str) -> str:
        return subprocess.run(["debugfs", "-R", request, self.spec], capture_output=True, text=True,
                              check=True).stdout

    def read(self, path: str) -> str:
        return self._debugfs(f"cat {path}")

    def ls(self, path: str) -> list[str]:
        return [n for n in self._debugfs(f"ls -l {path}").split() if n]

    def exists(self, path: str) -> bool:
        out = subprocess.run(["debugfs", "-R", f"stat {path}", self.spec], capture_output=True, text=True)
        return "Inode:" in out.stdout

    def uuid(self) -> str:
        out = subprocess.run(["dumpe2fs", "-h", self.spec], capture_output=True, text=True, check=True).stdout
        return re.search(r"Filesystem UUID:\s+(\S+)", out).group(1)  # type: ignore[union-attr]


@pytest.fixture(scope="module")
def site(bootenv_cache: Path, debian_kernel, lab_sweep: list[str]) -> Iterator[tuple[DemoLab, dm.DebianMaster]]:
    if subprocess.run(["which", "debootstrap"], capture_output=True).returncode != 0:
        pytest.skip("debootstrap is not installed (make deps)")
    started = time.monotonic()
    with Lab() as lab:
        master = dm.new_master(bootenv_cache, Path(lab.tmp_path("dm")).parent)
        print(f"\n[timing] debian master ready (cached debootstrap + copy) in {time.monotonic() - started:.0f} s")
        demo = DemoLab(lab, cache_dir=bootenv_cache, kernel_package=debian_kernel.package, say=print)
        demo.kernel = debian_kernel
        demo.network()
        demo.appliance()
        assert demo.app is not None and demo.master is not None and demo.net is not None
        env = {"SYSTEMIMAGER_ROOT": str(master.root), "SYSTEMIMAGER_DISKS": str(master.disk),
               "SYSTEMIMAGER_RUN": str(lab.tmp_path("prepareclient-run"))}
        run_env = {**demo.app.env(), **env}
        try:
            out = demo.master.run(["sh", str(PREPARECLIENT), "--server", str(demo.net.server_ip)], env=run_env)
            print("prepareclient:", out.stdout.strip())
            out_text = demo.app.cli("getimage", "--master-client", str(demo.master_ip), "--image", IMAGE, "--yes",
                                    timeout=900)
            print("getimage:", out_text.strip())
        finally:
            demo.master.run(["sh", str(PREPARECLIENT), "--stop"], env=run_env, check=False)
            _kill_all(demo.master)
        demo.bootenv()
        yield demo, master


def test_debian_master_installs_over_pxe_and_boots_to_login_as_itself(site) -> None:
    demo, master = site
    app = demo.app
    assert app is not None
    install = demo.new_install("node1", 1536, mac=random_mac())
    app.cli("hosts", "add", install.name, "--mac", install.mac, "--image", IMAGE)
    demo.power_on(install, memory_mb=768, first=True)
    demo.follow([install], timeout=600)
    host = app.get("/api/v1/hosts/node1")
    assert host["state"] == "installed", host
    stages = [e["stage"] for e in host["timeline"]]
    assert {"identity", "initramfs", "bootloader"} <= set(stages), stages

    assert install.vm is not None
    install.vm.wait_exit(timeout=120)
    vm = Vm(demo.net, VmConfig(boot="network", mac=install.mac, disks=[install.disk], memory_mb=768)).start()
    booted = time.monotonic()
    vm.wait_for(r"node1 login:", timeout=420)
    login_after = time.monotonic() - booted
    report = vm.wait_for(rf"{dm.REPORT_MARKER} hostname=(\S+) addr=(\S+)=(\S+)/\d+ machine-id=(\S+) root=(\S+)",
                         timeout=180)
    log = vm.log()
    vm.stop()
    print(f"\n[timing] BIOS: power-on -> installed {install.installed_after:.0f} s; "
          f"power-on -> login: {login_after:.0f} s (second boot, own disk)")
    print("report:", report.group(0))

    hostname, ifname, address, machine_id, _ = report.groups()
    assert hostname == "node1"
    assert machine_id != master.machine_id, "the clone kept the master's machine-id"
    assert not ifname.startswith("eth") and ifname != dm.MASTER_IFACE, ifname
    binding = app.get("/api/v1/hosts/node1")["binding"]
    assert binding and binding["ip"] == address, (binding, address)
    assert "Gave up waiting for suspend/resume device" not in log, "the initramfs waited for the master's swap"

    root = DiskFile(install.disk, 1)
    root_uuid = root.uuid()
    grub = root.read("/boot/grub/grub.cfg")
    assert f"root=UUID={root_uuid}" in grub and "root=/dev/" not in grub, grub[-1500:]
    fstab = root.read("/etc/fstab")
    assert re.search(rf"^UUID={root_uuid}\s+/\s", fstab, re.M), fstab
    assert root.read("/etc/hostname").strip() == "node1"
    assert root.read("/etc/machine-id").strip() not in ("", master.machine_id)
    assert not root.exists("/var/lib/systemd/random-seed") or \
        root.read("/var/lib/systemd/random-seed") != "\x42" * 512
    assert not root.exists(f"/var/lib/dhcp/dhclient.{dm.MASTER_IFACE}.leases")
    resume = root.read("/etc/initramfs-tools/conf.d/resume")
    assert dm.MASTER_SWAP_UUID not in resume and "RESUME=UUID=" in resume, resume
    scratch = demo.lab.tmp_path("node1-ssh")
    scratch.mkdir()
    for name in ("ssh_host_ed25519_key.pub", "ssh_host_rsa_key.pub", "ssh_host_ecdsa_key.pub"):
        (scratch / name).write_text(root.read(f"/etc/ssh/{name}"))
    assert dm.ssh_fingerprints(scratch).isdisjoint(master.ssh_fingerprints), "ssh host keys are the master's"
    net = root.read("/etc/network/interfaces.d/imageserver")
    assert f"allow-hotplug {ifname}" in net and f"iface {ifname} inet dhcp" in net, net
    interfaces = root.read("/etc/network/interfaces")
    assert not re.search(rf"^\s*iface {dm.MASTER_IFACE}\b", interfaces, re.M), interfaces
    token = host.get("install_token") or ""
    for path in ("/boot/grub/grub.cfg", "/etc/default/grub", "/etc/fstab"):
        text = root.read(path)
        assert "INSTALL_TOKEN" not in text and (not token or token not in text), path
