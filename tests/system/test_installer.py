"""The installer initrd boots in QEMU, brings up the network from the command line, fetches its
autoinstall script over HTTP, runs it against a real virtio disk (sfdisk, mkfs.ext4, mount), and
either reboots (success) or stays up with a shell after saying which stage failed (no loop)."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

import appliance.boot.installer as installer
from appliance.boot.installer import install_bootenv
from appliance.cli.main import main as cli
from lab.netns import Lab
from lab.qemu import Vm, VmConfig, qemu_unavailable_reason, vm_network
from lab.servers import start_httpd

pytestmark = [pytest.mark.system, pytest.mark.skipif(qemu_unavailable_reason() is not None,
                                                     reason=str(qemu_unavailable_reason()))]

GOOD_SCRIPT = """\
echo partition >"$STAGE_FILE"
printf 'label: dos\\n,,L,*\\n' | sfdisk -q /dev/vda
echo filesystems >"$STAGE_FILE"
mkfs.ext4 -q -F /dev/vda1
mkdir -p /mnt/target
mount -t ext4 /dev/vda1 /mnt/target
echo "$HOSTNAME $IMAGE $MAC" >/mnt/target/installed-by-test
echo "SCRIPT-SAW $(cat /mnt/target/installed-by-test) ip=$IPADDR"
umount /mnt/target
"""

BAD_SCRIPT = """\
echo partition >"$STAGE_FILE"
echo "the disk is far too small" >&2
exit 3
"""


def _boot(lab: Lab, installer_dir: Path, script: str, tmp_path: Path) -> tuple[Vm, Path]:
    net = vm_network(lab)
    vm_mac = "52:54:00:aa:01:02"
    www = tmp_path / "www"
    (www / "install" / vm_mac).mkdir(parents=True)
    (www / "install" / vm_mac / "script").write_text(script)
    start_httpd(net.server, net.server_ip, www)
    disk = tmp_path / "disk.img"
    with open(disk, "wb") as f:
        f.truncate(64 << 20)
    append = (f"console=ttyS0 panic=-1 IMAGESERVER={net.server_ip} IPADDR={net.host(50)} NETMASK=255.255.255.0 "
              f"MAC={vm_mac} HOSTNAME=node7 IMAGE=demo VERSION=1 INSTALL_TOKEN=t0k")
    config = VmConfig(boot="kernel", kernel=installer_dir / "vmlinuz", initrd=installer_dir / "initrd.img",
                      append=append, disks=[disk], mac=vm_mac)
    return Vm(net, config).start(), disk


@pytest.fixture
def installer_dir(tmp_path: Path, bootenv_cache: Path, debian_kernel) -> Path:
    env = install_bootenv(tmp_path / "state", bootenv_cache, debian_kernel.package)
    return env.vmlinuz.parent


def test_installer_runs_its_script_on_a_real_disk_and_reboots(lab: Lab, installer_dir: Path, tmp_path: Path) -> None:
    vm, disk = _boot(lab, installer_dir, GOOD_SCRIPT, tmp_path)
    saw = vm.wait_for(r"SCRIPT-SAW (\S+) (\S+) (\S+) ip=(\S+)", timeout=240)
    assert saw.groups()[:3] == ("node7", "demo", "52:54:00:aa:01:02")
    vm.wait_for(r"install complete; rebooting", timeout=30)
    vm.wait_exit(timeout=30)  # -no-reboot: the guest's `reboot -f` ends QEMU
    assert disk.read_bytes()[510:512] == b"\x55\xaa"  # sfdisk wrote a partition table


def test_a_failing_script_reports_its_stage_and_the_machine_stays_up(lab: Lab, installer_dir: Path,
                                                                     tmp_path: Path) -> None:
    vm, _ = _boot(lab, installer_dir, BAD_SCRIPT, tmp_path)
    vm.wait_for(r"FAILED at stage partition: autoinstall script exited with status 3", timeout=240)
    time.sleep(3)
    assert vm.proc is not None and vm.proc.alive(), "the installer must not reboot after a failure"
    assert vm.log().count("imageserver-installer: starting") == 1


def test_local_cfg_on_attached_media_replaces_the_command_line(lab: Lab, installer_dir: Path, tmp_path: Path) -> None:
    net = vm_network(lab)
    vm_mac = "52:54:00:aa:01:03"
    www = tmp_path / "www"
    (www / "install" / vm_mac).mkdir(parents=True)
    (www / "install" / vm_mac / "script").write_text('echo "SCRIPT-SAW $HOSTNAME ip=$IPADDR"\n')
    start_httpd(net.server, net.server_ip, www)
    media = tmp_path / "media"
    media.mkdir()
    (media / "local.cfg").write_text(f"# written by an operator\nIMAGESERVER={net.server_ip}\nHOSTNAME=fromcfg\n"
                                     f"IPADDR={net.host(60)}\nNETMASK=255.255.255.0\nNOT_A_SETTING=ignored\n")
    stick = tmp_path / "stick.img"
    subprocess.run(["mke2fs", "-q", "-t", "ext4", "-d", str(media), str(stick), "8M"], check=True)
    blank = tmp_path / "disk.img"
    with open(blank, "wb") as f:
        f.truncate(16 << 20)
    config = VmConfig(boot="kernel", kernel=installer_dir / "vmlinuz", initrd=installer_dir / "initrd.img",
                      append="console=ttyS0 panic=-1", disks=[blank, stick], mac=vm_mac)
    vm = Vm(net, config).start()
    saw = vm.wait_for(r"SCRIPT-SAW (\S+) ip=(\S+)", timeout=240)
    assert saw.groups() == ("fromcfg", str(net.host(60)))
    assert "using local.cfg from /dev/vdb" in vm.log()


def test_mkbootenv_reuses_its_cache_and_rebuilds_when_an_input_changes(tmp_path: Path, bootenv_cache: Path,
                                                                       debian_kernel, monkeypatch, capsys) -> None:
    state = tmp_path / "state"
    argv = ["mkbootenv", "--state-dir", str(state), "--cache-dir", str(bootenv_cache),
            "--kernel-package", debian_kernel.package, "--json"]
    assert cli(argv) == 0
    first = json.loads(capsys.readouterr().out)
    assert cli(argv) == 0
    second = json.loads(capsys.readouterr().out)
    assert second["changed"] is False and second["initrd_digest"] == first["initrd_digest"]
    changed_init = tmp_path / "init.sh"
    changed_init.write_text(installer.INIT.read_text() + "# an edit\n")
    monkeypatch.setattr(installer, "INIT", changed_init)
    assert cli(argv) == 0
    third = json.loads(capsys.readouterr().out)
    assert third["changed"] is True and third["initrd_digest"] != first["initrd_digest"]
    manifest = json.loads((state / "boot/installer/installer.json").read_text())
    assert manifest["kernel_package"] == debian_kernel.package
