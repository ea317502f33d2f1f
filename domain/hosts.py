"""Hosts as the operator sees them, and the changes an operator makes: add a host, reinstall one.

A host view is the hosts row with its address binding (reservation, else lease), the progress of its
newest install and what its next PXE boot does. Views of a page of hosts cost one query per table
(hosts, install events, images) whatever the page's size; bindings come from the live lease book
when the daemon runs (a dict lookup), else from the store in one query per table.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass
from ipaddress import AddressValueError, IPv4Address
from typing import Any

from domain.errors import Conflict, DomainError, Invalid, NotFound
from domain.paging import Page
from domain.responses import BootDecision
from domain.sources import Sources
from domain.views import view_json
from protocols.mac import MacError, normalize_mac
from state import installs, transports
from state.boot import decide_boot
from state.hostbook import HostBook, check_name, check_version
from state.hosts import (
    HostError,
    HostFieldError,
    HostNotFound,
    HostRecord,
    Op,
    host_count,
    host_record,
    host_records,
    versions_of_images,
)
from state.imagename import ImageNameError, check_image_name
from state.leases import LeaseError, LeaseModel, stored_bindings


@dataclass(frozen=True, slots=True)
class HostView:
    """GET /api/v1/hosts[/{name}]: one host. The install token is never part of it."""

    name: str
    mac: str | None
    ip: str | None
    image: str | None
    version: int | None  # None: the image's newest version
    state: str
    created: float
    updated: float
    last_seen: float | None
    running_version: int | None
    last_update: float | None  # when updateclient last finished on the host
    script_override: bool  # the host has its own autoinstall script
    progress: dict[str, Any]  # the newest install attempt (installs.summary)
    binding: dict[str, Any] | None  # {"kind": "reservation" | "lease", "ip", ...}
    transport: str | None = None  # the host's own choice (None: its image's default; state/transports.py)
    transport_effective: str = transports.DEFAULT  # what its installer uses: its own, else its image's, else rsync
    boot: dict[str, Any] | None = None  # the boot decision; None where nothing decides (offline)
    timeline: list[dict[str, Any]] | None = None  # every install event (one host's view only)

    def as_json(self) -> dict[str, Any]:
        out = {"name": self.name, "mac": self.mac, "ip": self.ip, "image": self.image, "version": self.version,
               "state": self.state, "created": self.created, "updated": self.updated, "last_seen": self.last_seen,
               "running_version": self.running_version, "last_update": self.last_update,
               "script_override": self.script_override, "progress": self.progress, "binding": self.binding,
               "transport": self.transport, "transport_effective": self.transport_effective}
        if self.boot is not None:
            out["boot"] = self.boot
        if self.timeline is not None:
            out["timeline"] = self.timeline
        return out


@dataclass(frozen=True, slots=True)
class HostPage:
    """GET /api/v1/hosts: one page of hosts by name."""

    hosts: list[HostView]
    total: int  # hosts in all
    offset: int
    limit: int
    next_offset: int | None  # the next page's offset; None on the last page

    def as_json(self) -> dict[str, Any]:
        return {"hosts": [h.as_json() for h in self.hosts], "total": self.total, "offset": self.offset,
                "limit": self.limit, "next_offset": self.next_offset}


def _bindings(src: Sources, macs: list[str], now: float) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    if src.leases is not None:
        for mac in macs:
            res = src.leases.reservation(mac)
            if res is not None:
                out[mac] = {"kind": "reservation", **res.as_dict()}
                continue
            lease = src.leases.lease(mac)
            if lease is not None:
                out[mac] = {"kind": "lease", **lease.as_dict(now)}
        return out
    for mac, (kind, ip, extra) in stored_bindings(src.reader, macs).items():
        if kind == "reservation":
            out[mac] = {"kind": kind, "ip": str(IPv4Address(ip)), "source": extra}
        else:
            out[mac] = {"kind": kind, "ip": str(IPv4Address(ip)), "expires": extra, "active": extra > now}
    return out


def _views(src: Sources, records: list[HostRecord], now: float, *, with_timeline: bool) -> list[HostView]:
    names = [r.host.name for r in records]
    events = installs.timelines(src.reader, names)
    macs = [r.host.mac for r in records if r.host.mac]
    bindings = _bindings(src, macs, now)
    images = {r.host.image for r in records if r.host.image}
    versions = versions_of_images(src.reader, images)
    defaults = transports.image_transports(src.reader, images)
    out = []
    for r in records:
        h = r.host
        timeline = events.get(h.name, [])
        latest = src.progress.get(h.name) if src.progress is not None else None
        boot = None
        if src.boot_policy is not None and h.mac:
            boot = view_json(BootDecision.of(decide_boot(h.mac, h, versions.get(h.image or "", ()), src.boot_policy)))
        out.append(HostView(
            name=h.name, mac=h.mac, ip=str(h.ip) if h.ip is not None else None, image=h.image, version=h.version,
            state=h.state, created=h.created, updated=h.updated, last_seen=h.last_seen,
            running_version=h.running_version, last_update=r.last_update, script_override=r.script_override,
            progress=installs.summary(timeline, now, latest), binding=bindings.get(h.mac) if h.mac else None,
            transport=h.transport,
            transport_effective=h.transport or defaults.get(h.image or "") or transports.DEFAULT,
            boot=boot, timeline=timeline if with_timeline else None))
    return out


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
    record = host_record(src.reader, name)
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

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> AddHost:
        """Checked and canonical (MAC spelling, lower-case name); Invalid names the bad field."""
        try:
            name = check_name(body.get("name"))
            raw_mac = body.get("mac")
            if not isinstance(raw_mac, str) or not raw_mac.strip():
                raise Invalid("mac: a host needs its MAC address (e.g. 52:54:00:12:34:56)")
            mac = normalize_mac(raw_mac)
            raw_ip = body.get("ip")
            ip = IPv4Address(str(raw_ip)) if raw_ip else None
            image = body.get("image") or None
            if image is not None:
                check_image_name(image)
            version = check_version(body.get("version"))
            transport = transports.check_transport(body.get("transport"))
        except (HostError, MacError, ImageNameError, AddressValueError) as e:
            raise Invalid(str(e)) from None
        return cls(name, mac, image, ip, version, transport)

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "mac": self.mac, "image": self.image,
                "ip": str(self.ip) if self.ip is not None else None, "version": self.version,
                "transport": self.transport}


def image_installable(src: Sources, image: str | None, version: int | None) -> None:
    """The one call point for "can this image be installed at all" when a host is given one: Conflict (nothing
    written) with getimage's reason if not. An image not captured yet is allowed (its boot waits for it)."""
    if image and src.image_problem is not None:
        why = src.image_problem(image, version)
        if why:
            raise Conflict(f"image {image} cannot be installed: {why}")


def add_host_op(src: Sources, req: AddHost, now: float, *, auto_static: str = "on-install") -> Op:
    """Check a new host against what exists and return the journal operation that writes it.

    With a lease book (the live one, or an offline one in the CLI) the host's fixed address becomes its
    MAC's reservation, by the shared rules of state.hostbook; without one the row alone is written."""
    if host_record(src.reader, req.name) is not None:
        raise Conflict(f"host {req.name} exists already")
    image_installable(src, req.image, req.version)
    if not isinstance(src.leases, LeaseModel):
        return installs.add_host_op(req.name, req.mac, req.image, req.ip, now, req.version, req.transport)
    book = HostBook(src.reader, src.leases, auto_static=auto_static, image_problem=src.image_problem)
    try:
        _, op = book.create(req.name, now=now, mac=req.mac, ip=req.ip, image=req.image, version=req.version,
                            transport=req.transport)
    except (HostError, LeaseError) as e:
        raise Conflict(str(e)) from None
    return op


def integrity_conflict(req: AddHost, error: sqlite3.IntegrityError) -> Conflict:
    """A unique constraint the checks could not see (a change committed in between)."""
    ip = f" or {req.ip}" if req.ip else ""
    return Conflict(f"host {req.name} or MAC {req.mac}{ip} exists already ({error})")


# --------------------------------------------------------------------------- reinstall


def reinstall_op(name: str, now: float) -> Op:
    """State assigned and a fresh install token: the next PXE boot installs again. The op returns whether
    the host exists (NotFound is the caller's, after the commit)."""
    return installs.reinstall_op(name, installs.new_token(), now)



def from_host_error(e: HostError) -> DomainError:
    """The model's refusal as a domain error, by its type: no such host, a malformed change, a contradiction."""
    kind = NotFound if isinstance(e, HostNotFound) else Invalid if isinstance(e, HostFieldError) else Conflict
    return kind(str(e))
