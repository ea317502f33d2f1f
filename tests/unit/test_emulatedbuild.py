"""The foreign-arch master build's native shortcuts (tests/e2e/_emulatedbuild.py): the package list cut to what
debootstrap installs, .debs repacked with an uncompressed data.tar that dpkg-deb reads the same, the build's
dpkg configuration there only while the second stage runs."""

from __future__ import annotations

import io
import lzma
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from tests.e2e import _debianmaster as dm
from tests.e2e import _emulatedbuild as emulated


def _stanza(name: str) -> str:
    return f"Package: {name}\nVersion: 1\nArchitecture: arm64\nDescription: {name}\n"


def test_package_lists_keep_only_the_stanzas_debootstrap_installs(tmp_path: Path) -> None:
    (tmp_path / "debootstrap").mkdir()
    (tmp_path / "debootstrap/required").write_text("libc6 dpkg\n")
    (tmp_path / "debootstrap/base").write_text("openssh-server\n")
    lists = tmp_path / "var/lib/apt/lists"
    lists.mkdir(parents=True)
    packages = lists / "deb.debian.org_debian_dists_bookworm_main_binary-arm64_Packages"
    names = ["0ad", "dpkg", "libc6", "libc6-dev", "openssh-server", "zsh"]
    packages.write_text("\n".join(_stanza(n) for n in names))
    assert emulated.trim_package_lists(tmp_path) == 3
    text = packages.read_text()
    assert [line.split()[1] for line in text.splitlines() if line.startswith("Package:")] == [
        "dpkg", "libc6", "openssh-server"]
    assert _stanza("libc6") in text and "\n\n" in text


def _deb(path: Path, files: dict[str, bytes]) -> None:
    """A .deb as Debian builds it: data.tar.xz."""
    work = path.parent / f"{path.name}.d"
    (work / "DEBIAN").mkdir(parents=True)
    (work / "DEBIAN/control").write_text("Package: demo\nVersion: 1.0\nArchitecture: arm64\nMaintainer: x <x@y>\n"
                                         "Description: demo\n")
    for name, data in files.items():
        (work / name).parent.mkdir(parents=True, exist_ok=True)
        (work / name).write_bytes(data)
    subprocess.run(["dpkg-deb", "-Zxz", "--root-owner-group", "-b", str(work), str(path)], check=True,
                   capture_output=True)


@pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="dpkg-deb is missing")
def test_an_xz_deb_is_repacked_uncompressed_with_the_same_contents(tmp_path: Path) -> None:
    deb = tmp_path / "root/var/cache/apt/archives/demo_1.0_arm64.deb"
    deb.parent.mkdir(parents=True)
    files = {"usr/lib/modules/6.1/kernel/a.ko": b"\x7fELF" + bytes(range(256)) * 40, "etc/demo.conf": b"x = 1\n"}
    _deb(deb, files)
    before = subprocess.run(["dpkg-deb", "-c", str(deb)], capture_output=True, text=True, check=True).stdout
    (tmp_path / "root/debootstrap").mkdir()
    (tmp_path / "root/debootstrap/debpaths").write_text(f"demo /var/cache/apt/archives/{deb.name}\n")

    assert emulated.uncompress_debs(tmp_path / "root", from_bytes=deb.stat().st_size + 1) == 0, "a small one stays"
    assert emulated.uncompress_debs(tmp_path / "root", from_bytes=0) == 1
    members = subprocess.run(["ar", "t", str(deb)], capture_output=True, text=True, check=True).stdout.split()
    assert members[0] == "debian-binary" and members[-1] == "data.tar", members
    assert subprocess.run(["dpkg-deb", "-c", str(deb)], capture_output=True, text=True, check=True).stdout == before
    assert "Package: demo" in subprocess.run(["dpkg-deb", "-f", str(deb)], capture_output=True, text=True,
                                             check=True).stdout
    out = tmp_path / "unpacked"
    subprocess.run(["dpkg-deb", "-x", str(deb), str(out)], check=True)
    for name, data in files.items():
        assert (out / name).read_bytes() == data
    assert emulated.uncompress_debs(tmp_path / "root", from_bytes=0) == 0, "an uncompressed one is left as it is"


def test_an_odd_sized_member_is_padded_as_ar_wants(tmp_path: Path) -> None:
    deb = tmp_path / "odd.deb"
    tar = io.BytesIO()
    with tarfile.open(fileobj=tar, mode="w") as t:
        info = tarfile.TarInfo("x")
        info.size = 1
        t.addfile(info, io.BytesIO(b"y"))
    with open(deb, "wb") as f:
        f.write(emulated.AR_MAGIC)
        emulated._ar_add(f, "debian-binary", io.BytesIO(b"2.0\n"))
        emulated._ar_add(f, "control.tar", io.BytesIO(b"abc"))  # odd: one byte of padding follows
        emulated._ar_add(f, "data.tar.xz", io.BytesIO(lzma.compress(tar.getvalue())))
    assert emulated._uncompress_deb(deb)
    with open(deb, "rb") as f:
        f.read(len(emulated.AR_MAGIC))
        members = [(name, size) for name, _, size in emulated._ar_members(f)]
    assert members == [("debian-binary", 4), ("control.tar", 3), ("data.tar", len(tar.getvalue()))]


def test_the_build_dpkg_settings_leave_out_docs_and_the_pruned_module_directories(tmp_path: Path) -> None:
    dm._build_dpkg_settings(tmp_path, ("drivers/gpu",))  # every master's, the emulated second stage's too
    text = (tmp_path / dm.BUILD_DPKG_CFG).read_text()
    assert text.startswith("force-unsafe-io\n")
    assert "path-exclude=/usr/share/doc/*\n" in text
    assert "path-exclude=*/modules/*/kernel/drivers/gpu/*\n" in text


def test_the_initramfs_is_linked_as_the_kernel_postinst_links_it(tmp_path: Path) -> None:
    (tmp_path / "boot").mkdir()
    for name in ("vmlinuz-6.1.0-50-arm64", "initrd.img-6.1.0-50-arm64"):
        (tmp_path / "boot" / name).write_bytes(b"x")
    for link in ("vmlinuz", "vmlinuz.old"):
        (tmp_path / link).symlink_to("boot/vmlinuz-6.1.0-50-arm64")
    emulated.link_initramfs(tmp_path)
    emulated.link_initramfs(tmp_path)  # once made, left as they are
    for link in ("initrd.img", "initrd.img.old"):
        assert os.readlink(tmp_path / link) == "boot/initrd.img-6.1.0-50-arm64"
