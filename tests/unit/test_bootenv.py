"""appliance.boot.bootenv without a kernel download: package choice, the cpio writer, initrd assembly and cache."""

from __future__ import annotations

import gzip
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from appliance.boot.bootenv import (
    BootEnvError,
    CpioEntry,
    InitrdSpec,
    build_initrd,
    kernel_package_arch,
    library_closure,
    pick_newest_kernel_package,
    read_newc,
    write_newc,
)

APT_CACHE_SEARCH = """\
linux-image-6.1.0-56-amd64-dbg - Debug symbols for linux-image-6.1.0-56-amd64
linux-image-6.1.0-56-amd64-unsigned - Linux 6.1 for 64-bit PCs
linux-image-6.12.117+deb12-rt-amd64 - Linux 6.12 for 64-bit PCs (signed), PREEMPT_RT
linux-image-6.12-amd64 - Linux for 64-bit PCs (meta-package)
linux-image-6.12.9+deb12-amd64 - Linux 6.12 for 64-bit PCs (signed)
linux-image-6.12.117+deb12-cloud-amd64 - Linux 6.12 for x86-64 cloud (signed)
linux-image-6.12.117+deb12-amd64 - Linux 6.12 for 64-bit PCs (signed)
linux-image-6.12.111+deb12-amd64 - Linux 6.12 for 64-bit PCs (signed)
linux-image-6.1.0-56-amd64 - Linux 6.1 for 64-bit PCs (signed)
"""


def test_newest_generic_kernel_is_chosen_over_meta_dbg_unsigned_cloud_and_rt_packages() -> None:
    assert pick_newest_kernel_package(APT_CACHE_SEARCH) == "linux-image-6.12.117+deb12-amd64"


def test_versions_compare_numerically_not_as_text() -> None:
    lines = "linux-image-6.1.0-9-amd64 - Linux 6.1\nlinux-image-6.1.0-10-amd64 - Linux 6.1\n"
    assert pick_newest_kernel_package(lines) == "linux-image-6.1.0-10-amd64"


def test_arm64_kernels_are_picked_for_arm64_only() -> None:
    lines = APT_CACHE_SEARCH + ("linux-image-6.12.118+deb12-arm64 - Linux 6.12 for 64-bit ARMv8 machines (signed)\n"
                                "linux-image-6.12.118+deb12-cloud-arm64 - Linux 6.12 for arm64 cloud (signed)\n")
    assert pick_newest_kernel_package(lines, "arm64") == "linux-image-6.12.118+deb12-arm64"
    assert pick_newest_kernel_package(lines) == "linux-image-6.12.117+deb12-amd64"


@pytest.mark.parametrize(
    ("package", "arch"),
    [("linux-image-6.1.0-28-amd64", "amd64"), ("linux-image-6.12.118+deb12-arm64", "arm64"),
     ("linux-image-6.8.0-45-generic", "amd64"), ("linux-image-6.8.0-45-generic", "arm64")],
)
def test_kernel_names_of_debian_and_ubuntu_flavours_are_accepted(package: str, arch: str) -> None:
    assert kernel_package_arch(package, arch) == arch


@pytest.mark.parametrize(
    ("package", "arch", "why"),
    [("linux-image-6.12.117+deb12-cloud-amd64", "amd64", "cloud flavour is built for virtual machines only"),
     ("linux-image-6.8.0-1015-cloud", "amd64", "no drivers for real NICs"),
     ("linux-image-6.12.118+deb12-arm64", "amd64", "is an arm64 kernel, not amd64"),
     ("linux-image-6.1.0-28-amd64", "arm64", "is an amd64 kernel, not arm64"),
     ("linux-headers-6.1.0-28-amd64", "amd64", "is not a kernel image package")],
)
def test_other_kernel_names_are_refused_with_the_reason(package: str, arch: str, why: str) -> None:
    with pytest.raises(BootEnvError, match=why):
        kernel_package_arch(package, arch)


def test_no_kernel_package_gives_none() -> None:
    assert pick_newest_kernel_package("linux-image-6.12-amd64 - Linux (meta-package)\n") is None


def test_newc_archive_round_trips_and_gnu_cpio_reads_it(tmp_path: Path) -> None:
    entries = [
        CpioEntry("bin", stat.S_IFDIR | 0o755),
        CpioEntry("bin/hello", stat.S_IFREG | 0o755, b"#!/bin/sh\necho hi\n"),
        CpioEntry("bin/sh", stat.S_IFLNK | 0o777, b"/bin/busybox"),
        CpioEntry("odd", stat.S_IFREG | 0o644, b"x" * 5),  # lengths not multiple of 4 exercise the padding
    ]
    archive = tmp_path / "a.cpio"
    with open(archive, "wb") as out:
        write_newc(entries, out)

    assert read_newc(archive.read_bytes()) == entries
    listing = subprocess.run(["cpio", "-itv", "--quiet"], input=archive.read_bytes(), capture_output=True, check=True)
    lines = listing.stdout.decode().splitlines()
    assert [line.split()[8] for line in lines] == ["bin", "bin/hello", "bin/sh", "odd"]
    assert lines[2].endswith("bin/sh -> /bin/busybox")


def test_static_busybox_needs_no_libraries() -> None:
    assert library_closure(Path("/bin/busybox")) == []


def test_initrd_holds_busybox_applets_binaries_with_libraries_files_and_init(tmp_path: Path) -> None:
    extra = tmp_path / "hook.sh"
    extra.write_text("#!/bin/sh\nexit 0\n")
    spec = InitrdSpec(init="#!/bin/sh\necho init\n", binaries=["rsync"], files={"lab/hook.sh": extra, "etc/motd": "hi"})

    image = build_initrd(spec, tmp_path / "cache")
    members = {entry.name: entry for entry in read_newc(gzip.decompress(image.read_bytes()))}

    assert members["init"].data == b"#!/bin/sh\necho init\n" and members["init"].mode & 0o111
    assert members["bin/sh"].data == b"/bin/busybox" and stat.S_ISLNK(members["bin/sh"].mode)
    assert members["bin/busybox"].data == Path("/bin/busybox").read_bytes()
    rsync = shutil.which("rsync")
    assert rsync is not None
    assert rsync.lstrip("/") in members
    for library in library_closure(Path(rsync)):
        assert str(library).lstrip("/") in members, f"{library} missing"
    assert members["lab/hook.sh"].mode & 0o111 and members["etc/motd"].data == b"hi"


@pytest.mark.skipif(os.geteuid() != 0, reason="chroot needs root")
def test_binaries_in_the_initrd_run_with_only_the_copied_libraries(tmp_path: Path) -> None:
    spec = InitrdSpec(init="#!/bin/sh\n", binaries=["rsync"])
    image = build_initrd(spec, tmp_path / "cache")
    root = tmp_path / "root"
    root.mkdir()
    subprocess.run(["cpio", "-idm", "--quiet"], input=gzip.decompress(image.read_bytes()), cwd=root, check=True)

    version = subprocess.run(["chroot", str(root), "rsync", "--version"], capture_output=True, text=True)
    shell = subprocess.run(["chroot", str(root), "/bin/sh", "-c", "echo busybox-ok"], capture_output=True, text=True)

    assert version.returncode == 0, version.stderr
    assert "rsync" in version.stdout
    assert shell.stdout.strip() == "busybox-ok"


def test_initrd_is_cached_by_its_inputs(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    first = build_initrd(InitrdSpec(init="#!/bin/sh\n"), cache)
    built_at = first.stat().st_mtime_ns
    again = build_initrd(InitrdSpec(init="#!/bin/sh\n"), cache)
    other = build_initrd(InitrdSpec(init="#!/bin/sh\necho changed\n"), cache)

    assert again == first and first.stat().st_mtime_ns == built_at
    assert other != first
    assert sorted(path.name for path in (cache / "initrd").iterdir()) == sorted([first.name, other.name])


def test_modules_without_a_kernel_are_refused(tmp_path: Path) -> None:
    with pytest.raises(BootEnvError, match="no kernel"):
        build_initrd(InitrdSpec(init="#!/bin/sh\n", modules=["virtio_net"]), tmp_path)
