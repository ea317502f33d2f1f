"""Longest-first dispatch of the suite's test files to the pytest-xdist workers (`make test`: -n 2 --dist loadfile).

xdist's loadfile scheduler queues one work unit per test file in the order the files first appear in the
collection, and hands the units out front to back: each worker takes one, then (while it has two tests or
fewer pending, as a single-test VM file has) the next one too, and a worker that finishes takes the next one.
In directory order the long QEMU files start wherever their name falls, and one that starts late keeps one
worker busy for minutes while the other has nothing left. Sorted longest first (the classic LPT rule), the
last units handed out are the short ones, so both workers finish within a short test file of each other.

FILE_SECONDS is a scheduling hint, not a timed assertion: roughly what each slow file took (all its tests; the
e2e masters built cold, as on CI's fresh machine) in full runs on a 2-core box (CI and this box, December 2026).
Files not listed keep their collection order after the listed ones. A wrong or stale number only changes the
order, never a result.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

FILE_SECONDS: dict[str, int] = {
    "tests/e2e/test_real_distros.py": 680,  # the Debian 13 base and its btrfs and RHEL-shaped masters, built first
    # Its arm64 master is built first under qemu-user: 320 s of the 586 s the file took in a full cold run here
    # (451 s of 929 s before tests/e2e/_emulatedbuild.py). No other file builds that master: whichever file runs
    # beside it, the two workers never wait on one master's build lock.
    "tests/e2e/test_arm64_pxe.py": 590,
    "tests/e2e/test_kernel_update.py": 550,  # the suite's Debian 12 BIOS install + boot (check_disk), an update
    "tests/e2e/test_package_vm.py": 490,
    "tests/e2e/test_raid_lvm.py": 340,  # a failed install (no disk matches a hint), an install, two boots
    "tests/e2e/test_secure_boot.py": 300,
    "tests/e2e/test_install.py": 300,
    "tests/e2e/test_uefi_http_boot.py": 230,
    "tests/e2e/test_real_debian.py": 210,  # the Debian 13 master on xfs
    "tests/e2e/test_pxe_boot.py": 210,
    "tests/system/test_multicast.py": 150,
    "tests/e2e/test_power_vm.py": 150,
    "tests/e2e/test_root_device.py": 145,
    "tests/e2e/test_media_reinstall.py": 120,
    "tests/e2e/test_install_bittorrent.py": 110,
    "tests/system/test_installer.py": 100,
    "tests/e2e/test_restore_install.py": 95,
    "tests/e2e/test_satellite_vm.py": 90,
    "tests/e2e/test_bootmedia_vm.py": 80,
    "tests/system/test_initramfs_rebuild.py": 55,
}


class _Item(Protocol):
    @property
    def nodeid(self) -> str: ...


def file_of(item: _Item) -> str:
    """The file part of a node id, as xdist's loadfile scheduler groups by it."""
    return item.nodeid.split("::", 1)[0]


def longest_first(items: list[_Item]) -> None:
    """Reorder `items` in place: the listed files by FILE_SECONDS, longest first, then all others as collected.
    The sort is stable, so each file's tests keep their order and stay together."""
    items.sort(key=lambda item: -FILE_SECONDS.get(file_of(item), 0))


def order_of_files(items: Sequence[_Item]) -> list[str]:
    """The files in the order xdist makes their work units: by first appearance."""
    return list(dict.fromkeys(file_of(item) for item in items))
