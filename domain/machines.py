"""Machines seen on the wire, each with its host (if any) and what it boots now: the list the operator
assigns waiting machines from. A page costs one query for the host MACs and one per table for the page."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from domain.errors import Invalid, NotFound
from domain.paging import Page
from domain.sources import Sources
from protocols.mac import MacError, normalize_mac
from state.boot import decide_boot
from state.hosts import Host, host_macs, hosts_for_macs, versions_of_images
from state.sightings import Machine, stored_machines


@dataclass(frozen=True, slots=True)
class MachineView:
    machine: Machine
    seen: bool  # False: a host whose machine has not booted yet (first/last seen are null)
    host: str | None
    host_state: str | None
    boot: dict[str, Any] | None  # the decision (detail) or {"kind": ...} (list); None: nothing decides
    detail: bool

    def as_json(self) -> dict[str, Any]:
        out = self.machine.as_dict()
        if not self.seen:
            out["first_seen"] = out["last_seen"] = None
        out["host"], out["host_state"] = self.host, self.host_state
        if self.boot is not None:
            out["boot"] = self.boot if self.detail else self.boot["kind"]
        return out


@dataclass(frozen=True, slots=True)
class MachinePage:
    machines: list[MachineView]
    total: int
    page: Page

    def as_json(self) -> dict[str, Any]:
        return {"machines": [m.as_json() for m in self.machines], "total": self.total,
                "offset": self.page.offset, "limit": self.page.limit,
                "next_offset": self.page.next_offset(len(self.machines), self.total)}


def _views(src: Sources, machines: list[tuple[Machine, bool]], detail: bool) -> list[MachineView]:
    hosts: dict[str, Host] = hosts_for_macs(src.reader, [m.mac for m, _ in machines])
    versions = versions_of_images(src.reader, {h.image for h in hosts.values() if h.image})
    out = []
    for m, seen in machines:
        host = hosts.get(m.mac)
        boot = None
        if src.boot_policy is not None:
            images = versions.get(host.image, ()) if host is not None and host.image else ()
            boot = decide_boot(m.mac, host, images, src.boot_policy).as_dict()
        out.append(MachineView(m, seen, host.name if host else None, host.state if host else None, boot, detail))
    return out


def list_machines(src: Sources, page: Page, *, unknown_only: bool = False) -> MachinePage:
    known = host_macs(src.reader) if unknown_only else set()
    if src.machines is not None:
        shown, total = src.machines.page(page.offset, page.limit, known)
    else:
        machines = [m for m in stored_machines(src.reader) if m.mac not in known]
        shown, total = machines[page.offset:page.offset + page.limit], len(machines)
    return MachinePage(_views(src, [(m, True) for m in shown], False), total, page)


def show_machine(src: Sources, mac_text: str) -> MachineView:
    try:
        mac = normalize_mac(mac_text)
    except MacError as e:
        raise Invalid(str(e)) from None
    machine = src.machines.get(mac) if src.machines is not None else next(
        (m for m in stored_machines(src.reader) if m.mac == mac), None)
    if machine is not None:
        return _views(src, [(machine, True)], True)[0]
    if not hosts_for_macs(src.reader, [mac]):
        raise NotFound(f"machine {mac} has not been seen and is no host's")
    return _views(src, [(Machine(mac, 0.0, 0.0), False)], True)[0]  # a host that has not booted yet
