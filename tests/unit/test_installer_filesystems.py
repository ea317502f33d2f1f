"""Every filesystem the autoinstall script makes, the installer can mount: its kernel module is in the
installer initrd's list (a host kernel with it built in hid the missing xfs until a clone failed at mount),
and its mkfs goes in where this machine has it."""

from __future__ import annotations

import re

from appliance.boot.installer import MODULES, OPTIONAL_BINARIES, REQUIRED_BINARIES
from appliance.boot.installer.runtime import HERE as RUNTIME_DIR
from appliance.images.layout import SUPPORTED_FILESYSTEMS

# The module that mounts each (ext2 and ext3 are mounted by the ext4 driver; swap is not mounted).
MODULE_OF = {"ext2": "ext4", "ext3": "ext4", "ext4": "ext4", "xfs": "xfs", "btrfs": "btrfs", "vfat": "vfat"}


def _made_by_mkfs_fs() -> set[str]:
    """The TYPE cases of mkfs_fs in lib/filesystems.sh."""
    body = (RUNTIME_DIR / "lib/filesystems.sh").read_text()
    body = body[body.index("mkfs_fs() {"):]
    body = body[:body.index("\n}\n")]
    cases = re.findall(r"^\s+([a-z0-9|]+)\) set --", body, re.M)
    return {fs for case in cases for fs in case.split("|")} - {"vfat32"}


def test_every_filesystem_the_script_makes_has_its_module_in_the_installer() -> None:
    made = _made_by_mkfs_fs()
    assert {"ext4", "xfs", "vfat", "swap"} <= made
    assert made >= SUPPORTED_FILESYSTEMS, "layout.py accepts a filesystem mkfs_fs cannot make"
    for fs in made - {"swap"}:
        assert MODULE_OF[fs] in MODULES, f"{fs}: no {MODULE_OF[fs]} module in the installer initrd"


def test_every_mkfs_the_script_calls_goes_into_the_installer() -> None:
    body = (RUNTIME_DIR / "lib/filesystems.sh").read_text()
    tools = set(re.findall(r"\b(mkfs\.[a-z0-9]+|mkswap)\b", body)) - {"mkfs.$1"}
    assert tools, body
    assert tools <= set(REQUIRED_BINARIES) | set(OPTIONAL_BINARIES)
