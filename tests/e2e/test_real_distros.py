"""Masters shaped as other distribution families lay theirs out, both UEFI, captured, installed over PXE
into a QEMU VM and booted to `login:` with every check of test_real_debian.py (identity, network on the
right NIC, nothing per-machine of the master's under /var/lib, /var/log/journal or in the initramfs):

- Debian 13 on a btrfs root with subvolumes @ and @home (Ubuntu's and openSUSE's layout): the clone's
  filesystem has the master's subvolumes (a recorded @snapshots mounted nowhere too), default subvolume
  and mount options, fstab names both lines by the new UUID, GRUB boots with rootflags=subvol=@;
- a RHEL-shaped master (GPT: ESP + xfs root + swap, grub-efi, a host-only dracut initramfs, a
  NetworkManager keyfile, resume=UUID= on the kernel command line and in a BLS entry): the clone's
  initramfs is rebuilt by the image's own dracut and holds the clone's machine-id and hostname (read with
  the image's lsinitrd), and its command line and BLS entry name the clone's swap.

Built from Debian 13's packages (tests/e2e/_debianmaster.py Recipes, cached by input hash).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab.demo.scenario import DemoLab
from lab.netns import lab_unavailable_reason
from lab.qemu import qemu_unavailable_reason
from tests.e2e import _debianmaster as dm
from tests.e2e._sites import real_os_site
from tests.e2e.test_real_debian import OVMF, capture, install_and_boot

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


def test_uefi_debian13_master_on_btrfs_subvolumes_boots_as_itself(site: DemoLab) -> None:
    """Debian 13 (UEFI) on a btrfs root with subvolumes @ and @home mounted with compression (Ubuntu's
    layout) and a recorded default subvolume and unmounted @snapshots (openSUSE's): the master's tree is a
    directory, so prepareclient's btrfs answers come from a stand-in (dm.btrfs_stand_in)."""
    master = dm.new_master(site.cache_dir, site.lab.tmp_path("btrfs").parent, "uefi", dm.BTRFS_TRIXIE)
    assert " / btrfs " in (master.root / "etc/fstab").read_text()
    bin_dir = site.lab.tmp_path("btrfs-bin")
    dm.btrfs_stand_in(bin_dir)
    capture(site, master, "debian13-btrfs", env={"PATH": f"{bin_dir}:{os.environ['PATH']}",
                                                 "SYSTEMIMAGER_BTRFS": f"{master.disk}2={master.root}"})
    install_and_boot(site, master, "debian13-btrfs", "node4", ("-bios", str(OVMF)), root_fstype="btrfs",
                     recipe=dm.BTRFS_TRIXIE)
    assert site.app is not None
    script = (site.app.state_dir / "scripts/debian13-btrfs.master").read_text()
    assert "make_subvolumes \"$DEV0_2\" '@' '@' '@home' '@snapshots'" in script


def test_uefi_rhel_shaped_master_with_dracut_and_networkmanager_boots_as_itself(site: DemoLab) -> None:
    """GPT with an ESP, an xfs root and swap; grub-efi; a host-only dracut initramfs holding the master's
    machine-id and hostname; a NetworkManager keyfile for the master's NIC; resume=UUID= of the master's
    swap on the kernel command line (/etc/default/grub) and in a BLS entry."""
    master = dm.new_master(site.cache_dir, site.lab.tmp_path("rhel").parent, "uefi", dm.RHEL_SHAPED)
    assert f"resume=UUID={dm.MASTER_SWAP_UUID}" in (master.root / "etc/default/grub").read_text()
    capture(site, master, "rhel-shaped")
    install_and_boot(site, master, "rhel-shaped", "node5", ("-bios", str(OVMF)), root_fstype="xfs",
                     recipe=dm.RHEL_SHAPED)
