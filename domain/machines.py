"""Machines seen on the wire, each with its host (if any) and what it boots now: the list the operator
assigns waiting machines from. A page costs one query for the host MACs and one per table for the page."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from domain.errors import NotFound, valid_names
from domain.hardware import inventory_of
from domain.inventory import HardwareSummary, Inventory, InventoryView
from domain.paging import Page
from domain.power import PowerView, power_views
from domain.responses import BootDecision
from domain.sources import Sources
from domain.views import doc, view_json
from protocols.mac import normalize_mac
from state.boot import decide_boot
from state.hosts import Host, effective_hosts_for_macs, host_macs, hosts_for_macs
from state.images import arches_of_images, versions_of_images
from state.inventories import inventories_of
from state.sightings import Machine, stored_machines


@dataclass(frozen=True, slots=True)
class MachineView:
    """One machine as the API shows it: its sighting (state.sightings.Machine), its host, its boot decision."""

    mac: str
    first_seen: float | None = field(metadata=doc("null: a host whose machine has not booted yet"))
    last_seen: float | None
    arch: int | None = field(metadata=doc("DHCP option 93"))
    vendor_class: str | None
    user_class: str | None
    uuid: str | None
    relay: str | None
    subnet: str | None
    hostname: str | None
    host: str | None
    host_state: str | None
    # Absent where nothing decides (offline).
    boot: str | dict[str, Any] | None = field(default=None, metadata=doc(
        "the decision's kind in the list; the whole decision for one machine", omit_none=True,
        oneOf=[{"type": "string", "enum": ["install", "inspect", "local", "wait"]},
               {"$ref": "#/components/schemas/BootDecision"}]))
    inventory: InventoryView | None = field(default=None, metadata=doc(
        "its hardware inventory (one machine's view only; none before its installer posted one)", omit_none=True))
    hardware: HardwareSummary | None = field(default=None, metadata=doc(
        "its inventory in a few numbers: CPU, memory, disks, NICs (left out before its installer posted one)",
        omit_none=True))
    power: PowerView | None = field(default=None, metadata=doc(
        "its host's last known power state and the BMC's error (left out: no host, or no BMC answer yet)",
        omit_none=True))

    @classmethod
    def of(cls, machine: Machine, seen: bool, host: Host | None, boot: str | dict[str, Any] | None,
           inventory: InventoryView | None = None, hardware: HardwareSummary | None = None,
           power: PowerView | None = None) -> MachineView:
        sighting = machine.as_dict()
        if not seen:
            sighting["first_seen"] = sighting["last_seen"] = None
        return cls(**sighting, host=host.name if host else None, host_state=host.state if host else None,
                   boot=boot, inventory=inventory, hardware=hardware, power=power)


@dataclass(frozen=True, slots=True)
class MachinePage:
    machines: list[MachineView]
    total: int = field(metadata=doc("machines in all (after the filter)"))
    offset: int
    limit: int
    next_offset: int | None = field(metadata=doc("offset of the next page; null on the last"))


def _views(src: Sources, machines: list[tuple[Machine, bool]], detail: bool) -> list[MachineView]:
    macs = [m.mac for m, _ in machines]
    hosts: dict[str, Host] = effective_hosts_for_macs(src.reader, macs)
    image_names = {h.image for h in hosts.values() if h.image}
    versions = versions_of_images(src.reader, image_names)
    arches = arches_of_images(src.reader, image_names)
    policy = src.boot_policy
    inspect = policy is not None and policy.inspect
    stored = inventories_of(src.reader, macs)  # one query a page, as every table here
    powers = power_views(src.reader, [h.name for h in hosts.values()])
    out = []
    for m, seen in machines:
        host = hosts.get(m.mac)
        boot: str | dict[str, Any] | None = None
        if src.boot_policy is not None:
            images = versions.get(host.image, ()) if host is not None and host.image else ()
            decision = view_json(BootDecision.of(decide_boot(
                m.mac, host, images, src.boot_policy, inventoried=not inspect or m.mac in stored, client_arch=m.arch,
                arches=arches.get(host.image) if host is not None and host.image else None)))
            boot = decision if detail else decision["kind"]
        inv = stored.get(m.mac)
        out.append(MachineView.of(m, seen, host, boot, inventory_of(src.reader, m.mac) if detail else None,
                                  HardwareSummary.of(Inventory.from_json(inv.inventory), inv.received) if inv else None,
                                  powers.get(host.name) if host is not None else None))
    return out


def list_machines(src: Sources, page: Page, *, unknown_only: bool = False) -> MachinePage:
    known = host_macs(src.reader) if unknown_only else set()
    if src.machines is not None:
        shown, total = src.machines.page(page.offset, page.limit, known)
    else:
        machines = [m for m in stored_machines(src.reader) if m.mac not in known]
        shown, total = machines[page.offset:page.offset + page.limit], len(machines)
    views = _views(src, [(m, True) for m in shown], False)
    return MachinePage(views, total, page.offset, page.limit, page.next_offset(len(views), total))


def show_machine(src: Sources, mac_text: str) -> MachineView:
    with valid_names():
        mac = normalize_mac(mac_text)
    machine = src.machines.get(mac) if src.machines is not None else next(
        (m for m in stored_machines(src.reader) if m.mac == mac), None)
    if machine is not None:
        return _views(src, [(machine, True)], True)[0]
    if not hosts_for_macs(src.reader, [mac]):
        raise NotFound(f"machine {mac} has not been seen and is no host's")
    return _views(src, [(Machine(mac, 0.0, 0.0), False)], True)[0]  # a host that has not booted yet
