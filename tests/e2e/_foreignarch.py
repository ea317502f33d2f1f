"""Run a command that executes another CPU architecture's binaries (an arm64 tree's maintainer scripts, in a
chroot) on this amd64 box, without touching the host's binfmt_misc.

Since Linux 6.7 binfmt_misc is per user namespace: a new user namespace (identity-mapped, so root stays root
and the tree's files keep their owners) mounts its own binfmt_misc instance and registers qemu-user-static
there with flag F (the interpreter opened at registration: it works inside any chroot). The host's
/proc/sys/fs/binfmt_misc never sees the entry, and it goes away with the namespace.

The namespace also has its own mount, PID and network namespaces: a proc and a sysfs of its own can be mounted
(debootstrap's second stage mounts both in the target), and nothing in it reaches the host's network.

    with_foreign_arch("arm64", ["chroot", root, "/debootstrap/debootstrap", "--second-stage"])

Run as `python -m tests.e2e._foreignarch ARCH -- ARGV...` it is the namespace's first process (below).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

# The magic and mask of an ELF executable of the machine, as qemu's own scripts/qemu-binfmt-conf.sh has them.
_ELF64_LE = b"\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00"
_MASK = b"\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff"


@dataclass(frozen=True, slots=True)
class Emulator:
    name: str  # the binfmt_misc entry's name
    magic: bytes
    mask: bytes
    interpreter: str


EMULATORS = {
    "arm64": Emulator("qemu-aarch64", _ELF64_LE + b"\xb7\x00", _MASK + b"\xff\xff", "/usr/bin/qemu-aarch64-static"),
}
BINFMT = Path("/proc/sys/fs/binfmt_misc")
ID_MAP = "0 0 65536\n"  # identity: uid/gid 0-65535 are themselves (real root writes it, no newuidmap)


class ForeignArchError(RuntimeError):
    pass


def unavailable_reason(arch: str) -> str | None:
    """Why commands of `arch` cannot run here, or None."""
    emulator = EMULATORS.get(arch)
    if emulator is None:
        return f"no emulator known for {arch}"
    if not Path(emulator.interpreter).exists():
        return f"{emulator.interpreter} is missing (Debian package qemu-user-static)"
    if os.geteuid() != 0:
        return "building a foreign-architecture tree needs root"
    release = tuple(int(x) for x in os.uname().release.split(".")[:2] if x.isdigit())
    if release < (6, 7):
        return f"binfmt_misc is per user namespace from Linux 6.7 (this is {os.uname().release})"
    return None


def _escaped(data: bytes) -> str:
    return "".join(f"\\x{b:02x}" for b in data)


def register_line(emulator: Emulator) -> str:
    """The binfmt_misc register line: match by magic (M), flag F (open the interpreter now)."""
    return f":{emulator.name}:M::{_escaped(emulator.magic)}:{_escaped(emulator.mask)}:{emulator.interpreter}:F"


def with_foreign_arch(arch: str, argv: list[str], timeout: float = 3600, **kw: object) -> subprocess.CompletedProcess:
    """Run `argv` (output captured as text) in new user, mount, PID and network namespaces where binaries of
    `arch` run through qemu-user-static. The namespace's own binfmt_misc is used; the host's is left alone."""
    reason = unavailable_reason(arch)
    if reason is not None:
        raise ForeignArchError(reason)
    # unshare makes the namespaces, then forks (-f) the first process of the new PID namespace: this module,
    # which waits on stdin until its user namespace's ID maps are written from here (outside).
    child = subprocess.Popen(["unshare", "--user", "--mount", "--pid", "--net", "--fork", "--kill-child",
                              sys.executable, "-m", "tests.e2e._foreignarch", arch, "--", *argv],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             cwd=Path(__file__).resolve().parents[2], **kw)  # type: ignore[call-overload]
    try:
        _map_identity(child.pid)
        stdout, stderr = child.communicate(input="go\n", timeout=timeout)
    except BaseException:
        child.kill()
        child.wait()
        raise
    return subprocess.CompletedProcess(child.args, child.returncode, stdout, stderr)


def _map_identity(pid: int) -> None:
    """Write the identity ID maps of `pid`'s user namespace once unshare(1) has made it."""
    ours = os.readlink("/proc/self/ns/user")
    deadline = time.monotonic() + 30
    while os.readlink(f"/proc/{pid}/ns/user") == ours:
        if time.monotonic() > deadline:
            raise ForeignArchError("unshare did not make a user namespace within 30 s")
        time.sleep(0.01)
    for name in ("uid_map", "gid_map"):
        Path(f"/proc/{pid}/{name}").write_text(ID_MAP)


def _inside(arch: str, argv: list[str]) -> int:
    """The namespace's first process: once mapped, its own proc, binfmt_misc and emulator, then `argv`."""
    if sys.stdin.readline().strip() != "go":
        return 125
    subprocess.run(["mount", "--make-rprivate", "/"], check=True)
    subprocess.run(["mount", "-t", "proc", "proc", "/proc"], check=True)  # this PID namespace's
    subprocess.run(["mount", "-t", "binfmt_misc", "binfmt_misc", str(BINFMT)], check=True)
    (BINFMT / "register").write_text(register_line(EMULATORS[arch]))
    with open(os.devnull) as devnull:
        return subprocess.run(argv, stdin=devnull).returncode


if __name__ == "__main__":
    arch, sep, *command = sys.argv[1:]
    if sep != "--" or not command:
        sys.exit("usage: python -m tests.e2e._foreignarch ARCH -- ARGV...")
    sys.exit(_inside(arch, command))
