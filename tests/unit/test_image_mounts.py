"""What getimage leaves out, from the master's mount table and swaps; patterns checked with real rsync."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from appliance.images.mounts import Mount, Swap, exclusions, parse_mountinfo, parse_mounts, parse_swaps

MOUNTINFO = """\
21 1 252:0 / / rw,relatime shared:1 - ext4 /dev/vda rw
22 21 0:20 / /proc rw,nosuid shared:12 - proc proc rw
23 21 0:21 / /sys rw,nosuid shared:2 - sysfs sysfs rw
24 21 0:5 / /dev rw,nosuid shared:8 - devtmpfs udev rw,size=4G
25 24 0:22 / /dev/pts rw shared:9 - devpts devpts rw
26 21 0:23 / /run rw,nosuid shared:10 - tmpfs tmpfs rw
27 23 0:24 / /sys/fs/cgroup rw shared:11 - cgroup2 cgroup2 rw
28 21 252:1 / /boot rw,relatime shared:30 - ext4 /dev/vda1 rw
29 21 252:2 / /home rw,relatime shared:31 - xfs /dev/vda2 rw
30 21 0:40 / /mnt/nfs rw shared:40 - nfs4 srv:/export rw
31 21 0:41 / /media/my\\040stick rw shared:41 - vfat /dev/sdb1 rw
32 21 0:42 / /srv/sshfs rw shared:42 - fuse.sshfs u@h:/ rw
33 21 0:43 / /var/lib/docker/overlay2/x/merged rw - overlay overlay rw
34 21 7:0 / /snap/core/1 ro - squashfs /dev/loop0 ro
35 21 0:44 / /misc rw - autofs systemd-1 rw
36 21 252:0 /srv/data /var/www rw - ext4 /dev/vda rw
37 21 0:45 / /mnt/strange rw - weirdfs none rw
"""


def test_mountinfo_fields_and_escapes() -> None:
    mounts = parse_mountinfo(MOUNTINFO)
    assert Mount("/media/my stick", "vfat", "/dev/sdb1", "/") in mounts
    assert Mount("/var/www", "ext4", "/dev/vda", "/srv/data") in mounts
    assert len(mounts) == 17


def test_only_real_on_disk_filesystems_are_captured() -> None:
    patterns = {e.pattern: e.reason for e in exclusions(parse_mountinfo(MOUNTINFO))}
    for virtual in ("/proc/*", "/sys/*", "/dev/*", "/dev/pts/*", "/run/*", "/sys/fs/cgroup/*", "/mnt/nfs/*",
                    "/srv/sshfs/*", "/var/lib/docker/overlay2/x/merged/*", "/snap/core/1/*", "/misc/*",
                    "/mnt/strange/*"):
        assert virtual in patterns, virtual
    assert patterns["/var/www/*"].startswith("bind mount")
    assert patterns["/mnt/strange/*"] == "weirdfs mount"  # unknown types are left out, not copied
    for kept in ("/*", "/boot/*", "/home/*", "/media/my stick/*"):
        assert kept not in patterns
    for runtime in ("/tmp/*", "/var/tmp/*", "/run/*", "/var/run/*"):
        assert runtime in patterns


def test_proc_mounts_format_and_swap_files() -> None:
    mounts = parse_mounts("proc /proc proc rw 0 0\n/dev/vda / ext4 rw 0 0\ntmpfs /mnt/r\\040am tmpfs rw 0 0\n")
    assert [m.mountpoint for m in mounts] == ["/proc", "/", "/mnt/r am"]
    swaps = parse_swaps("Filename\tType\tSize\tUsed\tPriority\n/swapfile file 1048572 0 -2\n"
                        "/dev/vda3 partition 2097148 0 -3\n")
    assert swaps == [Swap("/swapfile", "file", 1048572), Swap("/dev/vda3", "partition", 2097148)]
    patterns = [e.pattern for e in exclusions(mounts, swaps, extra=["/var/cache/apt/archives/*.deb"])]
    assert "/swapfile" in patterns and "/dev/vda3" not in patterns
    assert patterns[-1] == "/var/cache/apt/archives/*.deb"


@pytest.mark.skipif(shutil.which("rsync") is None, reason="rsync is not installed")
def test_patterns_exclude_exactly_the_mounted_directories_with_real_rsync(tmp_path: Path) -> None:
    src = tmp_path / "src"
    for d in ("mnt/we*ird", "mnt/weXird", "mnt/sp ace", "proc/1", "data", "tmp/sub"):
        (src / d).mkdir(parents=True)
        (src / d / "f").write_text(d)
    (src / "swap[1]").write_text("swap")
    (src / "swapX").write_text("not swap")
    mounts = [Mount("/mnt/we*ird", "tmpfs"), Mount("/mnt/sp ace", "nfs"), Mount("/data", "ext4")]
    rules = exclusions(mounts, [Swap("/swap[1]", "file", 4)])
    excl = tmp_path / "excl"
    excl.write_text("".join(e.pattern + "\n" for e in rules))
    subprocess.run(["rsync", "-a", f"--exclude-from={excl}", f"{src}/", f"{tmp_path / 'dst'}/"], check=True)
    got = sorted(str(p.relative_to(tmp_path / "dst")) for p in (tmp_path / "dst").rglob("*"))
    assert got == ["data", "data/f", "mnt", "mnt/sp ace", "mnt/we*ird", "mnt/weXird", "mnt/weXird/f", "proc",
                   "swapX", "tmp"]
