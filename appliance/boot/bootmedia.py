"""Boot media for machines that cannot PXE boot: an ISO image (CD, virtual media) and a USB disk image.

Both carry the same installer kernel + initrd the network path serves (<state_dir>/boot/installer/)
and, optionally, `local.cfg` at the root of the medium: SystemImager's VARIABLE=value file that the
installer reads (it mounts each CD and disk it finds) and prefers over DHCP. The seed's variables are
IMAGESERVER, HOSTNAME, IPADDR, NETMASK, GATEWAY and DEVICE (the NIC; the installer calls it IFACE, so
both are written); the installer's own IMAGESERVER_URL, IMAGE, VERSION, DNS, DOMAIN, IFACE and
INSTALL_TOKEN are accepted too.

- ISO: isolinux (BIOS, El Torito no-emulation) and, where grub-efi-amd64-bin is installed, a GRUB EFI
  image (El Torito EFI entry + EFI/BOOT/BOOTX64.EFI); made hybrid (isohdpfx MBR, GPT for EFI) with
  xorriso, so the ISO can be written to a stick as well.
- USB: a disk image with an MBR (syslinux mbr.bin), one active FAT32 partition at 1 MiB holding
  syslinux (installed with the mtools-based `syslinux`, no loop device or root needed), the installer,
  local.cfg and the same GRUB EFI loader at the removable-media path EFI/BOOT/BOOTX64.EFI.

The kernel command line is the operator's ([boot] kernel_cmdline); the installer finds everything
else in local.cfg, or by DHCP when there is none.
"""

from __future__ import annotations

import ipaddress
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

ISOLINUX_DIRS = (Path("/usr/lib/ISOLINUX"), Path("/usr/lib/syslinux"), Path("/usr/share/syslinux"))
SYSLINUX_MODULES = (Path("/usr/lib/syslinux/modules/bios"), Path("/usr/share/syslinux"))
MBR_DIRS = (Path("/usr/lib/syslinux/mbr"), Path("/usr/share/syslinux"))
GRUB_EFI_DIR = Path("/usr/lib/grub/x86_64-efi")

# The seed's local.cfg variables, then the ones the installer's /init also reads.
SEED_KEYS = ("IMAGESERVER", "HOSTNAME", "IPADDR", "NETMASK", "GATEWAY", "DEVICE")
INSTALLER_KEYS = ("IMAGESERVER_URL", "IMAGE", "VERSION", "DNS", "DOMAIN", "IFACE", "INSTALL_TOKEN")
LOCAL_CFG_KEYS = SEED_KEYS + INSTALLER_KEYS
_ADDRESS_KEYS = ("IPADDR", "NETMASK", "GATEWAY")
# The installer reads values up to a quote, and they land on no command line: still keep them plain.
_VALUE = re.compile(r"^[A-Za-z0-9._:/@+,=-]+$")
_LINE = re.compile(r"^\s*([A-Z_][A-Z0-9_]*)\s*=\s*(.*?)\s*$")

KERNEL_NAME = "vmlinuz"
INITRD_NAME = "initrd.img"
MEDIA_DIR = "imageserver"  # where kernel and initrd live on the media
VOLUME_LABEL = "IMAGESERVER"  # the installer finds its boot medium by it (blkid -L), see installer/init.sh
USB_PARTITION_START = 1 << 20  # 1 MiB: aligned, and room for the MBR code


class BootMediaError(RuntimeError):
    """Boot media cannot be made; the message says why and what to install or fix."""


# --------------------------------------------------------------------------- local.cfg

def parse_local_cfg(text: str, *, source: str = "local.cfg") -> dict[str, str]:
    """VARIABLE=value lines (comments and blank lines allowed; values may be quoted) -> checked values."""
    values: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        m = _LINE.match(line)
        if m is None:
            raise BootMediaError(f"{source}:{number}: expected VARIABLE=value, got {raw!r}")
        key, value = m[1], m[2]
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key] = value
    return check_local_cfg(values, source=source)


def check_local_cfg(values: Mapping[str, str], *, source: str = "local.cfg") -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in values.items():
        if key not in LOCAL_CFG_KEYS:
            raise BootMediaError(f"{source}: {key} is not a local.cfg variable (known: {', '.join(LOCAL_CFG_KEYS)})")
        if not _VALUE.match(value):
            raise BootMediaError(f"{source}: {key}={value!r}: only letters, digits and ._:/@+,=- are allowed")
        if key in _ADDRESS_KEYS:
            try:
                ipaddress.IPv4Address(value)
            except ValueError:
                raise BootMediaError(f"{source}: {key}={value} is not an IPv4 address") from None
        out[key] = value
    if "NETMASK" in out:
        try:
            ipaddress.IPv4Network(f"0.0.0.0/{out['NETMASK']}")
        except ValueError:
            raise BootMediaError(f"{source}: NETMASK={out['NETMASK']} is not a netmask") from None
    if ("NETMASK" in out or "GATEWAY" in out) and "IPADDR" not in out:
        raise BootMediaError(f"{source}: NETMASK/GATEWAY without IPADDR (no IPADDR means DHCP)")
    if "DEVICE" in out and "IFACE" in out and out["DEVICE"] != out["IFACE"]:
        raise BootMediaError(f"{source}: DEVICE={out['DEVICE']} and IFACE={out['IFACE']} disagree")
    return out


def render_local_cfg(values: Mapping[str, str]) -> str:
    """The file as the media carry it: seed order first; DEVICE also as IFACE, the installer's name."""
    values = dict(values)
    if "DEVICE" in values:
        values.setdefault("IFACE", values["DEVICE"])
    lines = ["# local.cfg: read by the imageserver installer from the root of this medium, before DHCP"]
    lines += [f"{key}={values[key]}" for key in LOCAL_CFG_KEYS if key in values]
    return "\n".join(lines) + "\n"


def host_local_cfg(name: str, ip: ipaddress.IPv4Address | None, server: str | None, http_port: int,
                   subnets: Iterable[tuple[ipaddress.IPv4Network, ipaddress.IPv4Address | None,
                                           Sequence[ipaddress.IPv4Address]]]) -> dict[str, str]:
    """local.cfg values for one host (mkbootmedia --host): its name, the imageserver, and a static
    address when the host has one inside a configured subnet (else the installer asks DHCP).

    `subnets` are (network, router, dns servers) of the configured DHCP subnets."""
    out = {"HOSTNAME": name}
    if server:
        out["IMAGESERVER"] = server if http_port == 80 else f"{server}:{http_port}"
    if ip is not None:
        for network, router, dns in subnets:
            if ip in network:
                out.update(IPADDR=str(ip), NETMASK=str(network.netmask))
                if router is not None:
                    out["GATEWAY"] = str(router)
                if dns:
                    out["DNS"] = str(dns[0])  # one value: local.cfg values have no spaces
                break
    return out


# --------------------------------------------------------------------------- inputs and tools

@dataclass(frozen=True, slots=True)
class MediaInputs:
    kernel: Path
    initrd: Path
    append: str = "console=tty0 console=ttyS0,115200"  # [boot] kernel_cmdline
    local_cfg: Mapping[str, str] = field(default_factory=dict)  # empty: no local.cfg (DHCP)
    timeout_seconds: int = 3  # the boot menu waits this long before it starts the installer

    def check(self) -> None:
        for path, what in ((self.kernel, "installer kernel"), (self.initrd, "installer initrd")):
            if not path.is_file():
                raise BootMediaError(f"no {what} at {path} (run `imageserver mkbootenv` first)")
        if any(ord(c) < 0x20 for c in self.append):
            raise BootMediaError("the kernel command line has a control character")


@dataclass(frozen=True, slots=True)
class MediaResult:
    path: Path
    kind: str  # "iso" | "usb"
    bytes: int
    efi: bool  # a GRUB EFI loader is on it
    local_cfg: bool
    files: tuple[str, ...]

    def as_dict(self) -> dict[str, object]:
        return {"path": str(self.path), "kind": self.kind, "bytes": self.bytes, "efi": self.efi,
                "local_cfg": self.local_cfg, "files": list(self.files)}


def _find(name: str, dirs: Iterable[Path], package: str) -> Path:
    for d in dirs:
        if (d / name).is_file():
            return d / name
    raise BootMediaError(f"{name} not found in {', '.join(map(str, dirs))} (install the {package} package)")


def _tool(name: str, package: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise BootMediaError(f"{name} is not installed (install the {package} package)")
    return path


def _run(argv: Sequence[str]) -> str:
    result = subprocess.run(list(argv), capture_output=True, text=True)
    if result.returncode != 0:
        raise BootMediaError(f"{Path(argv[0]).name} failed ({result.returncode}): "
                             f"{(result.stderr or result.stdout).strip()[-1500:]}")
    return result.stdout


def efi_available() -> bool:
    return GRUB_EFI_DIR.is_dir() and shutil.which("grub-mkstandalone") is not None


# --------------------------------------------------------------------------- boot loader configs

def syslinux_config(inputs: MediaInputs) -> str:
    """isolinux.cfg / syslinux.cfg: one entry, started after the timeout (TIMEOUT is in tenths)."""
    return (
        "# imageserver boot media: the installer, which reads local.cfg from this medium\n"
        "SERIAL 0 115200\n"
        "DEFAULT install\n"
        "PROMPT 1\n"
        f"TIMEOUT {inputs.timeout_seconds * 10}\n"
        "SAY imageserver installer: starting in a few seconds (type 'install' and Enter to start now)\n"
        "LABEL install\n"
        f"    KERNEL /{MEDIA_DIR}/{KERNEL_NAME}\n"
        f"    INITRD /{MEDIA_DIR}/{INITRD_NAME}\n"
        f"    APPEND {inputs.append}\n"
    )


def grub_config(inputs: MediaInputs) -> str:
    """The GRUB menu on the media (UEFI): the same installer and command line."""
    return (
        "# imageserver boot media (UEFI): the installer, which reads local.cfg from this medium\n"
        f"set timeout={inputs.timeout_seconds}\n"
        "set default=0\n"
        "serial --unit=0 --speed=115200\n"
        "terminal_input console serial\n"
        "terminal_output console serial\n"
        "menuentry 'imageserver installer' {\n"
        "    set gfxpayload=text\n"  # the installer talks on the text console and serial; no video mode
        f"    linux /{MEDIA_DIR}/{KERNEL_NAME} {inputs.append}\n"
        f"    initrd /{MEDIA_DIR}/{INITRD_NAME}\n"
        "}\n"
    )


# GRUB's built-in config finds the medium by our kernel, whatever device the firmware calls it.
_GRUB_EMBEDDED = f"""search --no-floppy --set=root --file /{MEDIA_DIR}/{KERNEL_NAME}
set prefix=($root)/boot/grub
configfile /boot/grub/grub.cfg
"""


def build_grub_efi(work: Path) -> Path:
    """A standalone GRUB EFI binary (BOOTX64.EFI) whose embedded config loads the medium's grub.cfg."""
    tool = _tool("grub-mkstandalone", "grub-common")
    embedded = work / "grub-embedded.cfg"
    embedded.write_text(_GRUB_EMBEDDED)
    out = work / "BOOTX64.EFI"
    # Only what the embedded config and the menu need: a small image boots faster from a CD.
    modules = "part_gpt part_msdos fat iso9660 search search_fs_file configfile linux normal echo serial terminal"
    _run([tool, "--format=x86_64-efi", f"--output={out}", f"--install-modules={modules}", f"--modules={modules}",
          "--locales=", "--fonts=", "--themes=", f"boot/grub/grub.cfg={embedded}"])
    return out


def _fat_image(path: Path, size_kib: int, label: str, fat32: bool = False) -> None:
    _run([_tool("mkfs.vfat", "dosfstools"), *(["-F", "32"] if fat32 else []), "-n", label, "-C", str(path),
          str(size_kib)])


def _mcopy(image: str, files: Mapping[str, Path]) -> None:
    """Copy files into a FAT image with mtools (no mount): {"dir/name": source}."""
    mmd, mcopy = _tool("mmd", "mtools"), _tool("mcopy", "mtools")
    made: set[str] = set()
    for target in sorted(files):
        parts = target.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            d = "/".join(parts[:i])
            if d not in made:
                _run([mmd, "-D", "s", "-i", image, f"::/{d}"])
                made.add(d)
        _run([mcopy, "-o", "-i", image, str(files[target]), f"::/{target}"])


def _efi_boot_image(work: Path, efi_binary: Path) -> Path:
    """The El Torito EFI entry's FAT image holding EFI/BOOT/BOOTX64.EFI."""
    image = work / "efiboot.img"
    size_kib = efi_binary.stat().st_size // 1024 + 512
    _fat_image(image, max(size_kib, 1440), "EFIBOOT")
    _mcopy(str(image), {"EFI/BOOT/BOOTX64.EFI": efi_binary})
    return image


def _common_files(inputs: MediaInputs, work: Path) -> dict[str, Path]:
    files = {f"{MEDIA_DIR}/{KERNEL_NAME}": inputs.kernel, f"{MEDIA_DIR}/{INITRD_NAME}": inputs.initrd}
    if inputs.local_cfg:
        cfg = work / "local.cfg"
        cfg.write_text(render_local_cfg(inputs.local_cfg))
        files["local.cfg"] = cfg
    return files


# --------------------------------------------------------------------------- ISO

def build_iso(inputs: MediaInputs, out: Path, *, efi: bool | None = None) -> MediaResult:
    """A hybrid ISO: isolinux for BIOS, GRUB for UEFI (when available; efi=True insists on it)."""
    inputs.check()
    xorriso = _tool("xorriso", "xorriso")
    isolinux = _find("isolinux.bin", ISOLINUX_DIRS, "isolinux")
    isohdpfx = _find("isohdpfx.bin", ISOLINUX_DIRS, "isolinux")
    ldlinux = _find("ldlinux.c32", SYSLINUX_MODULES, "syslinux-common")
    use_efi = efi_available() if efi is None else efi
    if use_efi and not efi_available():
        raise BootMediaError(f"no GRUB EFI modules in {GRUB_EFI_DIR} (install grub-efi-amd64-bin and grub-common)")
    with tempfile.TemporaryDirectory(prefix="mkbootmedia-") as tmp:
        work = Path(tmp)
        tree = work / "iso"
        files = _common_files(inputs, work)
        cfg = work / "isolinux.cfg"
        cfg.write_text(syslinux_config(inputs))
        files |= {"isolinux/isolinux.bin": isolinux, "isolinux/ldlinux.c32": ldlinux, "isolinux/isolinux.cfg": cfg}
        if use_efi:
            grub_cfg = work / "grub.cfg"
            grub_cfg.write_text(grub_config(inputs))
            efi_binary = build_grub_efi(work)
            files |= {"EFI/BOOT/BOOTX64.EFI": efi_binary, "boot/grub/grub.cfg": grub_cfg,
                      "boot/efiboot.img": _efi_boot_image(work, efi_binary)}
        for target, source in files.items():
            (tree / target).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, tree / target)
        partial = out.with_name(f".{out.name}.partial")
        argv = [xorriso, "-as", "mkisofs", "-quiet", "-o", str(partial), "-V", VOLUME_LABEL, "-J", "-R",
                "-isohybrid-mbr", str(isohdpfx),
                "-b", "isolinux/isolinux.bin", "-c", "isolinux/boot.cat",
                "-no-emul-boot", "-boot-load-size", "4", "-boot-info-table"]
        if use_efi:
            argv += ["-eltorito-alt-boot", "-e", "boot/efiboot.img", "-no-emul-boot", "-isohybrid-gpt-basdat"]
        try:
            _run([*argv, str(tree)])
            partial.replace(out)  # never a half-written ISO under the asked-for name
        finally:
            partial.unlink(missing_ok=True)
    return MediaResult(out, "iso", out.stat().st_size, use_efi, bool(inputs.local_cfg), tuple(sorted(files)))


# --------------------------------------------------------------------------- USB

def build_usb(inputs: MediaInputs, out: Path, *, efi: bool | None = None, size_mib: int | None = None
              ) -> MediaResult:
    """A disk image for `dd of=/dev/sdX`: MBR + one active FAT32 partition with syslinux (and GRUB EFI)."""
    inputs.check()
    syslinux = _tool("syslinux", "syslinux")
    sfdisk = _tool("sfdisk", "fdisk")
    mbr = _find("mbr.bin", MBR_DIRS, "syslinux-common")
    use_efi = efi_available() if efi is None else efi
    if use_efi and not efi_available():
        raise BootMediaError(f"no GRUB EFI modules in {GRUB_EFI_DIR} (install grub-efi-amd64-bin and grub-common)")
    with tempfile.TemporaryDirectory(prefix="mkbootmedia-") as tmp:
        work = Path(tmp)
        files = _common_files(inputs, work)
        cfg = work / "syslinux.cfg"
        cfg.write_text(syslinux_config(inputs))
        files["syslinux/syslinux.cfg"] = cfg
        if use_efi:
            grub_cfg = work / "grub.cfg"
            grub_cfg.write_text(grub_config(inputs))
            files |= {"EFI/BOOT/BOOTX64.EFI": build_grub_efi(work), "boot/grub/grub.cfg": grub_cfg}
        payload = sum(p.stat().st_size for p in files.values())
        # FAT32 wants at least ~33 MiB; leave room for the boot loader and a local.cfg edited later.
        need = max(64, (payload >> 20) + 16)
        if size_mib is not None and size_mib < need:
            raise BootMediaError(f"--size {size_mib} MiB is too small: the files need {need} MiB")
        total_mib = size_mib or need
        part = work / "part.img"
        part_kib = (total_mib << 10) - (USB_PARTITION_START >> 10)
        _fat_image(part, part_kib, VOLUME_LABEL, fat32=True)
        _mcopy(str(part), files)
        # The mtools flavour of syslinux installs into a FAT image file: no loop device, no root.
        _run([syslinux, "--install", "--directory", "/syslinux", str(part)])
        partial = out.with_name(f".{out.name}.partial")
        try:
            with open(partial, "wb") as f:
                f.truncate(total_mib << 20)
            table = f"label: dos\nstart={USB_PARTITION_START // 512}, type=c, bootable\n"
            result = subprocess.run([sfdisk, "-q", "--no-reread", "--no-tell-kernel", str(partial)], input=table,
                                    capture_output=True, text=True)
            if result.returncode != 0:
                raise BootMediaError(f"sfdisk failed: {result.stderr.strip()}")
            with open(partial, "r+b") as disk:
                disk.write(mbr.read_bytes()[:440])  # boot code only: the partition table stays
                disk.seek(USB_PARTITION_START)
                with open(part, "rb") as src:
                    shutil.copyfileobj(src, disk, 1 << 20)
            partial.replace(out)
        finally:
            partial.unlink(missing_ok=True)
    return MediaResult(out, "usb", out.stat().st_size, use_efi, bool(inputs.local_cfg),
                       tuple(sorted([*files, "syslinux/ldlinux.sys", "syslinux/ldlinux.c32"])))
