"""Hosts as the operator sees them, and the changes an operator makes: add a host, reinstall one.

A host view is the hosts row with its address binding (reservation, else lease), the progress of its
newest install and what its next PXE boot does. Views of a page of hosts cost one query per table
(hosts, install events, images) whatever the page's size; bindings come from the live lease book
when the daemon runs (a dict lookup), else from the store in one query per table.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from ipaddress import IPv4Address
from typing import Any

from domain import hardware, hostadmin, install_events
from domain.bodies import parse_body
from domain.errors import Conflict, Invalid, NotFound, valid_names
from domain.host_errors import HostError
from domain.hostbook import (
    AUTO_STATIC_DEFAULT,
    HostBook,
    check_profile,
    check_transport,
    check_version,
    starts_assigned,
)
from domain.inventory import InventoryView
from domain.paging import Page
from domain.power import PowerView, power_views
from domain.profiles import Sourced, value_sources
from domain.responses import BootDecision
from domain.rootdevice import DiskHints, hints_for
from domain.sources import Sources
from domain.views import doc
from protocols.mac import normalize_mac
from protocols.names import host_name, image_name
from state import credentials, installs, transports
from state.boot import decide_boot
from state.db import Connection
from state.hosts import (
    Host,
    HostClash,
    Op,
    bmc_sources,
    effective_hosts,
    effective_root_hints,
    host_by_name,
    host_count,
    host_records,
    inherited,
    insert_host,
)
from state.images import arches_of_images, versions_of_images
from state.lease_rows import Lease, Reservation, stored_bindings
from state.leases import LeaseModel
from state.sightings import machine_arches


@dataclass(frozen=True, slots=True)
class InstallFailure:
    stage: str | None = field(metadata=doc("the stage that failed"))
    reason: str | None


@dataclass(frozen=True, slots=True)
class InstallProgress:
    """The host's newest install attempt (domain.install_events.summary); keys without a value are left out."""

    stage: str | None = field(metadata=doc("its newest stage; null: never installed"))
    started: float | None = field(default=None, metadata=doc("when the attempt began", omit_none=True))
    elapsed: float | None = field(default=None, metadata=doc("seconds from its start to its end, or to now",
                                                             omit_none=True))
    bytes: int | None = field(default=None, metadata=doc("bytes copied", omit_none=True))
    total: int | None = field(default=None, metadata=doc("bytes to copy", omit_none=True))
    failure: InstallFailure | None = field(default=None, metadata=doc(omit_none=True))

    @classmethod
    def of(cls, summary: Mapping[str, Any]) -> InstallProgress:
        failure = summary.get("failure")
        return cls(summary["stage"], summary.get("started"), summary.get("elapsed"), summary.get("bytes"),
                   summary.get("total"),
                   InstallFailure(failure.get("stage"), failure.get("reason")) if failure else None)


@dataclass(frozen=True, slots=True)
class Binding:
    """The host's address: its reservation, else its lease; keys the kind does not have are left out."""

    kind: str = field(metadata=doc(enum=["reservation", "lease"]))
    ip: str
    mac: str | None = field(default=None, metadata=doc(omit_none=True))
    hostname: str | None = field(default=None, metadata=doc(omit_none=True))
    source: str | None = field(default=None, metadata=doc("reservation: who made it (manual, on-install, ...)",
                                                          omit_none=True))
    created: float | None = field(default=None, metadata=doc("reservation: when it was made", omit_none=True))
    subnet: str | None = field(default=None, metadata=doc("lease: the pool's subnet", omit_none=True))
    starts: float | None = field(default=None, metadata=doc(omit_none=True))
    expires: float | None = field(default=None, metadata=doc("lease: when it ends", omit_none=True))
    active: bool | None = field(default=None, metadata=doc("lease: not expired", omit_none=True))
    client_id: str | None = field(default=None, metadata=doc("lease: DHCP client identifier, hex", omit_none=True))

    @classmethod
    def of_reservation(cls, res: Reservation) -> Binding:
        return cls("reservation", str(res.ip), mac=res.mac, hostname=res.hostname, source=res.source,
                   created=res.created)

    @classmethod
    def of_lease(cls, lease: Lease, now: float) -> Binding:
        return cls("lease", str(lease.ip), mac=lease.mac, hostname=lease.hostname, subnet=lease.subnet,
                   starts=lease.starts, expires=lease.expires, active=lease.active(now),
                   client_id=lease.client_id.hex() if lease.client_id else None)


@dataclass(frozen=True, slots=True)
class TimelineEvent:
    """One install report of the host, as recorded."""

    id: int
    time: float
    stage: str
    mac: str | None
    detail: dict[str, Any] | None = field(metadata=doc(
        "the report's detail: {text} or its own fields (bytes, total, stage, reason)"))

    @classmethod
    def of(cls, event: Mapping[str, Any]) -> TimelineEvent:
        return cls(event["id"], event["time"], event["stage"], event["mac"], event["detail"])


@dataclass(frozen=True, slots=True)
class HostView(hostadmin.HostRecord):
    """GET /api/v1/hosts[/{name}]: one host, the stored record and what is known about it. The install token
    is never part of it."""

    last_update: float | None = field(metadata=doc("when updateclient last finished on the host"))
    script_override: bool = field(metadata=doc("the host has its own autoinstall script"))
    progress: InstallProgress
    binding: Binding | None
    transport_effective: str = field(default=transports.DEFAULT, metadata=doc(
        "what its installer uses: its own, else its profile's, else its image's, else rsync"))
    effective: dict[str, Sourced] | None = field(default=None, metadata=doc(
        "per inherited setting (image, version, transport, kernel_args, root_device, bmc): the value in force and "
        "where it comes from (host, profile NAME, image NAME, default)", omit_none=True))
    power: PowerView | None = field(default=None, metadata=doc(
        "its last known power state and the BMC's error (null: no BMC answer yet)"))
    boot: BootDecision | None = field(default=None, metadata=doc(
        "what its next PXE boot does (left out where nothing decides: offline)", omit_none=True))
    timeline: list[TimelineEvent] | None = field(default=None, metadata=doc(
        "every install report (one host's view only)", omit_none=True))
    root_device: RootDeviceInUse | None = field(default=None, metadata=doc(
        "the root-device hints its installs apply (one host's view only; none: the installer's own order)",
        omit_none=True))
    inventory: InventoryView | None = field(default=None, metadata=doc(
        "its machine's hardware inventory (one host's view only; none before its installer posted one)",
        omit_none=True))


@dataclass(frozen=True, slots=True)
class RootDeviceInUse:
    hints: str = field(metadata=doc("serial=...,size>=... (several disks: one set each, joined by ;)"))
    source: str = field(metadata=doc("host, profile or image: whose hints they are"))


@dataclass(frozen=True, slots=True)
class HostPage:
    """GET /api/v1/hosts: one page of hosts by name."""

    hosts: list[HostView]
    total: int  # hosts in all
    offset: int
    limit: int
    next_offset: int | None  # the next page's offset; None on the last page


def _bindings(src: Sources, macs: list[str], now: float) -> dict[str, Binding]:
    out: dict[str, Binding] = {}
    if src.leases is not None:
        for mac in macs:
            res = src.leases.reservation(mac)
            if res is not None:
                out[mac] = Binding.of_reservation(res)
                continue
            lease = src.leases.lease(mac)
            if lease is not None:
                out[mac] = Binding.of_lease(lease, now)
        return out
    for mac, (kind, ip, extra) in stored_bindings(src.reader, macs).items():
        if kind == "reservation":
            out[mac] = Binding(kind, str(IPv4Address(ip)), mac=mac, source=extra)
        else:
            out[mac] = Binding(kind, str(IPv4Address(ip)), mac=mac, expires=extra, active=extra > now)
    return out


def _views(src: Sources, records: list[Host], now: float, *, with_timeline: bool) -> list[HostView]:
    names = [h.name for h in records]
    events = installs.timelines(src.reader, names)
    macs = [h.mac for h in records if h.mac]
    bindings = _bindings(src, macs, now)
    inherited = effective_hosts(src.reader, names)  # with what each inherits from its profile
    images = {h.image for h in inherited.values() if h.image}
    versions = versions_of_images(src.reader, images)
    arches = arches_of_images(src.reader, images)
    client_arches = machine_arches(src.reader, macs)
    defaults = transports.image_transports(src.reader, images)
    bmcs = bmc_sources(src.reader, names)  # whose BMC: its own, else its profile's (the view decides)
    powers = power_views(src.reader, names)
    hints = {n: (DiskHints.from_json(stored).text(), whose)
             for n, (stored, whose) in effective_root_hints(src.reader, names).items()}
    out = []
    for own in records:
        h = inherited.get(own.name, own)
        timeline = events.get(h.name, [])
        latest = src.progress.get(h.name) if src.progress is not None else None
        boot = None
        if src.boot_policy is not None and h.mac:
            boot = BootDecision.of(decide_boot(h.mac, h, versions.get(h.image or "", ()), src.boot_policy,
                                               client_arch=client_arches.get(h.mac),
                                               arches=arches.get(h.image or "")))
        out.append(HostView(
            name=h.name, mac=h.mac, ip=str(h.ip) if h.ip is not None else None, image=own.image,
            version=own.version,
            state=h.state, created=h.created, updated=h.updated, last_seen=h.last_seen,
            running_version=h.running_version, last_update=h.last_update, script_override=h.script_override,
            progress=InstallProgress.of(install_events.summary(timeline, now, latest)),
            binding=bindings.get(h.mac) if h.mac else None,
            transport=own.transport, profile=own.profile, kernel_args=own.kernel_args,
            transport_effective=h.transport or defaults.get(h.image or "") or transports.DEFAULT,
            effective=value_sources(own, h, defaults.get(h.image or ""), own_bmc=bmcs.get(own.name) == "host",
                                    profile_bmc=bmcs.get(own.name) == "profile", root_device=hints.get(own.name)),
            power=powers.get(own.name),
            boot=boot, timeline=[TimelineEvent.of(e) for e in timeline] if with_timeline else None,
            **(_hardware(src, h) if with_timeline else {})))
    return out


def _hardware(src: Sources, h: Host) -> dict[str, Any]:
    """One host's root-device hints and its machine's inventory (the one-host view)."""
    hints, source = hints_for(src.reader, h)
    return {"root_device": RootDeviceInUse(hints.text(), source) if hints and source else None,
            "inventory": hardware.inventory_of(src.reader, h.mac) if h.mac else None}


def list_hosts(src: Sources, page: Page, now: float) -> HostPage:
    """One page of hosts by name, each with binding, progress and boot decision."""
    records = host_records(src.reader, limit=page.limit, offset=page.offset)
    total = host_count(src.reader)
    return HostPage(_views(src, records, now, with_timeline=False), total, page.offset, page.limit,
                    page.next_offset(len(records), total))


def all_hosts(src: Sources, now: float) -> list[HostView]:
    """Every host (the offline CLI's listing; the API pages)."""
    return _views(src, host_records(src.reader), now, with_timeline=False)


def show_host(src: Sources, name: str, now: float, *, with_timeline: bool = True) -> HostView:
    record = host_by_name(src.reader, name)
    if record is None:
        raise NotFound(f"no host named {name!r}")
    return _views(src, [record], now, with_timeline=with_timeline)[0]


# --------------------------------------------------------------------------- adding a host


@dataclass(frozen=True, slots=True)
class AddHost:
    """POST /api/v1/hosts and `imageserver hosts add`: a new host."""

    name: str
    mac: str
    image: str | None = None
    ip: IPv4Address | None = None
    version: int | None = None
    transport: str | None = None  # None: the image's default (state/transports.py)
    profile: str | None = field(default=None, metadata=doc(
        "the profile it inherits image, version, transport, kernel arguments, root-device hints and BMC from "
        "(404 if there is none of that name)"))

    @classmethod
    def from_json(cls, body: Any) -> AddHost:
        """Checked and canonical (MAC spelling, lower-case name); Invalid names the bad field."""
        given = parse_body(cls, {k: v for k, v in body.items() if v not in ("", None)}
                           if isinstance(body, Mapping) else body)
        try:
            with valid_names():
                name = host_name(given.name)
                if not given.mac.strip():
                    raise Invalid("mac: a host needs its MAC address (e.g. 52:54:00:12:34:56)")
                mac = normalize_mac(given.mac)
                image = given.image
                if image is not None:
                    image_name(image)
                profile = host_name(given.profile) if given.profile is not None else None
            version = check_version(given.version)
            transport = check_transport(given.transport)
        except HostError as e:
            raise Invalid(str(e)) from None
        ip = given.ip
        return cls(name, mac, image, ip, version, transport, profile)

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "mac": self.mac, "image": self.image,
                "ip": str(self.ip) if self.ip is not None else None, "version": self.version,
                "transport": self.transport, "profile": self.profile}


def image_installable(src: Sources, image: str | None, version: int | None) -> None:
    """The one call point for "can this image be installed at all" when a host is given one: Conflict (nothing
    written) with getimage's reason if not. An image not captured yet is allowed (its boot waits for it)."""
    if image and src.image_problem is not None:
        why = src.image_problem(image, version)
        if why:
            raise Conflict(f"image {image} cannot be installed: {why}")


def new_host_op(name: str, mac: str, image: str | None, ip: IPv4Address | None, now: float,
                version: int | None = None, transport: str | None = None, profile: str | None = None) -> Op:
    """The row of a new host, written as given with its install token (add_host_op without a lease book, and
    tests' starting rows); assigned or new by domain.hostbook.starts_assigned."""
    if image:
        image_name(image)  # it becomes a file name under scripts/: refused here too, whoever calls

    def op(conn: Connection) -> None:
        host = Host(name, mac, ip, image, version, "new", now, now, install_token=credentials.new_token(),
                    transport=transport, token_issued=now, profile=profile)
        insert_host(conn, replace(host, state="assigned") if starts_assigned(inherited(conn, host)) else host)

    return op


def add_host_op(src: Sources, req: AddHost, now: float, *, auto_static: str = AUTO_STATIC_DEFAULT) -> Op:
    """Check a new host against what exists and return the journal operation that writes it.

    With a lease book (the live one, or an offline one in the CLI) the host's fixed address becomes its
    MAC's reservation, by the shared rules of domain.hostbook; without one the row alone is written."""
    if host_by_name(src.reader, req.name) is not None:
        raise Conflict(f"host {req.name} exists already")
    check_profile(src.reader, req.profile)  # NotFound: "no profile named ..."
    image_installable(src, req.image, req.version)
    if not isinstance(src.leases, LeaseModel):
        return new_host_op(req.name, req.mac, req.image, req.ip, now, req.version, req.transport, req.profile)
    book = HostBook(src.reader, src.leases, auto_static=auto_static, image_problem=src.image_problem)
    try:
        _, op = book.create(req.name, now=now, mac=req.mac, ip=req.ip, image=req.image, version=req.version,
                            transport=req.transport, profile=req.profile)
    except HostError as e:
        raise Conflict(str(e)) from None
    return op


def integrity_conflict(req: AddHost, error: HostClash) -> Conflict:
    """A unique constraint the checks could not see (a change committed in between)."""
    ip = f" or {req.ip}" if req.ip else ""
    return Conflict(f"host {req.name} or MAC {req.mac}{ip} exists already ({error})")


# --------------------------------------------------------------------------- reinstall


def reinstall_op(name: str, now: float) -> Op:
    """State assigned and a fresh install token: the next PXE boot installs again. The op returns whether
    the host exists (NotFound is the caller's, after the commit)."""
    return installs.reinstall_op(name, credentials.new_token(), now)
