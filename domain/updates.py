"""updateclient's use cases (services/api_update.py): which version a host syncs to, what a report may say,
and what the routes answer, as response views (the target, a recorded report, what a reinstall from the
host's own disk needs). The reports are stored by state/updates.py."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from domain.errors import Conflict, Invalid, NotFound
from domain.views import doc
from protocols.names import InvalidName, image_name
from state.db import Connection
from state.hosts import effective_host_by_name
from state.images import image_versions

STAGES = ("start", "done", "failed", "autoinstall")
MAX_DETAIL = 8192  # an rsync error's tail is the longest detail worth keeping


@dataclass(frozen=True, slots=True)
class UpdateTarget:
    """The image version a host syncs to, and the rsync module that serves exactly it."""

    host: str
    image: str
    version: int
    assigned: bool  # True: the host's own assignment; False: a version the client asked for

    @property
    def module(self) -> str:
        return f"{self.image}_v{self.version}"

    def as_dict(self) -> dict[str, Any]:
        return {"host": self.host, "image": self.image, "version": self.version, "module": self.module,
                "assigned": self.assigned}


@dataclass(frozen=True, slots=True)
class UpdateReport:
    """A report as checked by check_report, ready for state.updates.report_op."""

    stage: str
    image: str | None
    version: int | None
    detail: str | None


def check_version(version: object) -> int | None:
    """A version as asked for ("3", "v3", 3), None when not named; Invalid unless a positive integer."""
    if version is None or version == "":
        return None
    if isinstance(version, str) and version.lstrip("v").isdigit():
        version = int(version.lstrip("v"))
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise Invalid(f"version {version!r} is not a positive integer")
    return version


def update_target(reader: Connection, host: str, image: str | None = None,
                  version: object = None) -> UpdateTarget:
    """The version `host` should run: the one asked for, else its assignment (its profile's where it has
    none of its own; no version = the newest). Invalid: a malformed version or image name (the query's
    key named). NotFound: no such host. Conflict: a target it cannot name (no image, a version not captured)."""
    try:
        wanted = check_version(version)
    except Invalid:
        raise Invalid(f'"version" must be a positive integer (N or vN), not {str(version)[:40]!r}') from None
    try:
        if image is not None:
            image_name(image)
    except InvalidName as e:
        raise Invalid(f'"image": {e}') from None
    stored = effective_host_by_name(reader, host)
    if stored is None:
        raise NotFound(f"no host named {host!r}")
    assigned_image, assigned_version = stored.image, stored.version
    want_image = image or assigned_image
    if not want_image:
        raise Conflict(f"host {host} has no image; name one (--image NAME)")
    try:
        image_name(want_image)
    except InvalidName as e:
        raise Conflict(str(e)) from None
    available = list(image_versions(reader, want_image))
    if not available:
        raise Conflict(f"image {want_image} has no captured version")
    if wanted is not None:
        want_version = wanted
    elif image is None or image == assigned_image:
        want_version = assigned_version if assigned_version is not None else available[-1]
    else:
        want_version = available[-1]
    if want_version not in available:
        raise Conflict(f"image {want_image} has no version {want_version} "
                       f"(captured: {', '.join(f'v{v}' for v in available)})")
    assigned = want_image == assigned_image and want_version == (
        assigned_version if assigned_version is not None else available[-1])
    return UpdateTarget(host, want_image, want_version, assigned)


def check_report(stage: object, image: object, version: object, detail: object) -> UpdateReport:
    """What updateclient may report (start, done, failed; a reinstall is asked for with its own route):
    Invalid otherwise. The detail keeps its last MAX_DETAIL characters."""
    if stage not in STAGES:
        raise Invalid(f"stage must be one of {', '.join(STAGES)}, got {stage!r}")
    if stage == "autoinstall":
        raise Invalid("ask for a reinstall with POST .../autoinstall")
    if image is not None:
        try:
            image_name(image)
        except InvalidName as e:
            raise Invalid(str(e)) from None
    checked_version = check_version(version)
    if detail is not None and not isinstance(detail, str):
        raise Invalid("detail must be a string")
    return UpdateReport(str(stage), image if isinstance(image, str) else None, checked_version,
                        None if detail is None else detail[-MAX_DETAIL:])


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
