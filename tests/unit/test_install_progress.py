"""The installer's copy progress (lib/report.sh's progress_monitor, the real file sourced) counts the bytes
written to the target's block devices, so it never goes backwards: df did on xfs (42 %, 45 %, 42 %...), whose
used space shrinks as speculative preallocations are trimmed. A fake /proc/mounts and /sys/class/block."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

from tests.installer_sh import prelude

TARGET = "/mnt/target"
MOUNTS = (f"/dev/vda2 {TARGET} xfs rw 0 0\n/dev/vda1 {TARGET}/boot/efi vfat rw 0 0\n"
          f"/dev/vda2 {TARGET}/home xfs rw,subvol=x 0 0\n"  # the same device twice: counted once
          "/dev/vdb1 /mnt/media iso9660 ro 0 0\nproc /proc proc rw 0 0\n"
          f"udev {TARGET}/dev devtmpfs rw 0 0\n")


def _stat(sectors_written: int) -> str:
    return f"  100 0 800 10 {sectors_written // 8} 0 {sectors_written} 50 0 60 60 0 0 0 0\n"


def test_progress_counts_bytes_written_to_the_targets_devices_and_never_goes_back(tmp_path: Path) -> None:
    sysfs = tmp_path / "block"
    for dev in ("vda1", "vda2", "vdb1"):
        (sysfs / dev).mkdir(parents=True)
    stage, posts = tmp_path / "stage", tmp_path / "posts"
    mounts = tmp_path / "mounts"
    mounts.write_text(MOUNTS)

    def written(vda1: int, vda2: int, other: int = 0) -> None:
        (sysfs / "vda1/stat").write_text(_stat(vda1))
        (sysfs / "vda2/stat").write_text(_stat(vda2))
        (sysfs / "vdb1/stat").write_text(_stat(other))

    written(100, 5000)  # mkfs wrote these: the baseline
    stage.write_text("mount\n")
    script = prelude("common", "report") + (
        # http_request stand-in: each report's body, one a line
        f'http_request() {{ printf "%s\\n" "$4" >>{posts}; }}\n'
        "progress_monitor\n")
    proc = subprocess.Popen(["sh", "-euc", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={"PATH": "/usr/bin:/bin", "TARGET": TARGET, "STAGE_FILE": str(stage),
                                 "PROC_MOUNTS": str(mounts), "SYS_BLOCK": str(sysfs), "PROGRESS_INTERVAL": "0.1",
                                 "IMAGE_BYTES": str(8 << 20), "IMAGESERVER_URL": "http://x", "MAC": "m"})

    def reports() -> list[dict[str, int]]:
        return [json.loads(line) for line in posts.read_text().splitlines()] if posts.exists() else []

    def wait_for(n: int) -> None:
        deadline = time.monotonic() + 10
        while len(reports()) < n and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(reports()) >= n, reports()

    time.sleep(0.3)
    stage.write_text("rsync\n")
    wait_for(1)
    written(100 + 2048, 5000 + 4096, other=999_999)  # 3 MiB to the target; another disk's writes do not count
    n = len(reports())
    wait_for(n + 2)
    mounts.write_text(MOUNTS.replace(f"/dev/vda1 {TARGET}/boot/efi vfat rw 0 0\n", ""))  # its count goes away
    n = len(reports())
    wait_for(n + 2)
    written(100 + 2048, 5000 + 4096 + 40960)  # 20 MiB more: more than the image, shown as the image's size
    n = len(reports())
    wait_for(n + 2)
    stage.write_text("fstab\n")
    assert proc.wait(timeout=10) == 0, proc.communicate()
    got = [r["bytes"] for r in reports()]
    assert all(r["stage"] == "progress" and r["total"] == 8 << 20 for r in reports())  # type: ignore[comparison-overlap]
    assert got == sorted(got), f"the progress went backwards: {got}"
    assert got[0] == 0 and 3 << 20 in got and got[-1] == 8 << 20, got
