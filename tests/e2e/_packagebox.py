"""What the package VM test (test_package_vm.py) boots and installs, each built once and cached by input hash.

- The appliance box: a raw ext4 image of the Debian 12 master tree (_debianmaster) with the package's runtime
  Depends (deps/runtime-packages.txt) already installed, by apt-get in a chroot on the host from a local flat
  repository that stays on the image (apt's sources name only it). Under TCG, installing those Depends in the
  VM took ~15 min (busybox-static's initramfs trigger); on the host it takes seconds, so inside the VM
  `apt-get install ./imageserver_*.deb` only unpacks our package. The VM boots the image with QEMU's
  snapshot=on (its writes go to a temporary overlay: the cached image is never changed), and its
  runner unit runs /run/pkgtest/run.sh from the test's own small disk (/dev/vdb).
- The older package: `make deb`'s build_deb.py of an older commit of main (its own tree from `git archive`),
  keyed by that commit: the appliance the upgrade starts from.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.e2e import _debianmaster as dm

REPO = Path(__file__).resolve().parents[2]
IFACE = "eth0"  # net.ifnames=0 on the kernel command line
ROOT_LABEL = "appliance"
TEST_LABEL = "pkgtest"
BOX_VERSION = 1  # bump when the recipe below changes (it is part of the cache key)
FREE_MB = 1536  # room on the box's root for two packages' unpacked venvs, the state and the journal

# Runs the test's script from the test's disk (the second virtio disk), everything on the serial console.
RUNNER_UNIT = """[Unit]
Description=imageserver e2e: run the test's script from its disk (/dev/vdb)
After=network.target

[Service]
Type=oneshot
StandardOutput=tty
StandardError=tty
TTYPath=/dev/ttyS0
ExecStart=/bin/sh -c 'mkdir -p /run/pkgtest && mount -o ro /dev/vdb /run/pkgtest && exec /bin/sh /run/pkgtest/run.sh'

[Install]
WantedBy=multi-user.target
"""
# Nothing starts a daemon inside the chroot while apt installs (rsync's unit, say).
POLICY_RC_D = "#!/bin/sh\nexit 101\n"


def runtime_depends() -> list[str]:
    lines = (REPO / "deps/runtime-packages.txt").read_text().splitlines()
    return [w[0] for w in (line.split("#", 1)[0].split() for line in lines) if w and w[1] == "depends"]


def dependency_debs(cache_dir: Path, tree: Path) -> Path:
    """The .debs the package's Depends pull into the master tree, downloaded once with the host's apt (the
    tree's dpkg status decides what is missing) and cached by the tree's key and the Depends list."""
    names = runtime_depends()
    key = hashlib.sha256(json.dumps([dm.cache_key(), names]).encode()).hexdigest()[:16]

    def make(work: Path) -> None:
        (work / "debs/partial").mkdir(parents=True)
        subprocess.run(["flock", "/tmp/apt.lock", "apt-get", "install", "-y", "-q", "--download-only",
                        "--no-install-recommends", "-o", f"Dir::State::status={tree}/var/lib/dpkg/status",
                        "-o", f"Dir::Cache::archives={work}/debs", "-o", "Debug::NoLocking=1",
                        "-o", "APT::Sandbox::User=root", *names], check=True, timeout=1800,
                       env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
        (work / "debs/partial").rmdir()
        (work / "debs/lock").unlink(missing_ok=True)

    return dm.cached_build(cache_dir / "package-debs" / key, make) / "debs"


def flat_repository(debs: Path, into: Path) -> None:
    """A flat apt repository (`deb [trusted=yes] file:DIR ./`): the .debs and their Packages index."""
    into.mkdir(parents=True)
    index = []
    for deb in sorted(debs.glob("*.deb")):
        data = deb.read_bytes()
        (into / deb.name).write_bytes(data)
        control = subprocess.run(["dpkg-deb", "-f", str(deb)], check=True, capture_output=True,
                                 text=True).stdout.rstrip("\n")
        index.append(f"{control}\nFilename: ./{deb.name}\nSize: {len(data)}\n"
                     f"SHA256: {hashlib.sha256(data).hexdigest()}\n")
    (into / "Packages").write_text("\n".join(index))


@contextlib.contextmanager
def _system_mounts(root: Path) -> Iterator[None]:
    mounts: list[Path] = []
    try:
        for fs in ("proc", "sys", "dev"):
            subprocess.run(["mount", "--bind", f"/{fs}", str(root / fs)], check=True)
            mounts.append(root / fs)
        yield
    finally:
        for m in reversed(mounts):
            subprocess.run(["umount", "-l", str(m)], capture_output=True)


@dataclass(frozen=True, slots=True)
class ApplianceBox:
    image: Path  # raw ext4, label ROOT_LABEL: boot it with snapshot=on, never write it
    kernel: Path
    initrd: Path
    depends: tuple[str, ...]


def box_key(depends: list[str]) -> str:
    inputs = {"master": dm.cache_key(), "depends": depends, "version": BOX_VERSION, "runner": RUNNER_UNIT,
              "free_mb": FREE_MB}
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:16]


def _make_box_tree(root: Path, master: Path, debs: Path, depends: list[str]) -> None:
    subprocess.run(["rsync", "-aHAX", "--numeric-ids", f"{master}/", f"{root}/"], check=True)
    flat_repository(debs, root / "var/local/debs")
    (root / "etc/apt/sources.list").write_text("deb [trusted=yes] file:/var/local/debs ./\n")
    for extra in (root / "etc/apt/sources.list.d").glob("*.list"):
        extra.unlink()
    policy = root / "usr/sbin/policy-rc.d"
    policy.write_text(POLICY_RC_D)
    policy.chmod(0o755)
    with _system_mounts(root):
        dm._chroot(root, "apt-get -q -o APT::Sandbox::User=root update\n"
                         "apt-get -y -q -o APT::Sandbox::User=root install --no-install-recommends "
                         f"{' '.join(depends)}\napt-get clean\n")
    policy.unlink()
    (root / "etc/fstab").write_text(f"LABEL={ROOT_LABEL} / ext4 errors=remount-ro 0 1\n")
    (root / "etc/initramfs-tools/conf.d/resume").unlink(missing_ok=True)
    # No interface stanza: the test's script gives eth0 the lab's address (a random subnet per run).
    (root / "etc/network/interfaces").write_text("auto lo\niface lo inet loopback\n")
    (root / "etc/hostname").write_text("appliance\n")
    (root / "etc/hosts").write_text("127.0.0.1\tlocalhost\n127.0.1.1\tappliance\n")
    systemd = root / "etc/systemd/system"
    wants = systemd / "multi-user.target.wants"
    for unit in wants.glob("imageserver-*report.service"):
        unit.unlink()
    # No login prompt on the serial console: starting its getty hangs the line up (TTYVHangup=yes), and
    # what the runner writes after that is lost (see _debianmaster.REPORT_BEFORE_GETTY).
    (systemd / "serial-getty@ttyS0.service").symlink_to("/dev/null")
    (systemd / "imageserver-e2e-runner.service").write_text(RUNNER_UNIT)
    (wants / "imageserver-e2e-runner.service").symlink_to("/etc/systemd/system/imageserver-e2e-runner.service")


def appliance_box(cache_dir: Path) -> ApplianceBox:
    """The cached appliance image (built if missing): the master tree plus the runtime Depends."""
    depends = runtime_depends()
    master = dm.build(cache_dir)
    debs = dependency_debs(cache_dir, master)

    def make(work: Path) -> None:
        root = work / "root"
        _make_box_tree(root, master, debs, depends)
        kernel = max(root.glob("boot/vmlinuz-*"))
        shutil.copy2(kernel, work / "vmlinuz")
        shutil.copy2(root / "boot" / kernel.name.replace("vmlinuz", "initrd.img"), work / "initrd.img")
        used_mb = int(subprocess.run(["du", "-sxm", str(root)], check=True, capture_output=True,
                                     text=True).stdout.split()[0])
        with open(work / "root.img", "wb") as f:
            f.truncate((used_mb + FREE_MB) << 20)
        subprocess.run(["mkfs.ext4", "-q", "-F", "-L", ROOT_LABEL, "-d", str(root), str(work / "root.img")],
                       check=True, timeout=900)
        shutil.rmtree(root)

    entry = dm.cached_build(cache_dir / "package-box" / box_key(depends), make)
    return ApplianceBox(entry / "root.img", entry / "vmlinuz", entry / "initrd.img", tuple(depends))


def script_disk(files: Path, image: Path, size_mb: int = 256) -> None:
    """The test's own disk: an ext4 image of the directory `files` (run.sh, the packages)."""
    with open(image, "wb") as f:
        f.truncate(size_mb << 20)
    subprocess.run(["mkfs.ext4", "-q", "-F", "-L", TEST_LABEL, "-d", str(files), str(image)], check=True,
                   timeout=300)


def box_drives(box: ApplianceBox, disk: Path) -> list[str]:
    """QEMU arguments for the two disks in order: the cached root (vda, writes to a throwaway overlay), the
    test's disk (vdb)."""
    return ["-drive", f"file={box.image},format=raw,if=none,id=root,snapshot=on",
            "-device", "virtio-blk-pci,drive=root",
            "-drive", f"file={disk},format=raw,if=none,id=pkgtest,readonly=on",
            "-device", "virtio-blk-pci,drive=pkgtest"]


# ------------------------------------------------------------------------- the older package


def older_package(cache_dir: Path, commit: str) -> Path:
    """imageserver_<its version>~git<commit>_amd64.deb, built by the build_deb.py of `commit` from that
    commit's own tree (git archive), cached by the commit. The ~ sorts it below every package built from
    a later tree of the same version, so installing today's package over it is an upgrade."""
    found = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--verify", "-q", f"{commit}^{{commit}}"],
                           capture_output=True, text=True)
    if found.returncode != 0:
        raise RuntimeError(f"commit {commit} is not in {REPO}: the upgrade test builds the older package from "
                           "the repository's history (a full clone, not a shallow one or a source tarball)")
    full = found.stdout.strip()

    def make(work: Path) -> None:
        src = work / "src"
        src.mkdir()
        archive = subprocess.Popen(["git", "-C", str(REPO), "archive", full], stdout=subprocess.PIPE)
        subprocess.run(["tar", "-x", "-C", str(src)], stdin=archive.stdout, check=True)
        if archive.wait() != 0:
            raise RuntimeError(f"git archive {full} failed")
        base = tomllib.loads((src / "pyproject.toml").read_text())["project"]["version"]
        # The dev venv's python runs it (its pip fetches the Python dependencies at the dev venv's versions).
        # No PYTHONPATH: a checkout on it shows that build's pip an imageserver already installed.
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        subprocess.run([sys.executable, str(src / "packaging/build_deb.py"), "--out", str(work),
                        "--version", f"{base}~git{full[:10]}"], check=True, timeout=1800, cwd=src, env=env)
        shutil.rmtree(src)
        (deb,) = work.glob("imageserver_*_amd64.deb")
        listing = subprocess.run(["dpkg-deb", "-c", str(deb)], check=True, capture_output=True, text=True).stdout
        if "/site-packages/appliance/cli/main.py" not in listing:
            raise RuntimeError(f"{deb.name}: the application is not in its private environment")

    entry = dm.cached_build(cache_dir / "package-older" / full, make)
    (deb,) = entry.glob("imageserver_*_amd64.deb")
    return deb
