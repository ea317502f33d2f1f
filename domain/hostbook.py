"""Host changes that keep the lease book in step: a host with a MAC and an address has a reservation.

One `HostBook` per change, over a reader connection (what is committed) and the lease book (the live
LeaseModel in the daemon, an offline one in the CLI). Each method checks the change, applies what it
means to the lease book (which writes through its own writer), and returns the journal operation that
writes the hosts row; the caller runs it (`await journal.run(op)` live, `op(conn)` in an offline
transaction). So the admin API, the offline CLI and discovery share one set of rules:

- a host's address is unique among hosts; with a MAC it is reserved for that MAC (same rules as
  `reservations add`: not another MAC's reservation or active lease, inside a DHCP subnet);
- a host with an address but no MAC yet (an addclients range) must have it outside every pool, or
  the pool could hand it to someone else before the machine arrives;
- [dhcp] auto_static: "on-assign" turns the machine's current lease into the host's reservation when
  it gets its MAC; "on-install" does so when the host becomes installed (`make_lease_static`).

A malformed name or MAC is protocols.names.InvalidName (the name rules' one error); a change the rules
refuse is a HostError (domain/host_errors.py: by kind, a domain error); a reservation domain/leases.reserve
refuses is a HostConflict.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from ipaddress import IPv4Address
from typing import Any, Literal

from domain.addclients import AddclientsRequest, Existing, Plan, plan_addclients
from domain.errors import Conflict, Invalid
from domain.host_errors import HostConflict, HostFieldError, HostNotFound
from domain.host_states import check_transition
from domain.leases import reserve
from protocols.arch import mismatch as arch_mismatch
from protocols.mac import normalize_mac
from protocols.names import host_name, image_name
from state.db import Connection
from state.hosts import (
    Host,
    Op,
    delete_host_op,
    first_without_mac,
    host_by_ip,
    host_by_mac,
    host_by_name,
    inherited,
    insert_host_op,
    list_hosts,
    update_host_op,
)
from state.images import image_arch
from state.lease_pools import SubnetLike
from state.lease_rows import Reservation
from state.leases import LeaseModel
from state.profiles import profile_by_name
from state.sightings import machine_arch
from state.transports import TRANSPORTS

# [dhcp] auto_static: when a host's lease becomes its reservation. Declared here, once: the config, the API
# and the commands take it from here.
AutoStatic = Literal["on-install", "on-assign", "off"]
AUTO_STATIC_DEFAULT: AutoStatic = "on-install"
# What `update` changes besides the state (None or "" clears each).
_FIELDS = ("mac", "ip", "image", "version", "transport", "profile", "kernel_args")


def check_version(version: object) -> int | None:
    if version is None:
        return None
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise HostFieldError(f"version must be a positive integer, got {version!r}")
    return version


def check_transport(value: object) -> str | None:
    """A transport name, or None ("" or None: not set, the default applies); HostFieldError names the choices."""
    if value is None or value == "":
        return None
    if not isinstance(value, str) or value not in TRANSPORTS:
        raise HostFieldError(f"transport must be one of {', '.join(TRANSPORTS)}, got {value!r}")
    return value


# Kernel arguments go onto a boot loader's command line (iPXE, pxelinux, GRUB): words of plain characters,
# nothing a loader would expand or end a line at.
_KERNEL_ARGS = re.compile(r"^[A-Za-z0-9_.,:=/+@%\- ]*$")
MAX_KERNEL_ARGS = 1024


def check_kernel_args(value: object) -> str | None:
    """Kernel arguments (a host's or a profile's), or None ("" or None: not set); HostFieldError says why not."""
    if value is None or value == "":
        return None
    if not isinstance(value, str) or len(value) > MAX_KERNEL_ARGS or not _KERNEL_ARGS.match(value):
        raise HostFieldError("kernel_args: words of letters, digits and _.,:=/+@%- separated by spaces "
                             f"(at most {MAX_KERNEL_ARGS} characters)")
    return " ".join(value.split()) or None


def check_profile(conn: Connection, value: object) -> str | None:
    """A profile a host may name (None: none, "" too); HostNotFound (a NotFound) when no profile has that name."""
    if value is None or value == "":
        return None
    if not isinstance(value, str) or profile_by_name(conn, value) is None:
        raise HostNotFound(f"no profile named {value!r} (imageserver profiles add NAME ...)")
    return value


def make_lease_static(leases: LeaseModel, mac: str, hostname: str | None, now: float,
                      source: str) -> Reservation | None:
    """auto_static: the MAC's active lease becomes a reservation of the same address (leaves the pool).

    A MAC that has a reservation keeps it; no active lease -> None. The lease row itself goes the next
    time the client asks (the reservation supersedes it); until then nobody else can get the address.
    """
    existing = leases.reservation(mac)
    if existing is not None:
        return existing
    lease = leases.lease(mac)
    if lease is None or not lease.active(now):
        return None
    try:
        return reserve(leases, mac, lease.ip, now, hostname=hostname, source=source)
    except (Conflict, Invalid) as e:  # e.g. the address lies outside every configured subnet
        raise HostConflict(str(e)) from None


def starts_assigned(in_force: Host) -> bool:
    """A new host starts assigned when an image is in force for it (its own, else its profile's: `in_force` is
    the host as read through its profile) and it has a MAC to boot by; else new."""
    return bool(in_force.image and in_force.mac)


@dataclass(slots=True)
class HostBook:
    conn: Connection
    leases: LeaseModel
    pools: tuple[SubnetLike, ...] = ()
    auto_static: str = AUTO_STATIC_DEFAULT
    # Why a host given (image, pinned version or None) could not be installed, None when it can: the
    # appliance's rule (the check getimage makes at capture), passed in because state imports nothing of it.
    image_problem: Callable[[str, int | None], str | None] | None = None

    # ------------------------------------------------------------------ reads

    def get(self, name: str) -> Host:
        host = host_by_name(self.conn, name)
        if host is None:
            raise HostNotFound(f"no host named {name!r}")
        return host

    def pool_of(self, ip: IPv4Address) -> SubnetLike | None:
        return next((p for p in self.pools if p.pool_first <= ip <= p.pool_last), None)

    # ------------------------------------------------------------------ checks

    def _check_ip(self, name: str, ip: IPv4Address, mac: str | None, now: float) -> None:
        other = host_by_ip(self.conn, ip)
        if other is not None and other.name != name:
            raise HostConflict(f"{ip} is host {other.name}'s address")
        if mac is None:
            pool = self.pool_of(ip)
            if pool is not None:
                raise HostConflict(f"{ip} is inside the DHCP pool {pool.pool_first}-{pool.pool_last}: a host "
                                f"without a MAC needs an address outside every pool")
            res = next((r for r in self.leases.reservations() if r.ip == ip), None)
            if res is not None:
                raise HostConflict(f"{ip} is reserved for {res.mac}" + (f" ({res.hostname})" if res.hostname else ""))
            lease = next((x for x in self.leases.leases(now) if x.ip == ip), None)
            if lease is not None:
                raise HostConflict(f"{ip} is leased to {lease.mac}")

    def _check_mac(self, name: str, mac: str) -> None:
        other = host_by_mac(self.conn, mac)
        if other is not None and other.name != name:
            raise HostConflict(f"MAC {mac} is host {other.name}'s")

    # ------------------------------------------------------------------ reservations

    def _release(self, host: Host) -> None:
        """Drop the reservation that is this host's (its MAC reserved at its address), if any."""
        if host.mac is None or host.ip is None:
            return
        res = self.leases.reservation(host.mac)
        if res is not None and res.ip == host.ip:
            self.leases.remove_reservation(host.mac)

    def _reserve(self, host: Host, now: float, source: str) -> None:
        if host.mac is None or host.ip is None:
            return
        try:
            reserve(self.leases, host.mac, host.ip, now, hostname=host.name, source=source)
        except (Conflict, Invalid) as e:
            raise HostConflict(f"host {host.name}: {e}") from None

    def _static_now(self, host: Host, now: float, source: str) -> Host:
        """auto_static for a host with a MAC and no address: its lease becomes its reservation and address."""
        if host.mac is None or host.ip is not None:
            return host
        res = make_lease_static(self.leases, host.mac, host.name, now, source)
        if res is None:
            return host
        other = host_by_ip(self.conn, res.ip)
        if other is not None and other.name != host.name:
            return host  # the address is named by another host (stale data): keep the reservation only
        return replace(host, ip=res.ip)

    # ------------------------------------------------------------------ changes

    def create(self, name: str, *, now: float, mac: str | None = None, ip: IPv4Address | None = None,
               image: str | None = None, version: int | None = None, source: str = "manual",
               transport: str | None = None, client_arch: int | None = None,
               profile: str | None = None) -> tuple[Host, Op]:
        """A new host; `client_arch`: the machine's option 93 when the caller has it first hand (discovery),
        else the machine's recorded one. `profile`: the profile it inherits from (HostNotFound if none has
        that name)."""
        name = host_name(name)
        if host_by_name(self.conn, name) is not None:
            raise HostConflict(f"host {name} exists already")
        mac = normalize_mac(mac) if mac else None
        if mac is not None:
            self._check_mac(name, mac)
        if ip is not None:
            self._check_ip(name, ip, mac, now)
        if image:
            image_name(image)
        self._check_installable(image or None, check_version(version))
        host = Host(name, mac, ip, image or None, check_version(version), "new", now, now,
                    transport=check_transport(transport), profile=check_profile(self.conn, profile))
        in_force = inherited(self.conn, host)  # what it installs: its own image, else its profile's
        self._check_arch(name, mac, in_force.image, in_force.version, client_arch)
        if starts_assigned(in_force):
            host = replace(host, state="assigned")
        self._reserve(host, now, source)
        if self.auto_static == "on-assign":
            host = self._static_now(host, now, "on-assign")
        return host, insert_host_op(host)

    def update(self, name: str, changes: Mapping[str, Any], now: float, *, source: str = "manual") -> tuple[Host, Op]:
        """Change mac, ip, image, version and/or state ("" or None clears mac, ip, image, version)."""
        old = self.get(name)
        unknown = set(changes) - {*_FIELDS, "state"}
        if unknown:
            raise HostFieldError(f"cannot set {', '.join(sorted(unknown))} of a host")
        new = old
        if "mac" in changes:
            new = replace(new, mac=normalize_mac(changes["mac"]) if changes["mac"] else None)
        if "ip" in changes:
            value = changes["ip"]
            new = replace(new, ip=IPv4Address(value) if value else None)
        if "image" in changes:
            new = replace(new, image=image_name(changes["image"]) if changes["image"] else None)
        if "version" in changes:
            new = replace(new, version=check_version(changes["version"]))
        if "transport" in changes:
            new = replace(new, transport=check_transport(changes["transport"]))
        if "kernel_args" in changes:
            new = replace(new, kernel_args=check_kernel_args(changes["kernel_args"]))
        if "profile" in changes:
            new = replace(new, profile=check_profile(self.conn, changes["profile"]))
        # what an install needs: its own image, else its profile's (and then the profile's version)
        in_force = inherited(self.conn, new)
        image, version = in_force.image, in_force.version
        if (new.image, new.version) != (old.image, old.version):
            self._check_installable(new.image, new.version)
        if new.mac is not None and new.mac != old.mac:
            self._check_mac(name, new.mac)
        if (new.image, new.version, new.mac, new.profile) != (old.image, old.version, old.mac, old.profile):
            self._check_arch(name, new.mac, image, version)
        if new.ip is not None and (new.ip != old.ip or new.mac != old.mac):
            self._check_ip(name, new.ip, new.mac, now)
        if "state" in changes:
            check_transition(old.state, str(changes["state"]))
            new = replace(new, state=str(changes["state"]))
        elif new.state == "new" and image and new.mac:
            new = replace(new, state="assigned")  # it has what an install needs now
        if new.state in ("assigned", "installing") and not image:
            raise HostConflict(f"host {name} has no image to be {new.state} with")
        if (new.mac, new.ip) != (old.mac, old.ip):
            self._release(old)
            try:
                self._reserve(new, now, source)
            except HostConflict:
                self._reserve(old, now, source)  # put the old one back: the change is refused as a whole
                raise
        if self.auto_static == "on-assign" and new.mac is not None and new.mac != old.mac:
            new = self._static_now(new, now, "on-assign")
        if self.auto_static == "on-install" and new.state == "installed" and old.state != "installed":
            new = self._static_now(new, now, "on-install")
        fields = {k: getattr(new, k) for k in (*_FIELDS, "state") if getattr(new, k) != getattr(old, k)}
        return replace(new, updated=now), update_host_op(name, fields, now)

    def _check_installable(self, image: str | None, version: int | None) -> None:
        if image and self.image_problem is not None:
            problem = self.image_problem(image, version)
            if problem:
                raise HostConflict(f"image {image} cannot be installed: {problem}")

    def _check_arch(self, name: str, mac: str | None, image: str | None, version: int | None,
                    client_arch: int | None = None) -> None:
        """A machine is never given an image of another CPU architecture (an arm64 image to a machine whose
        firmware said x64 UEFI): it could only fail to boot. Nothing is refused while either is unknown."""
        if mac is None or not image:
            return
        if client_arch is None:
            client_arch = machine_arch(self.conn, mac)
        problem = arch_mismatch(image_arch(self.conn, image, version), client_arch)
        if problem:
            raise HostConflict(f"host {name}: image {image}{f' v{version}' if version else ''} cannot be installed "
                               f"on machine {mac}: {problem}")

    def remove(self, name: str) -> tuple[Host, Op]:
        host = self.get(name)
        self._release(host)
        return host, delete_host_op(name)

    def next_free(self) -> Host:
        """The next name of an addclients range: the first host (address order) that has no MAC yet."""
        host = first_without_mac(self.conn)
        if host is None:
            raise HostConflict("no host is waiting for a machine (every host has a MAC; add some with addclients)")
        return host

    def assign(self, mac: str, name: str | None, now: float) -> tuple[Host, Op]:
        """Give machine `mac` to host `name` (None: the next free one); it installs at its next boot."""
        mac = normalize_mac(mac)
        current = host_by_mac(self.conn, mac)
        host = self.get(host_name(name)) if name is not None else self.next_free()
        if current is not None and current.name != host.name:
            raise HostConflict(f"machine {mac} is host {current.name} already (remove or change that host first)")
        if host.mac is not None and host.mac != mac:
            raise HostConflict(f"host {host.name} has machine {host.mac} already")
        return self.update(host.name, {"mac": mac}, now, source="assign")

    def addclients(self, req: AddclientsRequest, now: float, *, dry_run: bool = False,
                   own: Iterable[IPv4Address] = ()) -> tuple[Plan, list[Op]]:
        return addclients(self, req, now, dry_run=dry_run, own=own)

    def installed(self, name: str, now: float) -> Reservation | None:
        """The install helper's "done": with auto_static on-install, the host's lease becomes its reservation."""
        host = self.get(name)
        if self.auto_static != "on-install" or host.mac is None:
            return None
        return make_lease_static(self.leases, host.mac, host.name, now, "on-install")


def existing_for_plan(book: HostBook, now: float, own: Iterable[IPv4Address] = ()) -> Existing:
    """What an addclients plan must not clash with: hosts, reservations, active leases, subnets."""
    return Existing(
        hosts=tuple(list_hosts(book.conn)),
        reservations=tuple((r.mac, r.ip, r.hostname) for r in book.leases.reservations()),
        active_leases=tuple((x.mac, x.ip) for x in book.leases.leases(now)),
        subnets=book.pools, own_addresses=tuple(own))


def addclients(book: HostBook, req: AddclientsRequest, now: float, *, dry_run: bool = False,
               own: Iterable[IPv4Address] = ()) -> tuple[Plan, list[Op]]:
    """Plan the range and (unless dry_run) apply it to the lease book; returns the plan and the host writes.
    The hosts it creates inherit from `req.profile` (HostNotFound if there is none of that name)."""
    check_profile(book.conn, req.profile)
    plan = plan_addclients(req, existing_for_plan(book, now, own))
    ops: list[Op] = []
    if dry_run:
        return plan, ops
    for h in plan.hosts:
        if h.action == "create":
            _, op = book.create(h.name, now=now, mac=h.mac, ip=h.ip, image=h.image, version=h.version,
                                source="addclients", profile=req.profile)
            ops.append(op)
        elif h.action == "update":
            changes = {k: (str(getattr(h, k)) if k == "ip" else getattr(h, k)) for k in h.changes}
            _, op = book.update(h.name, changes, now, source="addclients")
            ops.append(op)
    return plan, ops
