"""The shell that runs on other machines: prepareclient, updateclient as served and generated autoinstall
scripts are POSIX sh, pass `sh -n` and shellcheck, and prepareclient refuses bad input with a clear message."""

from __future__ import annotations

import os
import shutil
import subprocess
from importlib.resources import files
from pathlib import Path

import pytest

from appliance.boot.installer.runtime import HERE as RUNTIME_DIR
from appliance.boot.installer.runtime import client_script
from appliance.images.autoinstall import AutoinstallError, ScriptSettings, generate
from appliance.images.layout import read_layout
from state.images import ImageVersion

PREPARECLIENT = Path(str(files("appliance") / "data" / "prepareclient"))
needs_shellcheck = pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck is not installed")
needs_sfdisk = pytest.mark.skipif(shutil.which("sfdisk") is None, reason="sfdisk is not installed")


def check_sh(path: Path, *shellcheck_args: str) -> None:
    subprocess.run(["sh", "-n", str(path)], check=True)
    if shutil.which("dash"):
        subprocess.run(["dash", "-n", str(path)], check=True)
    result = subprocess.run(["shellcheck", "-s", "sh", *shellcheck_args, str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


@needs_shellcheck
def test_prepareclient_is_clean_posix_sh() -> None:
    check_sh(PREPARECLIENT)
    assert os.access(PREPARECLIENT, os.X_OK)


@pytest.mark.parametrize(("args", "message"), [
    ([], "--server ADDR is required"),
    (["--server", "10.0.0.1;reboot"], "is not an address"),
    (["--server", "10.0.0.1", "--port", "x"], "--port must be a number"),
    (["--bogus"], "unknown argument"),
])
def test_prepareclient_refuses_bad_input(tmp_path: Path, args: list[str], message: str) -> None:
    env = {**os.environ, "SYSTEMIMAGER_ROOT": str(tmp_path)}
    result = subprocess.run(["sh", str(PREPARECLIENT), *args], capture_output=True, text=True, env=env)
    assert result.returncode != 0
    assert message in result.stderr
    assert not (tmp_path / "run").exists()  # nothing started, nothing written


def test_prepareclient_names_a_missing_tool_and_its_package(tmp_path: Path) -> None:
    """A master without sfdisk (Debian: package fdisk) would record no partitions: refuse, write nothing."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("sh", "id", "uname", "basename", "cat", "rm", "mkdir", "lsblk", "blockdev", "rsync", "stat"):
        if found := shutil.which(tool):
            (bin_dir / tool).symlink_to(found)
    root = tmp_path / "root"
    root.mkdir()
    env = {"PATH": str(bin_dir), "SYSTEMIMAGER_ROOT": str(root), "SYSTEMIMAGER_RUN": str(tmp_path / "run")}
    result = subprocess.run([str(bin_dir / "sh"), str(PREPARECLIENT), "--server", "10.0.0.1"], capture_output=True,
                            text=True, env=env)
    assert result.returncode == 1, result
    assert "sfdisk (Debian/Ubuntu package fdisk)" in result.stderr
    assert not (root / "etc").exists() and not (tmp_path / "run").exists()


def test_prepareclient_help() -> None:
    result = subprocess.run(["sh", str(PREPARECLIENT), "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "--server ADDR" in result.stdout and "--ssh" in result.stdout


def image_with(tmp_path: Path, table: str, fstab: str, swaps: str = "") -> ImageVersion:
    disk = tmp_path / "disk.img"
    with open(disk, "wb") as f:
        f.truncate(512 << 20)
    subprocess.run(["sfdisk", "-q", str(disk)], input=table, text=True, check=True, capture_output=True)
    dump = subprocess.run(["sfdisk", "--dump", str(disk)], text=True, check=True, capture_output=True).stdout
    si = tmp_path / "tree/etc/systemimager"
    (si / "disks").mkdir(parents=True)
    (si / "disks/disk.img.sfdisk").write_text(dump)
    (si / "disks/order").write_text(f"disk.img {512 << 20}\n")
    if swaps:
        (si / "swaps").write_text(swaps)
    uuids = [line.split("uuid=")[1].split(",")[0] for line in dump.splitlines() if "uuid=" in line]
    devs = [line.split(" :")[0] for line in dump.splitlines() if " : start=" in line]
    (tmp_path / "tree/etc/fstab").write_text(fstab.format(u=uuids, d=devs))
    layout = read_layout(si)
    return ImageVersion("web", 2, str(tmp_path / "tree"), 0.0, layout=layout.to_json())


@needs_shellcheck
@needs_sfdisk
@pytest.mark.parametrize(("table", "fstab"), [
    ('label: gpt\n,64M,U\n,128M,L\n,320M,L\n,,S\n',
     "PARTUUID={u[0]} /boot/efi vfat umask=0077 0 1\nPARTUUID={u[1]} / ext4 errors=remount-ro 0 1\n"
     "PARTUUID={u[2]} /srv\\040data xfs defaults 0 2\nPARTUUID={u[3]} none swap sw 0 0\n/swapfile none swap sw 0 0\n"
     "proc /proc proc defaults 0 0\n"),
    ("label: dos\n,100M,83,*\n,,E\n,50M,82\n,,83\n",
     "{d[0]} /boot ext2 defaults 0 2\n{d[3]} / ext4 defaults 0 1\n{d[2]} none swap sw 0 0\n"),
], ids=["gpt-esp-xfs-swap", "mbr-extended"])
def test_generated_scripts_are_clean_posix_sh(tmp_path: Path, table: str, fstab: str) -> None:
    iv = image_with(tmp_path, table, fstab, swaps="Filename Type Size Used Priority\n/swapfile file 65536 0 -2\n")
    text, _ = generate(iv, ScriptSettings(rsync_port=8873, imageserver="10.0.0.1"))
    script = tmp_path / "web.master"
    script.write_text(text)
    check_sh(script)
    assert "RSYNC_PORT=${RSYNC_PORT:-8873}" in text and "VERSION=${VERSION:-2}" in text
    assert "/dev/sda" not in text and "disk.img1" not in text  # no device of the master is hard-coded
    if "gpt" in table:
        assert "pull_fat '/boot/efi'" in text and "make_swapfile '/swapfile' 65536" in text
        assert "'/srv\\040data\txfs\tdefaults\t0\t2'" in text  # the escaped mount point stays escaped in fstab
    else:
        assert "BOOT_SEPARATE=1" in text and "part5 :" in text


@needs_sfdisk
def test_an_image_without_a_root_entry_gets_no_script(tmp_path: Path) -> None:
    iv = image_with(tmp_path, "label: gpt\n,,L\n", "tmpfs /tmp tmpfs defaults 0 0\n")
    with pytest.raises(AutoinstallError, match="no on-disk entry for /"):
        generate(iv, ScriptSettings())


@needs_shellcheck
def test_served_updateclient_is_its_body_with_the_common_library_inlined(tmp_path: Path) -> None:
    """updateclient as GET /client/updateclient serves it: lib/common.sh in place of the line sourcing it
    (one source of say/json_str/http_request/rsync_in_line), clean POSIX sh on its own."""
    body = Path(str(files("appliance") / "data" / "updateclient"))
    served = client_script(body).decode()
    assert '"$INSTALLER_LIB/lib/common.sh"' in body.read_text() and "INSTALLER_LIB" not in served
    assert (RUNTIME_DIR / "lib/common.sh").read_text().split("\n", 1)[1] in served
    assert served.splitlines()[:6] == body.read_text().splitlines()[:6]  # usage() prints lines 3-6 of itself
    script = tmp_path / "updateclient"
    script.write_text(served)
    # SC2317: the library's functions this body never calls (report, private_file ...) look unreachable here.
    check_sh(script, "-e", "SC2317")
    result = subprocess.run(["sh", str(script), "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "updateclient --autoinstall" in result.stdout

