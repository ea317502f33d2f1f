"""The use cases of hardware inventories and root-device hints, which the API and the CLI share.

A machine no host has, booted to be inspected ([discovery] inspect: state.boot.decide_boot), posts its
inventory to POST /inspect/{mac}/inventory with its inspect nonce (state.credentials.inspect_nonce), from the
address leased to its MAC, once: a machine with an inventory is not inspected again.

An installer posts its machine's inventory (POST /install/{mac}/inventory, its install token, from the
address leased or reserved for its MAC, like every install credential: domain.installs.from_own_address);
the inventory is stored per MAC and the answer is the disk the host's root-device hints choose
(domain.rootdevice.choose_disks), which the installer installs to: one disk, or one per disk of a RAID or
LVM layout that names its members by hints. Hints are the host's own, else its profile's, else its image's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from domain.discovery import Hardware
from domain.errors import Conflict, Forbidden, NotFound, Unauthorized, valid_names
from domain.installs import INSTALL_REALM, InstallSettings, from_own_address, machine_address, reporting_host
from domain.inventory import Inventory, InventoryView
from domain.rootdevice import DiskHints, choose_disks, hints_for, parse_disk_hints
from domain.sources import Sources
from domain.views import doc
from protocols.mac import normalize_mac
from protocols.names import host_name, image_name
from state import credentials, inventories, root_hints
from state.db import Connection
from state.eventlog import EventLog
from state.hosts import Host, Op, host_by_mac, host_by_name
from state.images import newest
from state.profiles import profile_by_name
from state.root_hints import Kind

log = EventLog("imageserver.install")


@dataclass(frozen=True, slots=True)
class RootDeviceAnswer:
    """POST /install/{mac}/inventory: the inventory taken, and the disk the install goes to."""

    host: str
    root_device: str | None = field(metadata=doc(
        "the device the install goes to; null: no hints (the installer's own order) or none matched (see failure)"))
    hints: str | None = field(metadata=doc("the hints applied (serial=..., size>=...; one set per disk, by ;); "
                                           "null: none"))
    hints_from: str | None = field(metadata=doc("host, profile or image: whose hints they are"))
    failure: str | None = field(metadata=doc(
        "why no disk was chosen: the install fails with this reason (it names the candidate disks)"))
    disks: list[str] | None = field(default=None, metadata=doc(
        "hints for several disks (a RAID or LVM layout's): every disk they chose, in the layout's order (the "
        "first is root_device, then its disk 1, 2, ...); left out for hints of one disk", omit_none=True))


def inventory_host(src: Sources, settings: InstallSettings, mac_text: str, peer: str | None, bearer: str | None,
                   now: float) -> tuple[str, Host]:
    """The host an inventory is for: its live install token, from the address leased or reserved for it."""
    mac, host = reporting_host(src, settings, mac_text, bearer, now)
    if from_own_address(src, mac, host, peer) is None:
        log.warning("inventory-refused", hostname=host.name, mac=mac, peer=peer, reason="address")
        raise Forbidden(f"the inventory of {host.name} is taken only from the address leased or reserved for {mac}")
    return mac, host


def take_inventory(src: Sources, host: Host, mac: str, inventory: Inventory, now: float
                   ) -> tuple[RootDeviceAnswer, Op]:
    """The answer to an installer's inventory (its root device) and the op that stores the inventory."""
    hints, source = hints_for(src.reader, host)
    chosen = choose_disks(hints, inventory.disks)
    answer = RootDeviceAnswer(host.name, chosen.disks[0] if chosen.disks else None,
                              hints.text() if hints else None, source, chosen.failure,
                              list(chosen.disks) if hints and len(hints.disks) > 1 else None)
    return answer, inventories.store_inventory_op(mac, now, inventory.with_neighbors().json())


@dataclass(frozen=True, slots=True)
class InspectAnswer:
    """POST /inspect/{mac}/inventory: the inventory taken, and what the machine does next."""

    mac: str
    then: Literal["poweroff", "reboot"] = field(metadata=doc(
        "poweroff: it waits, off, for an assignment (power it on through its BMC); reboot: discovery made it a "
        "host with the inventory (a rule on vendor, memory, disks...), its next boot installs"))
    host: str | None = field(default=None, metadata=doc("the host discovery made of it, null: none"))


def inspected_machine(src: Sources, key: str | None, mac_text: str, peer: str | None, bearer: str | None
                      ) -> str:
    """The machine an inspection's inventory is for: its inspect nonce, from the address leased to it, while
    inspection is on and it is no host and has no inventory."""
    with valid_names():
        mac = normalize_mac(mac_text)
    if key is None or src.boot_policy is None or not src.boot_policy.inspect:
        raise Forbidden("machines are not inspected here ([discovery] inspect is off)")
    if not credentials.same(bearer, credentials.inspect_nonce(key, mac, peer or "")):
        # The nonce is bound to the address its boot file was asked from: another address's is no credential.
        log.warning("inspect-refused", mac=mac, peer=peer, reason="credential")
        raise Unauthorized(f"the inventory of {mac} needs the inspect nonce of its boot file", challenge=INSTALL_REALM)
    bound = machine_address(src, mac)
    if bound is None or str(bound) != peer:
        log.warning("inspect-refused", mac=mac, peer=peer, reason="address")
        raise Forbidden(f"the inventory of {mac} is taken only from the address leased or reserved for it")
    host = host_by_mac(src.reader, mac)
    if host is not None:
        raise Conflict(f"machine {mac} is host {host.name}'s: its installer posts with its install token")
    if inventories.has_inventory(src.reader, mac):
        raise Conflict(f"machine {mac} was inspected already")
    return mac


def take_inspection(mac: str, inventory: Inventory, now: float) -> Op:
    """The op that stores an inspected machine's inventory."""
    return inventories.store_inventory_op(mac, now, inventory.with_neighbors().json())


def inventory_of(reader: Connection, mac: str) -> InventoryView | None:
    stored = inventories.inventory_of(reader, mac)
    if stored is None:
        return None
    inventory = Inventory.from_json(stored.inventory)
    return InventoryView(stored.mac, stored.received, inventory.summary(), inventory)


def hardware_of(reader: Connection, mac: str) -> Hardware | None:
    """What discovery rules may match of machine `mac`: its stored inventory's facts, None without one."""
    stored = inventories.inventory_of(reader, mac)
    return Inventory.from_json(stored.inventory).hardware() if stored is not None else None


def machine_inventory(reader: Connection, mac_text: str) -> InventoryView:
    """GET /api/v1/machines/{mac}/inventory."""
    with valid_names():
        mac = normalize_mac(mac_text)
    view = inventory_of(reader, mac)
    if view is None:
        raise NotFound(f"no inventory of machine {mac}: its installer posts one when it installs (or inspects it: "
                       "[discovery] inspect)")
    return view


# --------------------------------------------------------------------------- setting hints


@dataclass(frozen=True, slots=True)
class RootDeviceSetting:
    """A host's, a profile's or an image's root-device hints as set (GET/PUT/DELETE .../root-device)."""

    kind: Literal["host", "profile", "image"]
    name: str
    hints: str | None = field(metadata=doc("serial=...,size>=... (several disks: one set each, joined by ;); "
                                           "null: none"))


@dataclass(frozen=True, slots=True)
class RootDeviceBody:
    """PUT /api/v1/{hosts,profiles,images}/{name}/root-device."""

    hints: str = field(metadata=doc("serial=S, wwn=W, by_path=P, model=M, size>=N, size<=N, size=N, "
                                    "rotational=true|false, smallest, largest; joined by commas. An image made "
                                    "from several disks (RAID, LVM): one set per disk in its layout's order, "
                                    "joined by ; (serial=A;serial=B)",
                                    example="serial=S0M3,smallest"))


def _exists(reader: Connection, kind: Kind, name: str) -> None:
    with valid_names():
        (image_name if kind == "image" else host_name)(name)
    if kind == "host" and host_by_name(reader, name) is None:
        raise NotFound(f"no host named {name!r}")
    if kind == "profile" and profile_by_name(reader, name) is None:
        raise NotFound(f"no profile named {name!r}")
    if kind == "image" and newest(reader, name) is None:
        raise NotFound(f"no image named {name!r}")


def root_device_setting(reader: Connection, kind: Kind, name: str) -> RootDeviceSetting:
    _exists(reader, kind, name)
    stored = root_hints.hints_of(reader, kind, name)
    return RootDeviceSetting(kind, name, DiskHints.from_json(stored).text() if stored else None)


def set_root_device_op(reader: Connection, kind: Kind, name: str, text: str | None
                       ) -> tuple[RootDeviceSetting, Op]:
    """Set (or with None or "" clear) the hints of a host, a profile or an image; Invalid names a wrong term."""
    _exists(reader, kind, name)
    hints = parse_disk_hints(text) if text else None
    return (RootDeviceSetting(kind, name, hints.text() if hints else None),
            root_hints.set_hints_op(kind, name, hints.json() if hints else None))
