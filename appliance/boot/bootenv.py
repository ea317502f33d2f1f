"""Boot environment builder: a Debian kernel (downloaded, never installed) and a small initrd.

The installer that autoinstall clients run is a stock Debian kernel plus an initrd we assemble
ourselves: busybox-static, a few dynamically linked tools with their libraries, the kernel modules
the virtual or real hardware needs (in `modprobe --show-depends` order) and an `/init` script.
Everything is cached under a cache directory keyed by a hash of its inputs, so rebuilding with the
same inputs is free and concurrent builders never see a half-written file.
"""

from __future__ import annotations

import contextlib
import fcntl
import gzip
import hashlib
import io
import json
import lzma
import os
import re
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

DEFAULT_CACHE_DIR = Path("/var/cache/imageserver")
BUSYBOX = Path("/bin/busybox")
# What the installer needs to see virtio disks and NICs and to write ext4 (Debian builds these as modules).
DEFAULT_MODULES = ("virtio_pci", "virtio_blk", "virtio_net", "ext4")

# The architectures a boot environment is built for (Debian's names); this box is amd64, arm64 comes from
# Debian's arm64 packages (apt-get download PKG:arm64, never installed).
ARCHES = ("amd64", "arm64")
# "linux-image-6.1.0-56-amd64", "linux-image-6.12.117+deb12-arm64", and Ubuntu's "linux-image-6.8.0-45-generic"
# (its architecture is the one asked for); flavours (cloud, rt) are skipped when picking, cloud refused below.
_KERNEL_PACKAGE = re.compile(r"^linux-image-(\d[^\s]*)-(amd64|arm64|generic)$")
_OTHER_FLAVOURS = ("cloud", "rt")
# Why a flavour cannot be the installer's kernel (the installer must drive real machines' NICs and disks).
_REFUSED_FLAVOURS = {
    "cloud": "the cloud flavour is built for virtual machines only: it has no drivers for real NICs and disk "
             "controllers (e1000e, igb, tg3, ahci, nvme...), so the installer could not run on bare metal",
}


class BootEnvError(RuntimeError):
    """A kernel could not be found, downloaded or unpacked, or an initrd input is missing."""


# --------------------------------------------------------------------------- kernel


@dataclass(frozen=True, slots=True)
class Kernel:
    """An unpacked Debian kernel package."""

    package: str  # linux-image-6.12.117+deb12-amd64
    release: str  # 6.12.117+deb12-amd64 (uname -r, the directory under lib/modules)
    root: Path  # the tree `dpkg-deb -x` produced
    vmlinuz: Path
    modules_dir: Path  # root/lib/modules/<release>, with modules.dep generated


def _natural_key(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", text))


def kernel_package_arch(package: str, arch: str = "amd64") -> str:
    """The architecture a kernel package is for, from its name; BootEnvError says why a name is refused.

    Debian names the architecture (-amd64, -arm64); Ubuntu's -generic is taken for `arch`. A flavour built
    for something other than real machines (-cloud) is refused with the reason.
    """
    for flavour, why in _REFUSED_FLAVOURS.items():
        if re.search(rf"-{flavour}(-|$)", package):
            raise BootEnvError(f"{package}: {why}")
    match = _KERNEL_PACKAGE.match(package)
    if match is None:
        raise BootEnvError(f"{package} is not a kernel image package (linux-image-<version>-<amd64|arm64|generic>)")
    named = match.group(2)
    if named != "generic" and named != arch:
        raise BootEnvError(f"{package} is an {named} kernel, not {arch}")
    return arch


def pick_newest_kernel_package(apt_cache_search_output: str, arch: str = "amd64") -> str | None:
    """Choose the newest generic kernel image of `arch` from `apt-cache search` lines ("name - description").

    Meta packages ("linux-image-6.12-amd64"), -dbg, -unsigned and the cloud/rt flavours are skipped.
    """
    candidates: list[tuple[tuple[int, ...], str]] = []
    for line in apt_cache_search_output.splitlines():
        name, _, description = line.partition(" - ")
        name = name.strip()
        match = _KERNEL_PACKAGE.match(name)
        if not match or match.group(2) != arch or "meta-package" in description:
            continue
        abi = match.group(1)
        if any(f"-{flavour}" in f"-{abi}" for flavour in _OTHER_FLAVOURS):
            continue
        candidates.append((_natural_key(abi), name))
    return max(candidates)[1] if candidates else None


def _run(argv: Sequence[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(argv, check=True, capture_output=True, text=True, **kwargs)  # type: ignore[call-overload]
    except FileNotFoundError as exc:
        raise BootEnvError(f"{argv[0]} is not installed") from exc
    except subprocess.CalledProcessError as exc:
        raise BootEnvError(f"{' '.join(argv)} failed ({exc.returncode}): {exc.stderr.strip()}") from exc


def find_kernel_package(arch: str = "amd64") -> str:
    """The newest generic kernel package of `arch` apt knows; refreshes apt's lists only if it knows none."""
    search = ["apt-cache", "search", "--names-only", rf"^linux-image-[0-9].*-{arch}$"]
    package = pick_newest_kernel_package(_run(search).stdout, arch)
    if package is None:
        _run(["apt-get", "update", "-qq"])
        package = pick_newest_kernel_package(_run(search).stdout, arch)
    if package is None:
        hint = " (is the architecture added? dpkg --add-architecture arm64: deps/install.sh)" if arch != "amd64" else ""
        raise BootEnvError(f"apt knows no linux-image-*-{arch} package{hint}")
    return package


@contextlib.contextmanager
def _locked(lock_path: Path) -> Iterator[None]:
    """Serialise builders of the same artefact (other test sessions may run at the same time)."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def download_deb(package: str, debs_dir: Path, arch: str = "amd64") -> Path:
    """`apt-get download` one package (of `arch`: PKG:arm64 from this amd64 box) into debs_dir, once."""
    debs_dir.mkdir(parents=True, exist_ok=True)
    existing = sorted(debs_dir.glob(f"{package}_*_{arch}.deb")) or sorted(debs_dir.glob(f"{package}_*_all.deb"))
    if existing:
        return existing[-1]
    # apt's sandbox user cannot write into a root-owned cache; the download is still verified.
    wanted = package if arch == "amd64" else f"{package}:{arch}"
    argv = ["apt-get", "download", "-q", "-o", "APT::Sandbox::User=root", wanted]
    try:
        _run(argv, cwd=debs_dir)
    except BootEnvError:
        # Stale lists point at a pool file the mirror no longer has: refresh once and retry.
        _run(["apt-get", "update", "-qq"])
        _run(argv, cwd=debs_dir)
    downloaded = sorted(debs_dir.glob(f"{package}_*_{arch}.deb")) or sorted(debs_dir.glob(f"{package}_*_all.deb"))
    if not downloaded:
        raise BootEnvError(f"apt-get download {package} produced no .deb in {debs_dir}")
    return downloaded[-1]


def _kernel_from_tree(package: str, root: Path) -> Kernel:
    release = package.removeprefix("linux-image-")
    vmlinuz = root / "boot" / f"vmlinuz-{release}"
    modules_dir = next(
        (base / release for base in (root / "lib/modules", root / "usr/lib/modules") if (base / release).is_dir()),
        None,
    )
    if not vmlinuz.is_file() or modules_dir is None:
        raise BootEnvError(f"{root} holds no vmlinuz-{release} or modules for {release}")
    return Kernel(package=package, release=release, root=root, vmlinuz=vmlinuz, modules_dir=modules_dir)


def fetch_kernel(cache_dir: Path = DEFAULT_CACHE_DIR, package: str | None = None, arch: str = "amd64") -> Kernel:
    """Download a Debian kernel package of `arch` (without installing it) and unpack it into the cache.

    `package` defaults to the newest generic kernel of `arch` apt knows. The unpacked tree gets a
    modules.dep (`depmod -b`), so modprobe can resolve dependencies against it.
    """
    package = package or find_kernel_package(arch)
    kernel_package_arch(package, arch)
    kernels = cache_dir / "kernels"
    tree = kernels / package
    with _locked(kernels / f"{package}.lock"):
        if (tree / ".complete").exists():
            return _kernel_from_tree(package, tree)
        deb = download_deb(package, cache_dir / "debs", arch)
        staging = Path(tempfile.mkdtemp(prefix=f".{package}.", dir=kernels))
        try:
            _run(["dpkg-deb", "-x", str(deb), str(staging)])
            kernel = _kernel_from_tree(package, staging)
            _depmod(staging, kernel)
            (staging / ".complete").write_text(deb.name + "\n")
            if tree.exists():
                shutil.rmtree(tree)
            staging.rename(tree)
            deb.unlink()  # the unpacked tree is what gets reused; the .deb would only double the cache
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    return _kernel_from_tree(package, tree)


def _depmod(root: Path, kernel: Kernel) -> None:
    """Generate modules.dep; depmod -b looks under <root>/lib/modules, so point there if the package uses usr/."""
    lib_modules = root / "lib" / "modules"
    if not (lib_modules / kernel.release).exists():
        lib_modules.mkdir(parents=True, exist_ok=True)
        (lib_modules / kernel.release).symlink_to(kernel.modules_dir)
    _run(["depmod", "-b", str(root), kernel.release])


# --------------------------------------------------------------------------- modules and libraries


def resolve_modules(kernel: Kernel, names: Iterable[str]) -> list[Path]:
    """Module files to load, dependencies first, each once (`modprobe --show-depends` order).

    Built-in modules are skipped; an unknown module name is an error.
    """
    ordered: list[Path] = []
    for name in names:
        argv = ["modprobe", "--show-depends", "-d", str(kernel.root), "-S", kernel.release, name]
        for line in _run(argv).stdout.splitlines():
            words = line.split()
            if len(words) >= 2 and words[0] == "insmod":
                path = Path(words[1])
                if path not in ordered:
                    ordered.append(path)
    return ordered


def _decompressed_module(path: Path) -> tuple[str, bytes]:
    """(file name without the compression suffix, plain module bytes); busybox insmod wants plain .ko."""
    data = path.read_bytes()
    if path.suffix == ".xz":
        return path.stem, lzma.decompress(data)
    if path.suffix == ".gz":
        return path.stem, gzip.decompress(data)
    if path.suffix == ".zst":
        return path.stem, _run_bytes(["zstd", "-dc", str(path)])
    return path.name, data


def _run_bytes(argv: Sequence[str]) -> bytes:
    try:
        return subprocess.run(argv, check=True, capture_output=True).stdout
    except (FileNotFoundError, subprocess.CalledProcessError) as exc:
        raise BootEnvError(f"{' '.join(argv)} failed: {exc}") from exc


def library_closure(binary: Path) -> list[Path]:
    """The shared libraries (and ELF interpreter) `ldd` says a binary needs; empty for static binaries."""
    result = subprocess.run(["ldd", str(binary)], capture_output=True, text=True)
    if result.returncode != 0:
        if "not a dynamic executable" in result.stdout + result.stderr:
            return []
        raise BootEnvError(f"ldd {binary} failed: {result.stderr.strip()}")
    libraries: list[Path] = []
    for line in result.stdout.splitlines():
        if "not found" in line:
            raise BootEnvError(f"{binary}: {line.strip()}")
        for word in line.split():
            if word.startswith("/"):
                libraries.append(Path(word))
    return libraries


_ELF_NEEDED = re.compile(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]")
_ELF_INTERPRETER = re.compile(r"\[Requesting program interpreter: ([^\]]+)\]")
_SYSROOT_LIBRARY_DIRS = ("lib/{triplet}", "usr/lib/{triplet}", "lib", "usr/lib")
_TRIPLETS = {"amd64": "x86_64-linux-gnu", "arm64": "aarch64-linux-gnu"}


def sysroot_library_closure(sysroot: Path, binary: str, arch: str) -> list[str]:
    """What `library_closure` is for a binary of another architecture, which ldd cannot run: the ELF
    interpreter and the NEEDED libraries (readelf), recursively, found in the unpacked packages under
    `sysroot`. Paths are absolute inside the sysroot ("/lib/aarch64-linux-gnu/libc.so.6")."""
    triplet = _TRIPLETS[arch]
    dirs = [d.format(triplet=triplet) for d in _SYSROOT_LIBRARY_DIRS]
    found: list[str] = []
    pending = [binary]
    while pending:
        path = pending.pop()
        text = _run(["readelf", "-d", "-l", "-W", str(sysroot / path.lstrip("/"))]).stdout
        names = [m.group(1) for m in _ELF_INTERPRETER.finditer(text)]
        names += _ELF_NEEDED.findall(text)
        for name in names:
            candidates = [name.lstrip("/")] if name.startswith("/") else [f"{d}/{name}" for d in dirs]
            hit = next((c for c in candidates if (sysroot / c).exists()), None)
            if hit is None:
                raise BootEnvError(f"{binary}: {name} is in none of the unpacked {arch} packages ({sysroot})")
            if f"/{hit}" not in found:
                found.append(f"/{hit}")
                pending.append(f"/{hit}")
    return found


# --------------------------------------------------------------------------- cpio (newc)


@dataclass(frozen=True, slots=True)
class CpioEntry:
    """One member of a newc archive. `data` is file content or a symlink target."""

    name: str  # without leading slash
    mode: int  # including the S_IF* type bits
    data: bytes = b""


def _newc_header(ino: int, entry: CpioEntry, name: bytes) -> bytes:
    nlink = 2 if stat.S_ISDIR(entry.mode) else 1
    fields = (ino, entry.mode, 0, 0, nlink, 0, len(entry.data), 0, 0, 0, 0, len(name) + 1, 0)
    return b"070701" + b"".join(b"%08X" % value for value in fields)


def _pad4(out: BinaryIO, length: int) -> None:
    out.write(b"\0" * (-length % 4))


def write_newc(entries: Iterable[CpioEntry], out: BinaryIO) -> None:
    """Write an SVR4 "newc" cpio archive (the format the kernel unpacks as initramfs); mtime 0, root-owned."""
    ino = 1
    for entry in [*entries, CpioEntry("TRAILER!!!", 0)]:
        name = entry.name.encode()
        header = _newc_header(ino, entry, name)
        out.write(header + name + b"\0")
        _pad4(out, len(header) + len(name) + 1)
        out.write(entry.data)
        _pad4(out, len(entry.data))
        ino += 1


def read_newc(data: bytes) -> list[CpioEntry]:
    """Parse a newc archive (used by tests and to inspect what an initrd holds)."""
    entries: list[CpioEntry] = []
    offset = 0
    while True:
        if data[offset : offset + 6] != b"070701":
            raise BootEnvError(f"bad cpio magic at offset {offset}")
        fields = [int(data[offset + 6 + 8 * i : offset + 14 + 8 * i], 16) for i in range(13)]
        mode, filesize, namesize = fields[1], fields[6], fields[11]
        name_start = offset + 110
        name = data[name_start : name_start + namesize - 1].decode()
        data_start = name_start + namesize + (-(110 + namesize) % 4)
        if name == "TRAILER!!!":
            return entries
        entries.append(CpioEntry(name, mode, data[data_start : data_start + filesize]))
        offset = data_start + filesize + (-filesize % 4)


# --------------------------------------------------------------------------- initrd


@dataclass(frozen=True, slots=True)
class InitrdSpec:
    """What goes into an initrd.

    files maps a path inside the initrd to the bytes it holds (str is encoded UTF-8); a source
    path on this machine is given as a Path. Paths of `files` ending in .sh or under bin/ are
    executable. Modules need `kernel`.

    An initrd of another architecture (arm64, built on this amd64 box) names a `sysroot`: the unpacked
    packages of that architecture, where `binaries` are absolute paths inside it and their libraries are
    found by reading the ELF files (`sysroot_library_closure`); `busybox` is then that architecture's, and
    `applet_lister` a busybox of the same Debian release that runs here and lists the same applets.
    """

    init: str
    binaries: Sequence[Path | str] = ()
    modules: Sequence[str] = ()
    kernel: Kernel | None = None
    files: Mapping[str, bytes | str | Path] = field(default_factory=dict)
    busybox: Path = BUSYBOX
    sysroot: Path | None = None
    arch: str = "amd64"
    applet_lister: Path | None = None  # None: busybox itself


class _Tree:
    """The initrd's members by path, with parent directories created on demand."""

    def __init__(self) -> None:
        self.entries: dict[str, CpioEntry] = {}

    def directory(self, path: str) -> None:
        path = path.strip("/")
        if not path or path in self.entries:
            return
        self.directory(os.path.dirname(path))
        self.entries[path] = CpioEntry(path, stat.S_IFDIR | 0o755)

    def file(self, path: str, data: bytes, mode: int = 0o644) -> None:
        path = path.strip("/")
        self.directory(os.path.dirname(path))
        self.entries[path] = CpioEntry(path, stat.S_IFREG | mode, data)

    def symlink(self, path: str, target: str) -> None:
        path = path.strip("/")
        self.directory(os.path.dirname(path))
        self.entries.setdefault(path, CpioEntry(path, stat.S_IFLNK | 0o777, target.encode()))

    def copy_from_host(self, source: Path, root: Path = Path("/"), *, replace: bool = False) -> None:
        """Copy a file of `root` (this machine, or a sysroot) to the same path, keeping symlinks on the way
        (ld.so finds libs by either name); an absolute link target is taken inside `root` too. replace:
        a real tool takes the place of a busybox applet link of the same path (/sbin/blkid)."""
        path = str(source).lstrip("/")
        if replace and self.entries.get(path, CpioEntry(path, 0)).data == b"/bin/busybox":
            del self.entries[path]
        if path in self.entries:
            return
        real = root / path
        if real.is_symlink():
            target = os.readlink(real)
            self.symlink(path, target)
            target_path = source.parent / target if not target.startswith("/") else Path(target)
            self.copy_from_host(target_path, root, replace=replace)
        else:
            self.file(path, real.read_bytes(), stat.S_IMODE(real.stat().st_mode))


def _busybox_applets(busybox: Path) -> list[str]:
    listing = _run([str(busybox), "--list-full"]).stdout.split()
    return [applet for applet in listing if applet]


def _assemble(spec: InitrdSpec) -> _Tree:
    tree = _Tree()
    for directory in ("dev", "proc", "sys", "run", "tmp", "etc", "root", "mnt"):
        tree.directory(directory)
    tree.file("bin/busybox", spec.busybox.read_bytes(), 0o755)
    for applet in _busybox_applets(spec.applet_lister or spec.busybox):
        tree.symlink(applet, "/bin/busybox")
    if spec.sysroot is not None:
        for inside in map(str, spec.binaries):
            tree.copy_from_host(Path(inside), spec.sysroot, replace=True)
            for needed in sysroot_library_closure(spec.sysroot, inside, spec.arch):
                tree.copy_from_host(Path(needed), spec.sysroot)
    for binary in spec.binaries if spec.sysroot is None else ():
        binary_path = Path(shutil.which(str(binary)) or binary)
        if not binary_path.is_file():
            raise BootEnvError(f"binary {binary} not found")
        for needed in [binary_path, *library_closure(binary_path)]:
            tree.copy_from_host(needed)
    if spec.modules:
        _add_modules(tree, spec)
    for dest, content in spec.files.items():
        data = content.read_bytes() if isinstance(content, Path) else content
        data = data.encode() if isinstance(data, str) else data
        executable = dest.endswith(".sh") or "/bin/" in f"/{dest}" or "/sbin/" in f"/{dest}"
        tree.file(dest, data, 0o755 if executable else 0o644)
    tree.file("init", spec.init.encode(), 0o755)
    return tree


def _add_modules(tree: _Tree, spec: InitrdSpec) -> None:
    """Plain .ko files under lib/modules/<release>/ with a matching modules.dep (so busybox modprobe
    resolves dependencies), and etc/initrd-modules listing them in load order (for an insmod loop)."""
    if spec.kernel is None:
        raise BootEnvError("modules requested but no kernel given")
    kernel = spec.kernel
    base = f"lib/modules/{kernel.release}"
    marker = f"/{base}/"
    order: list[str] = []
    for module in resolve_modules(kernel, spec.modules):
        name, data = _decompressed_module(module)
        relative = str(module.parent / name).partition(marker)[2] or f"kernel/{name}"
        tree.file(f"{base}/{relative}", data)
        order.append(relative)
    tree.file(f"{base}/modules.dep", _filtered_modules_dep(kernel, order).encode())
    tree.file("etc/initrd-modules", "".join(f"/{base}/{relative}\n" for relative in order).encode())


def _strip_compression(relative: str) -> str:
    return re.sub(r"\.(xz|gz|zst)$", "", relative)


def _filtered_modules_dep(kernel: Kernel, included: Sequence[str]) -> str:
    """The kernel's modules.dep restricted to the included modules, with compression suffixes removed."""
    wanted = set(included)
    lines: list[str] = []
    for line in (kernel.modules_dir / "modules.dep").read_text().splitlines():
        module, _, deps = line.partition(":")
        module = _strip_compression(module)
        if module in wanted:
            kept = [_strip_compression(dep) for dep in deps.split()]
            lines.append(f"{module}: {' '.join(dep for dep in kept if dep in wanted)}".rstrip() + "\n")
    return "".join(lines)


def _input_digest(spec: InitrdSpec) -> str:
    """Hash of everything the initrd is made of, so a changed input gives a new cache entry."""
    digest = hashlib.sha256()

    def add_file(path: Path) -> None:
        info = path.stat()
        digest.update(f"{path}:{info.st_size}:{info.st_mtime_ns}\n".encode())

    add_file(spec.busybox)
    if spec.sysroot is not None:
        for inside in map(str, spec.binaries):
            for needed in [inside, *sysroot_library_closure(spec.sysroot, inside, spec.arch)]:
                # lstat: an absolute link in the sysroot points into the sysroot, not at this machine's file
                info = (spec.sysroot / needed.lstrip("/")).lstat()
                digest.update(f"{spec.sysroot}{needed}:{info.st_size}:{info.st_mtime_ns}\n".encode())
    for binary in spec.binaries if spec.sysroot is None else ():
        binary_path = Path(shutil.which(str(binary)) or binary)
        add_file(binary_path)
        for library in library_closure(binary_path):
            add_file(library.resolve())
    description = {
        "init": spec.init,
        "binaries": [str(b) for b in spec.binaries],
        "modules": list(spec.modules),
        "kernel": spec.kernel.package if spec.kernel else None,
        **({"arch": spec.arch} if spec.arch != "amd64" else {}),  # amd64's digests stay what they were
        "files": {
            dest: (
                hashlib.sha256(content.read_bytes()).hexdigest()
                if isinstance(content, Path)
                else hashlib.sha256(content.encode() if isinstance(content, str) else content).hexdigest()
            )
            for dest, content in sorted(spec.files.items())
        },
        "format": 1,
    }
    digest.update(json.dumps(description, sort_keys=True).encode())
    return digest.hexdigest()[:24]


def build_initrd(spec: InitrdSpec, cache_dir: Path = DEFAULT_CACHE_DIR) -> Path:
    """Build (or reuse from the cache) a gzip'd newc initrd for `spec`; returns its path."""
    initrds = cache_dir / "initrd"
    initrds.mkdir(parents=True, exist_ok=True)
    target = initrds / f"initrd-{_input_digest(spec)}.img"
    if target.exists():
        return target
    buffer = io.BytesIO()
    tree = _assemble(spec)
    write_newc(sorted(tree.entries.values(), key=lambda entry: entry.name), buffer)
    fd, temporary = tempfile.mkstemp(prefix=".initrd.", dir=initrds)
    try:
        with os.fdopen(fd, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, compresslevel=6) as out:
            out.write(buffer.getvalue())
        os.chmod(temporary, 0o644)
        os.replace(temporary, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    return target
