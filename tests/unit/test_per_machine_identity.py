"""Every distribution family's per-machine state leaves a clone, and the master's disks leave its boot settings.

The list of per-machine paths (appliance/boot/installer/per-machine.paths) is the one getimage's capture
excludes and the installer's clean-up both use; the installer's real lib/*.sh run here against a fake clone
tree in a temp dir with the files of Debian (dhclient, dhcpcd), RHEL (NetworkManager, dracut, BLS) and
systemd-networkd systems planted, and the retie of /etc/default/grub, BLS entries, /etc/kernel/cmdline and
dracut's settings to the clone's disks."""

from __future__ import annotations

import fnmatch
import json
import os
import shutil
import subprocess
from importlib.resources import files
from pathlib import Path

import pytest

from appliance.boot.installer.per_machine import PATHS_FILE, dropped, per_machine_paths
from appliance.boot.installer.runtime import RUNTIME_PATH, client_script, runtime_files
from appliance.images.autoinstall import ScriptSettings, generate
from appliance.images.layout import read_layout
from appliance.images.mounts import Mount, exclusions
from state.images import ImageVersion
from tests.installer_sh import prelude

MASTER_ID = "0123456789abcdef0123456789abcdef"
MASTER_SWAP = "5eed0000-1312-4000-8000-000000000005"
MASTER_ROOT = "5eed0000-1312-4000-8000-000000000001"
CLONE_SWAP = "c10e0000-0000-4000-8000-00000000000a"
CLONE_ROOT = "c10e0000-0000-4000-8000-000000000001"

# What each family keeps per machine, under the paths the list names (a file per glob, with master data).
PLANTED = {
    "debian-dhclient": ("var/lib/dhcp/dhclient.ens3.leases", "var/lib/dhcp/dhclient6.leases",
                        "var/lib/systemd/random-seed", "var/lib/systemd/credential.secret"),
    "debian13-dhcpcd": ("var/lib/dhcpcd/duid", "var/lib/dhcpcd/secret", "var/lib/dhcpcd/ens3.lease",
                        "var/lib/dhcpcd/ens3.lease6", f"var/log/journal/{MASTER_ID}/system.journal"),
    "rhel-networkmanager": ("var/lib/NetworkManager/secret_key", "var/lib/NetworkManager/timestamps",
                            "var/lib/NetworkManager/seen-bssids",
                            "var/lib/NetworkManager/internal-0b7f-ens3.lease",
                            "var/lib/NetworkManager/NetworkManager-intern.conf",
                            "var/lib/dhclient/dhclient--ens3.lease"),
    "systemd-networkd": ("var/lib/systemd/network/links/2", "var/lib/urandom/random-seed"),
    "opensuse-wicked": ("var/lib/wicked/duid.xml", "var/lib/wicked/iaid.xml",
                        "var/lib/wicked/lease-eth0-dhcp-ipv4.xml"),
}
# What stays: the software's own directories and files that are not per-machine.
KEPT = ("var/lib/dhcpcd", "var/log/journal", "var/lib/NetworkManager/NetworkManager.state", "var/lib/dhcp",
        "var/lib/systemd/network", "etc/dhcpcd.conf", "var/log/dpkg.log")


def test_the_list_is_well_formed_and_names_every_family() -> None:
    entries = per_machine_paths()
    assert {e.action for e in entries} == {"drop", "renew", "retie"}
    paths = {e.path for e in entries}
    assert {"/etc/machine-id", "/etc/ssh/ssh_host_*_key", "/etc/hostname", "/var/lib/dhcpcd/duid",
            "/var/lib/dhcpcd/secret", "/var/lib/NetworkManager/secret_key", "/var/lib/systemd/network/*",
            "/var/log/journal/*", "/var/lib/systemd/random-seed", "/var/lib/urandom/random-seed"} <= paths
    with pytest.raises(ValueError, match="not 'drop"):
        per_machine_paths("drop /var/lib/../etc/passwd\n")
    with pytest.raises(ValueError, match="not 'drop"):
        per_machine_paths("wipe /var/lib/x\n")


def test_capture_and_clone_use_the_one_list() -> None:
    """getimage leaves out exactly the list's "drop" paths as per-machine state; the installer initrd ships
    the same file where the runtime reads it ($INSTALLER_LIB/per-machine.paths)."""
    got = [e for e in exclusions([Mount("/", "ext4")]) if e.reason == "per-machine state"]
    assert [e.pattern for e in got] == list(dropped())
    assert runtime_files()[f"{RUNTIME_PATH.lstrip('/')}/per-machine.paths"] == PATHS_FILE
    system_sh = (PATHS_FILE.parent / "lib/system.sh").read_text()
    assert '<"$INSTALLER_LIB/per-machine.paths"' in system_sh


def test_updateclient_keeps_every_per_machine_path_of_the_node() -> None:
    """Served, updateclient's excludes hold the list (so --delete never takes the node's own DUID, secret
    key or journal, and the image never brings the master's)."""
    served = client_script(Path(str(files("appliance") / "data" / "updateclient"))).decode()
    excludes = served[served.index("write_excludes() {"):]
    excludes = excludes[:excludes.index("\nEOF\n")].splitlines()
    assert [e.path for e in per_machine_paths()] == excludes[2:2 + len(per_machine_paths())]
    assert "# @per-machine.paths@" not in served


def _rsync_excluded(pattern: str, rel: str) -> bool:
    """Would rsync's anchored exclude `pattern` leave out `rel` (or a directory above it)? fnmatch per name."""
    want, parts = pattern.strip("/").split("/"), rel.split("/")
    return len(parts) >= len(want) and all(fnmatch.fnmatchcase(p, w) for p, w in zip(parts, want, strict=False))


@pytest.mark.parametrize("family", sorted(PLANTED))
def test_capture_leaves_out_each_familys_per_machine_files(family: str) -> None:
    patterns = [e.pattern for e in exclusions([Mount("/", "ext4")])]
    for rel in PLANTED[family]:
        assert any(_rsync_excluded(p, rel) for p in patterns), f"{rel} would be captured"
    for rel in KEPT:
        assert not any(_rsync_excluded(p, rel) for p in patterns), f"{rel} would be left out"


def _stand_in_chroot(bin_dir: Path) -> None:
    """`chroot ROOT ssh-keygen -A` makes new host keys; anything else fails the test."""
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "chroot").write_text(
        '#!/bin/sh\nroot=$1; shift\ncase "$*" in\n'
        '"ssh-keygen -A") for t in rsa ecdsa ed25519; do echo "new $t" >"$root/etc/ssh/ssh_host_${t}_key"; '
        'echo "new $t pub" >"$root/etc/ssh/ssh_host_${t}_key.pub"; done ;;\n'
        '*) echo "unexpected chroot $*" >&2; exit 2 ;;\nesac\n')
    os.chmod(bin_dir / "chroot", 0o755)


def _plant(target: Path, rels: tuple[str, ...] | list[str]) -> None:
    for rel in rels:
        (target / rel).parent.mkdir(parents=True, exist_ok=True)
        (target / rel).write_text(f"master's {rel}\n")


def test_the_clone_loses_every_familys_per_machine_state_and_renews_its_identity(tmp_path: Path) -> None:
    target = tmp_path / "target"
    _plant(target, [rel for rels in PLANTED.values() for rel in rels])
    _plant(target, ["etc/ssh/ssh_host_ed25519_key", "etc/ssh/ssh_host_ed25519_key.pub", "etc/ssh/sshd_config",
                    "var/lib/NetworkManager/NetworkManager.state", "etc/dhcpcd.conf", "var/log/dpkg.log"])
    (target / "etc/machine-id").write_text(MASTER_ID + "\n")
    (target / "var/lib/dbus").mkdir(parents=True)
    (target / "var/lib/dbus/machine-id").write_text(MASTER_ID + "\n")
    _stand_in_chroot(tmp_path / "bin")
    run = subprocess.run(["sh", "-euc", prelude("common", "report", "system") + "new_machine_identity\n"],
                         capture_output=True, text=True,
                         env={"PATH": f"{tmp_path / 'bin'}:/usr/bin:/bin", "TARGET": str(target), "STAGE": "x"})
    assert run.returncode == 0, run.stdout + run.stderr
    assert "[identity] new machine-id and ssh host keys; the master's per-machine state dropped" in run.stdout
    for rels in PLANTED.values():
        for rel in rels:
            assert not (target / rel).exists(), f"the clone keeps the master's {rel}"
    assert list((target / "var/log/journal").iterdir()) == [], "the master's journal directory stays"
    for rel in KEPT:
        assert (target / rel).exists(), f"{rel} was removed"
    new_id = (target / "etc/machine-id").read_text().strip()
    assert new_id != MASTER_ID and len(new_id) == 32
    assert (target / "var/lib/dbus/machine-id").read_text().strip() == new_id
    assert (target / "etc/ssh/ssh_host_ed25519_key").read_text() == "new ed25519\n"
    assert (target / "etc/ssh/sshd_config").read_text() == "master's etc/ssh/sshd_config\n"
    assert "var/lib/dhcpcd/duid" in run.stdout  # says what it removed


def test_a_clone_without_per_machine_state_is_left_as_it_is(tmp_path: Path) -> None:
    target = tmp_path / "target"
    (target / "etc").mkdir(parents=True)
    (target / "etc/machine-id").write_text("uninitialized\n")
    run = subprocess.run(["sh", "-euc", prelude("common", "report", "system") + "new_machine_identity\n"],
                         capture_output=True, text=True,
                         env={"PATH": "/usr/bin:/bin", "TARGET": str(target), "STAGE": "x"})
    assert run.returncode == 0, run.stdout + run.stderr
    assert "removed" not in run.stdout
    assert (target / "etc/machine-id").read_text() == "uninitialized\n"


# --- boot settings: the master's disks on the kernel command line and in dracut's settings

GRUB_DEFAULT = (f'GRUB_DEFAULT=0\nGRUB_CMDLINE_LINUX_DEFAULT="quiet resume=UUID={MASTER_SWAP}"\n'
                f'GRUB_CMDLINE_LINUX="crashkernel=auto resume=UUID={MASTER_SWAP} rhgb"\n'
                'GRUB_DISABLE_RECOVERY="true"\n')
BLS = (f"title Red Hat Enterprise Linux (5.14.0) 9.4\nversion 5.14.0\nlinux /vmlinuz-5.14.0\n"
       f"initrd /initramfs-5.14.0.img\noptions root=UUID={MASTER_ROOT} ro resume=UUID={MASTER_SWAP} rhgb quiet\n"
       f"grub_users $grub_users\n")
DRACUT_RESUME = f'add_device+=" /dev/disk/by-uuid/{MASTER_SWAP} "\nkernel_cmdline+=" resume=PARTUUID=5eed1312-05 "\n'


def _boot_tree(target: Path) -> None:
    for rel, text in (("etc/default/grub", GRUB_DEFAULT), ("boot/loader/entries/abc-5.14.0.conf", BLS),
                      ("etc/kernel/cmdline", f"root=UUID={MASTER_ROOT} ro resume=UUID={MASTER_SWAP}\n"),
                      ("etc/dracut.conf.d/10-resume.conf", DRACUT_RESUME),
                      ("etc/dracut.conf.d/90-hostonly.conf", 'hostonly="yes"\n')):
        (target / rel).parent.mkdir(parents=True, exist_ok=True)
        (target / rel).write_text(text)
    (target / "usr/bin").mkdir(parents=True)
    (target / "usr/bin/dracut").write_text("#!/bin/sh\n")
    os.chmod(target / "usr/bin/dracut", 0o755)


def _retie(tmp_path: Path, target: Path, swap: str) -> subprocess.CompletedProcess[str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    # The image's own dracut, run in the new system: the stand-in records how it was called.
    (bin_dir / "chroot").write_text(f'#!/bin/sh\nshift\necho "$*" >>{tmp_path / "chroot.log"}\n')
    os.chmod(bin_dir / "chroot", 0o755)
    return subprocess.run(["sh", "-euc", prelude("common", "report", "bootloader") + "retie_to_new_disks\n"],
                          capture_output=True, text=True,
                          env={"PATH": f"{bin_dir}:/usr/bin:/bin", "TARGET": str(target), "STAGE": "x",
                               "SWAP_UUID": swap, "STACKED": "0",
                               "RETIE_UUIDS": f"{MASTER_ROOT}={CLONE_ROOT} {MASTER_SWAP}={swap or 'gone'}"})


def test_the_kernel_command_line_and_dracut_name_the_clones_disks(tmp_path: Path) -> None:
    target = tmp_path / "target"
    _boot_tree(target)
    run = _retie(tmp_path, target, CLONE_SWAP)
    assert run.returncode == 0, run.stdout + run.stderr
    grub = (target / "etc/default/grub").read_text()
    assert grub == GRUB_DEFAULT.replace(MASTER_SWAP, CLONE_SWAP)
    bls = (target / "boot/loader/entries/abc-5.14.0.conf").read_text()
    assert bls == BLS.replace(MASTER_SWAP, CLONE_SWAP).replace(MASTER_ROOT, CLONE_ROOT)
    assert (target / "etc/kernel/cmdline").read_text() == f"root=UUID={CLONE_ROOT} ro resume=UUID={CLONE_SWAP}\n"
    assert (target / "etc/dracut.conf.d/10-resume.conf").read_text() == (
        f'add_device+=" /dev/disk/by-uuid/{CLONE_SWAP} "\nkernel_cmdline+=" resume=UUID={CLONE_SWAP} "\n')
    assert (target / "etc/dracut.conf.d/90-hostonly.conf").read_text() == 'hostonly="yes"\n'
    # dracut host-only images hold the machine-id, hostname and command line: rebuilt by the image's dracut.
    assert (tmp_path / "chroot.log").read_text() == "dracut -f --regenerate-all\n"
    assert f"[initramfs] dracut in the new system (RESUME=UUID={CLONE_SWAP}" in run.stdout
    assert "/etc/default/grub /boot/loader/entries/abc-5.14.0.conf /etc/kernel/cmdline" in run.stdout
    assert not list(target.rglob("*.imageserver-retie"))


def test_without_swap_resume_leaves_the_kernel_command_line(tmp_path: Path) -> None:
    target = tmp_path / "target"
    _boot_tree(target)
    run = _retie(tmp_path, target, "")
    assert run.returncode == 0, run.stdout + run.stderr
    assert (target / "etc/default/grub").read_text() == (
        'GRUB_DEFAULT=0\nGRUB_CMDLINE_LINUX_DEFAULT="quiet "\nGRUB_CMDLINE_LINUX="crashkernel=auto rhgb"\n'
        'GRUB_DISABLE_RECOVERY="true"\n')
    bls = (target / "boot/loader/entries/abc-5.14.0.conf").read_text()
    assert f"options root=UUID={CLONE_ROOT} ro rhgb quiet\n" in bls and "resume" not in bls
    assert "resume" not in (target / "etc/kernel/cmdline").read_text()
    assert "resume=" not in (target / "etc/dracut.conf.d/10-resume.conf").read_text()
    assert "[initramfs] dracut in the new system (RESUME=none" in run.stdout


def test_noresume_and_device_paths_are_not_touched(tmp_path: Path) -> None:
    target = tmp_path / "target"
    (target / "etc/default").mkdir(parents=True)
    text = ('GRUB_CMDLINE_LINUX="noresume=UUID=x resume=/dev/mapper/rhel-swap rd.lvm.lv=rhel/swap"\n'
            'GRUB_CMDLINE_LINUX_DEFAULT="resume_offset=4096"\n')
    (target / "etc/default/grub").write_text(text)
    run = _retie(tmp_path, target, CLONE_SWAP)
    assert run.returncode == 0, run.stdout + run.stderr
    assert (target / "etc/default/grub").read_text() == text
    assert not (tmp_path / "chroot.log").exists()  # no initramfs tool in this tree: nothing to rebuild


@pytest.mark.skipif(shutil.which("sfdisk") is None, reason="sfdisk (fdisk package) is not installed")
def test_the_plan_names_the_masters_uuids_beside_the_clones(tmp_path: Path) -> None:
    """RETIE_UUIDS pairs each filesystem's UUID on the master (lsblk's record, else fstab's UUID=) with the
    variable holding the clone's; the identity is reset before the boot settings are retied."""
    disk = tmp_path / "master.img"
    with open(disk, "wb") as f:
        f.truncate(256 << 20)
    subprocess.run(["sfdisk", "-q", str(disk)], input="label: dos\n,128M,L\n,,S\n", text=True, check=True,
                   capture_output=True)
    dump = subprocess.run(["sfdisk", "--dump", str(disk)], text=True, check=True, capture_output=True).stdout
    si = tmp_path / "tree/etc/systemimager"
    (si / "disks").mkdir(parents=True)
    (si / "disks/vda.sfdisk").write_text(dump.replace(str(disk), "/dev/vda"))
    (si / "disks/order").write_text(f"vda {256 << 20}\n")
    lsblk = {"blockdevices": [{"name": "vda", "path": "/dev/vda", "type": "disk", "children": [
        {"name": "vda1", "path": "/dev/vda1", "type": "part", "fstype": "xfs", "label": None, "uuid": MASTER_ROOT},
        {"name": "vda2", "path": "/dev/vda2", "type": "part", "fstype": None, "label": None, "uuid": None}]}]}
    (si / "disks/vda.lsblk.json").write_text(json.dumps(lsblk))
    (tmp_path / "tree/etc/fstab").write_text("/dev/vda1 / xfs defaults 0 1\n/dev/vda2 none swap sw 0 0\n")
    iv = ImageVersion("rhel", 1, str(tmp_path / "tree"), 0.0, layout=read_layout(si).to_json())
    script, _ = generate(iv, ScriptSettings())
    assert f'RETIE_UUIDS="{MASTER_ROOT}=$UUID0_1"' in script  # the swap had no UUID on record: none to retie
    (tmp_path / "tree/etc/fstab").write_text(f"/dev/vda1 / xfs defaults 0 1\nUUID={MASTER_SWAP} none swap sw 0 0\n")
    lsblk["blockdevices"][0]["children"][1].update(fstype="swap", uuid=MASTER_SWAP)  # type: ignore[index]
    (si / "disks/vda.lsblk.json").write_text(json.dumps(lsblk))
    iv = ImageVersion("rhel", 1, str(tmp_path / "tree"), 0.0, layout=read_layout(si).to_json())
    script, _ = generate(iv, ScriptSettings())
    assert f'RETIE_UUIDS="{MASTER_ROOT}=$UUID0_1 {MASTER_SWAP}=$UUID0_2"' in script
    assert script.index("\nnew_machine_identity\n") < script.index("\nretie_to_new_disks\n")
