"""What updateclient's routes answer (services/api_update.py), as response views: the version a host
syncs to, a recorded report, and what a reinstall from the host's own disk needs."""

from __future__ import annotations

from dataclasses import dataclass, field

from domain.views import doc
from state.updates import UpdateTarget


@dataclass(frozen=True, slots=True)
class UpdateTargetView:
    host: str
    image: str
    version: int
    module: str = field(metadata=doc("the rsync daemon module serving exactly this version"))
    assigned: bool = field(metadata=doc("false: a version the client named, not its assignment"))
    rsync_port: int
    rsync_host: str | None = field(default=None, metadata=doc("the imageserver's address, when configured",
                                                                   omit_none=True))
    rsync_user: str | None = field(default=None, metadata=doc(
        "asked with the host's update token: this update's rsync user", omit_none=True))
    rsync_password: str | None = field(default=None, metadata=doc(
        "its password (the asking address may pull the image for an hour)", omit_none=True))

    @classmethod
    def of(cls, target: UpdateTarget, rsync_port: int, rsync_host: str | None) -> UpdateTargetView:
        return cls(**target.as_dict(), rsync_port=rsync_port, rsync_host=rsync_host or None)


@dataclass(frozen=True, slots=True)
class UpdateRecorded:
    """POST /api/v1/hosts/{name}/update-events: the report as recorded."""

    host: str
    stage: str = field(metadata=doc(enum=["start", "done", "failed"]))
    image: str | None
    version: int | None
    running_version: int | None = field(metadata=doc("the version the host runs now (set by done)"))


@dataclass(frozen=True, slots=True)
class Reinstall:
    """POST /api/v1/hosts/{name}/autoinstall: what a boot loader entry for the installer needs."""

    host: str
    state: str
    mac: str | None
    kernel: str
    initrd: str
    cmdline: str | None = field(default=None, metadata=doc(
        "the installer's arguments, new token included (absent for a host without a MAC)", omit_none=True))
