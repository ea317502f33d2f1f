"""CPU architectures: an image's (read from its ELF binaries, or the master's `uname -m`), a machine's (its
firmware's client architecture, DHCP option 93, RFC 4578 and IANA's registry), and which machine runs which
image. Pure: bytes and numbers in, names out.

Names are the kernel's `uname -m` words, except that 64-bit ARM is "arm64" (as Debian, UEFI and the boot
environment call it; the kernel says aarch64) and every 32-bit x86 is "i386".
"""

from __future__ import annotations

from typing import Final

X86_64: Final = "x86_64"
ARM64: Final = "arm64"
# What an image captured before images recorded their architecture is taken to be: every master so far
# was an amd64 Debian (the images table's migration writes it, with a note).
LEGACY_IMAGE_ARCH: Final = X86_64

# `uname -m` (and Debian's dpkg names, which operators also type) -> our name.
_UNAME: Final = {
    "x86_64": X86_64, "amd64": X86_64,
    "aarch64": ARM64, "arm64": ARM64, "aarch64_be": ARM64,
    "i386": "i386", "i486": "i386", "i586": "i386", "i686": "i386",
    "armv6l": "arm", "armv7l": "arm", "armv8l": "arm", "armhf": "arm", "armel": "arm", "arm": "arm",
    "riscv64": "riscv64", "ppc64le": "ppc64le", "ppc64el": "ppc64le", "ppc64": "ppc64", "s390x": "s390x",
    "loongarch64": "loongarch64",
}  # fmt: skip
ARCHES: Final = tuple(sorted(set(_UNAME.values())))

# ELF e_machine -> our name (the ones whose name does not depend on the byte order or class).
_EM: Final = {3: "i386", 62: X86_64, 40: "arm", 183: ARM64, 243: "riscv64", 22: "s390x", 258: "loongarch64"}
_EM_PPC64: Final = 21
ELF_HEADER_BYTES: Final = 20  # e_ident (16) + e_type (2) + e_machine (2)


def canonical_arch(text: str) -> str | None:
    """"aarch64" -> "arm64", "amd64" -> "x86_64", ...; None for a word that names no architecture we know."""
    return _UNAME.get(text.strip().lower())


def elf_arch(header: bytes) -> str | None:
    """The architecture an ELF file is built for, from its first ELF_HEADER_BYTES bytes; None if it is not
    ELF or names a machine we do not know."""
    if len(header) < ELF_HEADER_BYTES or header[:4] != b"\x7fELF":
        return None
    elf_class, data = header[4], header[5]
    if elf_class not in (1, 2) or data not in (1, 2):
        return None
    machine = int.from_bytes(header[18:20], "little" if data == 1 else "big")
    if machine == _EM_PPC64:
        return "ppc64le" if data == 1 else "ppc64"
    return _EM.get(machine)


# DHCP option 93 -> (what the firmware is, the image architectures it runs). A BIOS or 32-bit UEFI PC may
# run either x86; a 64-bit UEFI (and code 9, which many x64 firmwares send) needs x86_64 loaders.
_X86 = frozenset({X86_64, "i386"})
CLIENT_ARCHES: Final[dict[int, tuple[str, frozenset[str]]]] = {
    0: ("x86 BIOS", _X86),
    6: ("x86 UEFI", _X86),
    7: ("x64 UEFI", frozenset({X86_64})),
    9: ("x64 UEFI", frozenset({X86_64})),
    10: ("ARM 32-bit UEFI", frozenset({"arm"})),
    11: ("ARM 64-bit UEFI", frozenset({ARM64})),
    15: ("x86 UEFI HTTP", _X86),
    16: ("x64 UEFI HTTP", frozenset({X86_64})),
    18: ("ARM 32-bit UEFI HTTP", frozenset({"arm"})),
    19: ("ARM 64-bit UEFI HTTP", frozenset({ARM64})),
    20: ("x86 BIOS HTTP", _X86),
    21: ("ARM 32-bit U-Boot", frozenset({"arm"})),
    22: ("ARM 64-bit U-Boot", frozenset({ARM64})),
    23: ("ARM 32-bit U-Boot HTTP", frozenset({"arm"})),
    24: ("ARM 64-bit U-Boot HTTP", frozenset({ARM64})),
    27: ("RISC-V 64-bit UEFI", frozenset({"riscv64"})),
    28: ("RISC-V 64-bit UEFI HTTP", frozenset({"riscv64"})),
}


def client_runs(code: int) -> frozenset[str] | None:
    """The image architectures a machine whose firmware sent client architecture `code` runs; None: unknown."""
    entry = CLIENT_ARCHES.get(code)
    return entry[1] if entry is not None else None


def mismatch(image_arch: str | None, client_code: int | None) -> str | None:
    """Why a machine that sent `client_code` cannot run an image of `image_arch`; None when it can (or when
    either is not known: nothing is refused on a guess)."""
    if image_arch is None or client_code is None:
        return None
    entry = CLIENT_ARCHES.get(client_code)
    if entry is None or image_arch in entry[1]:
        return None
    name, runs = entry
    return (f"the image is {image_arch} and the machine's firmware reported client architecture {client_code} "
            f"({name}: it runs {' or '.join(sorted(runs))} images)")


def matches_client(arch: str, client_code: int | None) -> bool:
    """Does a machine that sent `client_code` run `arch` images? (a discovery rule's `cpu`)"""
    runs = client_runs(client_code) if client_code is not None else None
    return runs is not None and arch in runs
