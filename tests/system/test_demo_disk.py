"""The demo master client tree boots from a disk by itself (no PXE involved): put on a raw disk the
way an install does (sfdisk, mkfs.ext4, rsync, extlinux, syslinux MBR), QEMU's BIOS boots it to the
marker with the tree's hostname. This is the ground the end-to-end install test stands on."""

from __future__ import annotations

from pathlib import Path

import pytest

from lab.demo.disk import build_boot_disk
from lab.demo.tree import MARKER, build_demo_tree, tree_bytes
from lab.netns import Lab
from lab.qemu import Vm, VmConfig, qemu_unavailable_reason, vm_network

pytestmark = [pytest.mark.system, pytest.mark.skipif(qemu_unavailable_reason() is not None,
                                                     reason=str(qemu_unavailable_reason()))]


def test_demo_tree_on_a_disk_boots_to_its_marker(lab: Lab, tmp_path: Path, bootenv_cache: Path,
                                                 debian_kernel) -> None:
    tree = build_demo_tree(tmp_path / "tree", debian_kernel, bootenv_cache, hostname="demo-master")
    assert tree_bytes(tree) > 16 << 20, "the demo image must not fit a 16 MB disk (the failure test needs that)"
    build = build_boot_disk(tree, tmp_path / "disk.img")
    net = vm_network(lab)
    vm = Vm(net, VmConfig(boot="disk", disks=[build.disk])).start()
    vm.wait_for(rf"{MARKER} hostname=demo-master", timeout=90)
    vm.wait_exit(timeout=30)  # the demo init powers off
