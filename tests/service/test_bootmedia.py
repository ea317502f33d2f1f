"""`imageserver mkbootmedia`: what the ISO and the USB image carry, read back with independent tools.

The media are made by the real CLI with real xorriso, isolinux, syslinux, mtools and GRUB; they are
read back with xorriso (-find, -report_el_torito, -extract), sfdisk -J and mtools (mdir, mtype,
mcopy), never with our own code. Booting them is tests/e2e/test_bootmedia_vm.py's job.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from ipaddress import IPv4Address
from pathlib import Path

import pytest

from appliance.boot import bootmedia
from domain.hosts import new_host_op
from state.db import connect, db_path

REPO = Path(__file__).resolve().parents[2]
TOOLS = ("xorriso", "syslinux", "mdir", "mtype", "mcopy", "mkfs.vfat", "sfdisk")
missing = [t for t in TOOLS if shutil.which(t) is None]
pytestmark = pytest.mark.skipif(bool(missing) or not Path("/usr/lib/ISOLINUX/isolinux.bin").exists(),
                                reason=f"boot media tools missing: {missing or 'isolinux'} (deps/apt-packages.txt)")

LOCAL = {"IMAGESERVER": "10.0.0.1", "HOSTNAME": "node7", "IPADDR": "10.0.0.57", "NETMASK": "255.255.255.0",
         "GATEWAY": "10.0.0.1", "DEVICE": "eth1"}


@pytest.fixture
def state(tmp_path: Path) -> Path:
    installer = tmp_path / "state" / "boot" / "installer"
    installer.mkdir(parents=True)
    (installer / "vmlinuz").write_bytes(os.urandom(700_000))
    (installer / "initrd.img").write_bytes(os.urandom(1_300_000))
    return tmp_path / "state"


def mkbootmedia(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "IMAGESERVER_CONFIG": "/nonexistent/imageserver.toml"}
    result = subprocess.run([sys.executable, "-m", "appliance.cli", "mkbootmedia", *args], capture_output=True,
                            text=True, env=env, cwd=REPO, timeout=60)
    if check:
        assert result.returncode == 0, result.stderr
    return result


def sets(values: dict[str, str]) -> list[str]:
    return [arg for k, v in values.items() for arg in ("--set", f"{k}={v}")]


def read_cfg(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#"))


def iso_extract(iso: Path, path: str, out: Path) -> bytes:
    subprocess.run(["xorriso", "-osirrox", "on", "-indev", str(iso), "-extract", path, str(out)],
                   check=True, capture_output=True)
    return out.read_bytes()


def test_iso_carries_installer_bootloaders_and_local_cfg(state: Path, tmp_path: Path) -> None:
    iso = tmp_path / "node7.iso"
    made = json.loads(mkbootmedia("--state-dir", str(state), "--iso", str(iso), "--append", "console=ttyS0",
                                  *sets(LOCAL), "--json").stdout)
    assert made[0]["kind"] == "iso" and made[0]["local_cfg"] is True

    found = subprocess.run(["xorriso", "-indev", str(iso), "-find", "/", "-type", "f"], capture_output=True,
                           text=True, check=True).stdout
    files = {line.strip("'") for line in found.split()}
    assert {"/isolinux/isolinux.bin", "/isolinux/ldlinux.c32", "/isolinux/isolinux.cfg", "/imageserver/vmlinuz",
            "/imageserver/initrd.img", "/local.cfg"} <= files

    # El Torito: a BIOS no-emulation entry (isolinux), and a UEFI one where GRUB EFI is installed.
    torito = subprocess.run(["xorriso", "-indev", str(iso), "-report_el_torito", "plain"], capture_output=True,
                            text=True, check=True).stdout
    assert "/isolinux/isolinux.bin" in torito and "BIOS" in torito
    assert ("UEFI" in torito) == bootmedia.efi_available() == made[0]["efi"]
    if made[0]["efi"]:
        assert {"/EFI/BOOT/BOOTX64.EFI", "/boot/grub/grub.cfg"} <= files
        grub = iso_extract(iso, "/boot/grub/grub.cfg", tmp_path / "grub.cfg").decode()
        assert "linux /imageserver/vmlinuz console=ttyS0" in grub and "initrd /imageserver/initrd.img" in grub

    installer = state / "boot" / "installer"
    assert iso_extract(iso, "/imageserver/vmlinuz", tmp_path / "k") == (installer / "vmlinuz").read_bytes()
    assert iso_extract(iso, "/imageserver/initrd.img", tmp_path / "i") == (installer / "initrd.img").read_bytes()
    isolinux = iso_extract(iso, "/isolinux/isolinux.cfg", tmp_path / "isolinux.cfg").decode()
    assert "KERNEL /imageserver/vmlinuz" in isolinux and "INITRD /imageserver/initrd.img" in isolinux
    assert "APPEND console=ttyS0\n" in isolinux and "DEFAULT install" in isolinux

    # local.cfg: the seed's VARIABLE=value format (valid sh), DEVICE also under the installer's name.
    cfg = tmp_path / "local.cfg"
    text = iso_extract(iso, "/local.cfg", cfg).decode()
    subprocess.run(["sh", "-n", str(cfg)], check=True)
    assert read_cfg(text) == {**LOCAL, "IFACE": "eth1"}
    # Hybrid: the same file is a disk image with an MBR partition table (can be dd'ed to a stick).
    assert iso.read_bytes()[510:512] == b"\x55\xaa"


def test_usb_image_is_an_mbr_disk_with_syslinux_on_fat(state: Path, tmp_path: Path) -> None:
    cfg_file = tmp_path / "mine.cfg"
    cfg_file.write_text("# from the operator\nIMAGESERVER='10.0.0.1'\nHOSTNAME=node8\n\nIPADDR=10.0.0.58\n"
                        "NETMASK=255.255.255.0\n")
    usb = tmp_path / "node8.img"
    mkbootmedia("--state-dir", str(state), "--usb", str(usb), "--local-cfg", str(cfg_file),
                "--set", "HOSTNAME=node9", "--append", "console=ttyS0 quiet")

    table = json.loads(subprocess.run(["sfdisk", "-J", str(usb)], capture_output=True, text=True,
                                      check=True).stdout)["partitiontable"]
    assert table["label"] == "dos" and len(table["partitions"]) == 1
    part = table["partitions"][0]
    assert part["start"] == 2048 and part["bootable"] is True and part["type"] == "c"
    assert part["start"] + part["size"] <= usb.stat().st_size // 512
    raw = usb.read_bytes()
    assert raw[:440] == Path("/usr/lib/syslinux/mbr/mbr.bin").read_bytes()[:440]  # boots the active partition
    assert b"SYSLINUX" in raw[1 << 20:(1 << 20) + 512]  # syslinux's boot sector on the FAT partition

    fat = f"{usb}@@1M"
    listing = subprocess.run(["mdir", "-a", "-b", "-/", "-i", fat, "::/"], capture_output=True, text=True,
                             check=True).stdout.lower()
    for name in ("::/syslinux/ldlinux.sys", "::/syslinux/ldlinux.c32", "::/syslinux/syslinux.cfg",
                 "::/imageserver/vmlinuz", "::/imageserver/initrd.img", "::/local.cfg"):
        assert name in listing, listing
    syslinux_cfg = subprocess.run(["mtype", "-i", fat, "::/syslinux/syslinux.cfg"], capture_output=True,
                                  text=True, check=True).stdout
    assert "APPEND console=ttyS0 quiet" in syslinux_cfg and "KERNEL /imageserver/vmlinuz" in syslinux_cfg
    local = subprocess.run(["mtype", "-i", fat, "::/local.cfg"], capture_output=True, text=True, check=True).stdout
    # The file's values, checked and normalized; --set wins over the file.
    assert read_cfg(local) == {"IMAGESERVER": "10.0.0.1", "HOSTNAME": "node9", "IPADDR": "10.0.0.58",
                               "NETMASK": "255.255.255.0"}
    subprocess.run(["mcopy", "-i", fat, "::/imageserver/initrd.img", str(tmp_path / "initrd")], check=True)
    assert (tmp_path / "initrd").read_bytes() == (state / "boot/installer/initrd.img").read_bytes()
    if bootmedia.efi_available():
        assert "::/efi/boot/bootx64.efi" in listing and "::/boot/grub/grub.cfg" in listing


def test_media_without_local_cfg_leave_the_installer_to_dhcp(state: Path, tmp_path: Path) -> None:
    iso = tmp_path / "dhcp.iso"
    mkbootmedia("--state-dir", str(state), "--iso", str(iso), "--efi", "no")
    found = subprocess.run(["xorriso", "-indev", str(iso), "-find", "/", "-type", "f"], capture_output=True,
                           text=True, check=True).stdout
    assert "local.cfg" not in found and "BOOTX64.EFI" not in found


@pytest.mark.parametrize(("args", "message"), [
    (["--set", "COLOR=blue"], "COLOR is not a local.cfg variable"),
    (["--set", "IPADDR=10.0.0.300"], "not an IPv4 address"),
    (["--set", "NETMASK=255.255.255.0"], "without IPADDR"),
    (["--set", "IPADDR=10.0.0.5", "--set", "NETMASK=255.0.255.0"], "not a netmask"),
    (["--set", "HOSTNAME=a b"], "only letters"),
    (["--set", "HOSTNAME"], "expected VARIABLE=value"),
])
def test_bad_local_cfg_values_are_refused_and_nothing_is_written(state: Path, tmp_path: Path, args: list[str],
                                                                 message: str) -> None:
    iso = tmp_path / "bad.iso"
    result = mkbootmedia("--state-dir", str(state), "--iso", str(iso), *args, check=False)
    assert result.returncode != 0 and message in result.stderr
    assert not iso.exists()


def test_no_installer_says_to_build_it(tmp_path: Path) -> None:
    result = mkbootmedia("--state-dir", str(tmp_path), "--usb", str(tmp_path / "x.img"), check=False)
    assert result.returncode == 1 and "imageserver mkbootenv" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_host_media_carry_the_hosts_name_address_and_subnet(state: Path, tmp_path: Path) -> None:
    config = tmp_path / "imageserver.toml"
    config.write_text(f"""
[appliance]
state_dir = "{state}"
address = "10.7.0.1"

[dhcp]
subnet = "10.7.0.0/24"
pool = "10.7.0.100-10.7.0.150"
router = "10.7.0.254"
dns = ["10.7.0.53", "10.7.0.54"]

[http]
port = 8080
""")
    conn = connect(db_path(state))
    try:
        new_host_op("fixed", "52:54:00:00:07:01", "web", IPv4Address("10.7.0.21"), 1.0)(conn)
        new_host_op("reserved", "52:54:00:00:07:02", "web", None, 1.0)(conn)
        conn.execute("INSERT INTO reservations(mac, ip, hostname, created) VALUES (?, ?, ?, ?)",
                     ("52:54:00:00:07:02", int(IPv4Address("10.7.0.22")), "reserved", 1.0))
        new_host_op("roaming", "52:54:00:00:07:03", "web", None, 1.0)(conn)
    finally:
        conn.close()
    fat = tmp_path / "x.img"

    def local_cfg(host: str, *more: str) -> dict[str, str]:
        mkbootmedia("--config", str(config), "--usb", str(fat), "--efi", "no", "--host", host, *more)
        out = subprocess.run(["mtype", "-i", f"{fat}@@1M", "::/local.cfg"], capture_output=True, text=True,
                             check=True).stdout
        return read_cfg(out)

    assert local_cfg("fixed") == {"IMAGESERVER": "10.7.0.1:8080", "HOSTNAME": "fixed", "IPADDR": "10.7.0.21",
                                  "NETMASK": "255.255.255.0", "GATEWAY": "10.7.0.254", "DNS": "10.7.0.53"}
    assert local_cfg("reserved")["IPADDR"] == "10.7.0.22"
    # No address of its own: DHCP gives one; --set still wins over what the host record says.
    assert local_cfg("roaming", "--set", "IMAGESERVER=10.7.0.2") == {"IMAGESERVER": "10.7.0.2",
                                                                    "HOSTNAME": "roaming"}
    missing = mkbootmedia("--config", str(config), "--iso", str(tmp_path / "n.iso"), "--host", "nobody",
                          check=False)
    assert missing.returncode == 1 and "no host named 'nobody'" in missing.stderr
