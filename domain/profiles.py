"""Profiles: named settings (image, version, transport, kernel arguments, root-device hints, BMC defaults)
hosts inherit unless they set their own. The use cases the API (services/api_profiles.py) and the offline
CLI (`imageserver profiles`) share, their request and answer types, and where each of a host's values comes from.

Like domain/hostadmin.py, each change takes a `ProfileStore` (the port: state.profiles.StoredProfiles over
a reader connection) and returns the view with the journal operations that write it; the caller runs them
(the journal live, one transaction offline). Which value a host ends up with is decided once, by the
`hosts_effective` view of the state (state/schema.py); `value_sources` only names where each came from.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from domain.errors import Conflict, Invalid, NotFound, valid_names
from domain.host_errors import HostError
from domain.hostbook import check_kernel_args, check_transport, check_version
from domain.power import parse_bmc_address
from domain.rootdevice import DiskHints, parse_disk_hints
from domain.views import doc
from protocols.names import host_name, image_name
from state.hosts import Host, Op
from state.profiles import Profile


@dataclass(frozen=True, slots=True)
class ProfileSettings:
    """PATCH /api/v1/profiles/{name}: the keys given change (null or "" clears)."""

    image: str | None = None
    version: int | None = field(default=None, metadata=doc("null: the image's newest at install time"))
    transport: str | None = field(default=None, metadata=doc("rsync, bittorrent or multicast"))
    kernel_args: str | None = field(default=None, metadata=doc("added to the installer's kernel command line"))
    root_device: str | None = field(default=None, metadata=doc(
        "root-device hints (serial=..., size>=..., smallest; several disks: one set each, joined by ;) for hosts "
        "without their own; they win over the image's"))
    bmc_address: str | None = field(default=None, metadata=doc(
        "the BMC of each host without one of its own: ipmi://, redfish://, https:// or http:// address where "
        "{host} is the host's name, e.g. ipmi://{host}-bmc"))
    bmc_username: str | None = None
    bmc_password: str | None = field(default=None, metadata=doc("stored 0600, never shown again", omit_none=True))


@dataclass(frozen=True, slots=True, kw_only=True)
class AddProfile(ProfileSettings):
    """POST /api/v1/profiles: a new profile."""

    name: str = field(metadata=doc("one DNS label, like a host name"))


@dataclass(frozen=True, slots=True)
class ProfileView:
    """A profile as shown: no BMC password, ever."""

    name: str
    image: str | None
    version: int | None
    transport: str | None
    kernel_args: str | None
    root_device: str | None = field(metadata=doc("root-device hints, as written; null: none"))
    bmc_address: str | None
    bmc_username: str | None
    bmc_password_set: bool = field(metadata=doc("a BMC password is stored"))
    hosts: int = field(metadata=doc("how many hosts inherit from it"))
    created: float
    updated: float
    host_names: list[str] | None = field(default=None, metadata=doc("the hosts (one profile's view only)",
                                                                     omit_none=True))

    @classmethod
    def of(cls, p: Profile, hosts: int, names: list[str] | None = None, root_hints: str | None = None
           ) -> ProfileView:
        return cls(p.name, p.image, p.version, p.transport, p.kernel_args,
                   DiskHints.from_json(root_hints).text() if root_hints else None, p.bmc_address, p.bmc_username,
                   p.bmc_password_set, hosts, p.created, p.updated, names)


@dataclass(frozen=True, slots=True)
class ProfileList:
    profiles: list[ProfileView]


@dataclass(frozen=True, slots=True)
class ProfileInUse:
    """409 of DELETE /api/v1/profiles/{name}: the hosts that still inherit from it."""

    error: str
    hosts: list[str]


class InUse(Conflict):
    """A profile hosts inherit from cannot go: `hosts` names them."""

    def __init__(self, message: str, hosts: list[str]) -> None:
        super().__init__(message)
        self.hosts = hosts


class ProfileStore(Protocol):
    """What the profile use cases read (state.profiles.StoredProfiles implements it) and the writes they
    return."""

    def get(self, name: str) -> Profile | None: ...

    def users(self, name: str) -> list[str]: ...

    def counts(self) -> dict[str, int]: ...

    def all(self) -> list[Profile]: ...

    def add_op(self, name: str, values: Mapping[str, Any], now: float) -> Op: ...

    def change_op(self, name: str, changes: Mapping[str, Any], now: float) -> Op: ...

    def remove_op(self, name: str) -> Op: ...

    def root_hints(self) -> dict[str, str]: ...  # profile name -> its root-device hints as stored

    def root_hints_op(self, name: str, hints: str | None) -> Op: ...  # set (JSON) or clear them


def checked_settings(values: Mapping[str, Any]) -> dict[str, Any]:
    """The settings given, checked and canonical ("" is None: not set); Invalid names the bad one."""
    known = set(ProfileSettings.__dataclass_fields__)
    unknown = set(values) - known
    if unknown:
        raise Invalid(f"a profile has no {', '.join(sorted(unknown))}")
    out: dict[str, Any] = {}
    try:
        for key, value in values.items():
            value = None if value == "" else value
            if value is None:
                out[key] = None
            elif key == "image":
                with valid_names():
                    out[key] = image_name(str(value))
            elif key == "version":
                out[key] = check_version(value)
            elif key == "transport":
                out[key] = check_transport(value)
            elif key == "kernel_args":
                out[key] = check_kernel_args(value)
            elif key == "root_device":
                out[key] = parse_disk_hints(str(value)).json()
            elif key == "bmc_address":
                parse_bmc_address(str(value).replace("{host}", "node1"))
                out[key] = str(value).strip()
            elif not isinstance(value, str) or "\n" in value:
                raise Invalid(f"{key} must be one line of text")
            else:
                out[key] = value
    except HostError as e:
        raise Invalid(str(e)) from None
    return out


def _view(store: ProfileStore, name: str, *, with_hosts: bool = True) -> ProfileView:
    profile = store.get(name)
    if profile is None:
        raise NotFound(f"no profile named {name!r}")
    users = store.users(name)
    return ProfileView.of(profile, len(users), users if with_hosts else None, store.root_hints().get(name))


def show_profile(store: ProfileStore, name: str) -> ProfileView:
    return _view(store, name)


def list_profiles(store: ProfileStore) -> ProfileList:
    counts, hints = store.counts(), store.root_hints()
    return ProfileList([ProfileView.of(p, counts.get(p.name, 0), None, hints.get(p.name)) for p in store.all()])


def add_profile(store: ProfileStore, body: Mapping[str, Any], now: float) -> tuple[str, list[Op]]:
    """profiles add / POST /api/v1/profiles: the new profile's name and the write. Conflict: it exists."""
    values = dict(body)
    raw_name = values.pop("name", None)
    if not isinstance(raw_name, str) or not raw_name:
        raise Invalid("name: a profile needs a name")
    with valid_names():
        name = host_name(raw_name)  # the same rule as a host's: one DNS label, lower case
    settings = checked_settings(values)
    if store.get(name) is not None:
        raise Conflict(f"profile {name} exists already")
    hints = settings.pop("root_device", None)
    return name, [store.add_op(name, settings, now), *([store.root_hints_op(name, hints)] if hints else [])]


def change_profile(store: ProfileStore, name: str, body: Mapping[str, Any], now: float) -> list[Op]:
    """profiles set / PATCH /api/v1/profiles/{name}: every host inheriting the changed values follows."""
    settings = checked_settings(body)
    if store.get(name) is None:
        raise NotFound(f"no profile named {name!r}")
    if not settings:
        raise Invalid("nothing to change")
    ops = [store.root_hints_op(name, settings.pop("root_device"))] if "root_device" in settings else []
    return [store.change_op(name, settings, now), *ops]


def remove_profile(store: ProfileStore, name: str) -> tuple[ProfileView, Op]:
    """profiles rm / DELETE /api/v1/profiles/{name}: InUse (a Conflict naming the hosts) while hosts inherit
    from it. The op checks again when it runs and returns the hosts that took it up meanwhile ([]: gone)."""
    view = _view(store, name)
    if view.host_names:
        raise in_use(name, view.host_names)
    return view, store.remove_op(name)


def in_use(name: str, hosts: list[str]) -> InUse:
    shown = ", ".join(hosts[:20]) + (f" and {len(hosts) - 20} more" if len(hosts) > 20 else "")
    return InUse(f"profile {name} is used by {len(hosts)} host(s): {shown} (imageserver hosts set NODES "
                 "--no-profile first)", hosts)


# --------------------------------------------------------------------------- where a host's values come from


@dataclass(frozen=True, slots=True)
class Sourced:
    """One of a host's effective values and where it comes from."""

    value: Any = field(metadata=doc("the value in force (null: none)"))
    source: str = field(metadata=doc('"host", "profile NAME", "image NAME" (its default transport) or "default"'))


def value_sources(own: Host, effective: Host, image_transport: str | None, *, own_bmc: bool,
                  profile_bmc: bool, root_device: tuple[str, str] | None = None) -> dict[str, Sourced]:
    """Per inherited setting (image, version, transport, kernel_args, root_device, bmc): the value in force and
    its source. `effective` is the same host read through the state's `hosts_effective` view (the rule's one
    home), `root_device` its hints as written and whose they are (host, profile or image) as the view says."""
    from_profile = f"profile {own.profile}"
    out: dict[str, Sourced] = {}
    for key in Profile.FIELDS:
        mine, used = getattr(own, key), getattr(effective, key)
        if mine is not None:
            out[key] = Sourced(mine, "host")
        elif used is not None:
            out[key] = Sourced(used, from_profile)
        elif key == "transport" and image_transport is not None:
            out[key] = Sourced(image_transport, f"image {effective.image}")
        elif key == "transport":
            out[key] = Sourced("rsync", "default")
        elif key == "version":
            out[key] = Sourced(None, "default")  # the image's newest at install time
        else:
            out[key] = Sourced(None, "default")
    if root_device is None:
        out["root_device"] = Sourced(None, "default")  # the first disk the installer finds
    else:
        text, whose = root_device
        whose = {"host": "host", "profile": from_profile}.get(whose, f"image {effective.image}")
        out["root_device"] = Sourced(text, whose)
    out["bmc"] = Sourced(True, "host") if own_bmc else (
        Sourced(True, from_profile) if profile_bmc else Sourced(None, "default"))
    return out
