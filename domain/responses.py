"""Small response views shared by many routes: the error object, reload's receipt, and the boot decision as
the API shows it (state.boot.BootDecision carries the install token and fetch nonce, which stay out of it)."""

from __future__ import annotations

from dataclasses import dataclass, field

from domain.views import doc
from state import boot

BOOT_KINDS = ["install", "inspect", "local", "wait"]


@dataclass(frozen=True, slots=True)
class Error:
    """Every 4xx/5xx JSON answer: one line saying what is wrong."""

    error: str


@dataclass(frozen=True, slots=True)
class ReloadRequested:
    reload: str = field(metadata=doc("the configuration file is re-read in the background", enum=["requested"]))


@dataclass(frozen=True, slots=True)
class BootDecision:
    """What a machine boots now and why (state.boot.decide_boot), without the installer's credentials."""

    kind: str = field(metadata=doc(enum=BOOT_KINDS))
    mac: str
    reason: str = field(metadata=doc("one line for people: logs, the boot console, the API"))
    hostname: str | None
    image: str | None
    version: int | None
    poll_seconds: int

    @classmethod
    def of(cls, d: boot.BootDecision) -> BootDecision:
        return cls(kind=d.kind, mac=d.mac, reason=d.reason, hostname=d.hostname, image=d.image, version=d.version,
                   poll_seconds=d.poll_seconds)
