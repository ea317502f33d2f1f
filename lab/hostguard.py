"""Proof that a test left the host's name configuration alone.

DHCP clients in a network namespace still share the host's /etc; their default hooks once rewrote
this machine's /etc/resolv.conf. Every client run and every test session compares a snapshot.
"""

from __future__ import annotations

import hashlib
import os
import socket
from dataclasses import dataclass
from pathlib import Path

GUARDED_FILES = (Path("/etc/resolv.conf"), Path("/etc/hosts"), Path("/etc/hostname"))


class HostEtcChanged(AssertionError):
    """The host's /etc/resolv.conf, hosts, hostname or its hostname changed during a test."""


@dataclass(frozen=True, slots=True)
class HostSnapshot:
    files: tuple[tuple[str, str], ...]  # (path, "link:<target>;sha256:<hex>" or "missing")
    hostname: str

    @classmethod
    def take(cls) -> HostSnapshot:
        return cls(
            files=tuple((str(path), _fingerprint(path)) for path in GUARDED_FILES), hostname=socket.gethostname()
        )

    def changes_since(self, earlier: HostSnapshot) -> list[str]:
        changed = [
            f"{path}: {before} -> {after}"
            for (path, before), (_, after) in zip(earlier.files, self.files, strict=True)
            if before != after
        ]
        if earlier.hostname != self.hostname:
            changed.append(f"hostname: {earlier.hostname} -> {self.hostname}")
        return changed

    def assert_unchanged(self, context: str = "") -> None:
        """Raise HostEtcChanged, naming what changed, if the host differs from this snapshot now."""
        changed = HostSnapshot.take().changes_since(self)
        if changed:
            where = f" after {context}" if context else ""
            raise HostEtcChanged(f"HOST CONFIGURATION CHANGED{where}: " + "; ".join(changed))


def _fingerprint(path: Path) -> str:
    try:
        link = f"link:{os.readlink(path)};" if path.is_symlink() else ""
        return link + "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()
    except FileNotFoundError:
        return "missing"
