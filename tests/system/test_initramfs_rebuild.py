"""INITRAMFS_REBUILD=1: the installer rebuilds the image's initramfs with the image's own tool in the
new system, instead of appending the resume fix-up. Run on the real Debian 12 master
(tests/e2e/_debianmaster.py, cached): a copy of its tree is the installed system, /dev, /proc and /sys
bound into it as the installer binds them, and the generated script's retie_to_new_disks runs with a
new swap UUID. The initramfs it leaves (unpacked by the image's own unmkinitramfs) is one archive
set, rebuilt, whose conf/conf.d/resume names the new swap, not the master's."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from tests.e2e import _debianmaster as dm
from tests.installer_sh import prelude

pytestmark = [
    pytest.mark.system,
    pytest.mark.skipif(os.geteuid() != 0, reason="chroot and bind mounts need root"),
    pytest.mark.skipif(shutil.which("debootstrap") is None, reason="debootstrap is not installed (make deps)"),
]
NEW_SWAP = "0d15ea5e-0000-4000-8000-00000000cafe"


def test_initramfs_rebuild_in_the_real_debian_master_names_the_new_swap(bootenv_cache: Path, tmp_path: Path) -> None:
    cached = dm.build(bootenv_cache)
    target = tmp_path / "target"
    subprocess.run(["rsync", "-aHAX", "--numeric-ids", f"{cached}/", f"{target}/"], check=True)
    [initrd] = (target / "boot").glob("initrd.img-*")
    before = initrd.read_bytes()
    script = prelude("common", "report", "bootloader") + "retie_to_new_disks\n"
    mounts: list[Path] = []
    try:
        for fs in ("dev", "proc", "sys"):
            subprocess.run(["mount", "--bind", f"/{fs}", str(target / fs)], check=True)
            mounts.append(target / fs)
        started = time.monotonic()
        run = subprocess.run(["sh", "-euc", script], capture_output=True, text=True, timeout=900,
                             env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "TARGET": str(target),
                                  "SWAP_UUID": NEW_SWAP, "INITRAMFS_REBUILD": "1", "STAGE": "initramfs"})
        took = time.monotonic() - started
    finally:
        for m in reversed(mounts):
            subprocess.run(["umount", "-l", str(m)], capture_output=True)
    assert run.returncode == 0, run.stdout + run.stderr
    print(f"\n[timing] update-initramfs -u -k all in the real Debian master: {took:.0f} s")
    assert f"[initramfs] update-initramfs in the new system (RESUME=UUID={NEW_SWAP})" in run.stdout
    resume = (target / "etc/initramfs-tools/conf.d/resume").read_text()
    assert resume == f"RESUME=UUID={NEW_SWAP}\n"
    after = initrd.read_bytes()
    assert after != before and not after.startswith(before), "the initramfs was appended to, not rebuilt"
    unpacked = tmp_path / "unpacked"
    subprocess.run(["chroot", str(target), "unmkinitramfs", f"/boot/{initrd.name}", "/tmp/unpacked"], check=True,
                   capture_output=True)
    shutil.move(target / "tmp/unpacked", unpacked)
    confs = [p.read_text() for p in unpacked.rglob("conf/conf.d/resume")]
    assert confs == [f"RESUME=UUID={NEW_SWAP}\n"], confs
    assert dm.MASTER_SWAP_UUID.encode() not in b"".join(p.read_bytes() for p in unpacked.rglob("conf/*") if p.is_file())
    # The modules a virtio machine boots from are in it (the image's own MODULES= policy, rebuilt whole).
    assert list(unpacked.rglob("virtio_blk.ko*")), "no virtio_blk in the rebuilt initramfs"
