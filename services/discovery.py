"""Discovery in the daemon: sightings of unknown machines become hosts (policy auto), and DHCP is told
whether a machine may be given a boot (policy ignore). The decisions are domain.discovery's; this is
the glue to the live machine log, the store and the journal.

With [dhcp] auto_static = "on-assign", a host whose machine had no lease yet when it got its MAC (an
auto-discovered machine is named at its DISCOVER) has its first lease made its reservation here.

Every sighting (a DHCP packet, a boot script or pxelinux config request) passes `MachineLog.seen`;
`DiscoveringMachineLog` hands each one on to `Discovery.seen`, so DHCP and the boot path need no
hook of their own. A machine already settled (a host, or made one) is skipped without a query; one
that matched no rule is looked at again when it says more about itself (an arch, a vendor class).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from domain.discovery import (
    AutoCreateLimit,
    DiscoveryRule,
    Hardware,
    decide_unknown,
    dhcp_offers_boot,
    first_match,
)
from domain.errors import Invalid
from domain.hardware import hardware_of
from domain.hostbook import AUTO_STATIC_DEFAULT, AutoStatic, HostBook, make_lease_static
from domain.power import discovered_bmc_op
from domain.settings import DiscoveryConfig
from state.eventlog import EventLog
from state.hosts import address_op, host_by_mac, host_by_name, host_count
from state.leases import LeaseModel
from state.sightings import NO_DETAILS, Machine, MachineLog
from state.store import Store

log = EventLog("imageserver.discovery")

_SETTLED_LIMIT = 65536  # remembered settled MACs; beyond that the set starts over (a query each, no harm)


@dataclass(slots=True)
class Discovery:
    store: Store
    leases: LeaseModel
    settings: DiscoveryConfig  # [discovery]; SIGHUP replaces it (and auto_static)
    clock: Callable[[], float]
    auto_static: AutoStatic = AUTO_STATIC_DEFAULT  # [dhcp] auto_static
    _settled: set[str] = field(default_factory=set)
    _pending_names: dict[str, str] = field(default_factory=dict)  # name -> MAC, until its row commits
    created: int = 0
    _limit: AutoCreateLimit | None = None

    def limit(self) -> AutoCreateLimit:
        """The auto-create cap, following the settings (SIGHUP replaces them; the window's count stays)."""
        s = self.settings
        lim = self._limit
        if lim is None:
            lim = self._limit = AutoCreateLimit(s.auto_max_hosts, s.auto_max_per_window, s.auto_window)
        lim.max_hosts, lim.per_window, lim.window = s.auto_max_hosts, s.auto_max_per_window, s.auto_window
        return lim

    def may_boot(self, mac: str) -> bool:
        """For the DHCP server: does a reply to `mac` carry boot options? (one indexed read under ignore)"""
        if self.settings.policy != "ignore":
            return True
        return dhcp_offers_boot(self.settings.policy, host_by_mac(self.store.reader, mac) is not None)

    def seen(self, machine: Machine, now: float) -> None:
        if self.auto_static == "on-assign":
            self._static_on_assign(machine.mac, now)
        if self.settings.policy != "auto" or machine.mac in self._settled:
            return
        reader = self.store.reader
        is_host = machine.mac in self._pending_names.values() or host_by_mac(reader, machine.mac) is not None

        def taken(name: str) -> bool:
            return name in self._pending_names or host_by_name(reader, name) is not None

        looked_up: list[Hardware | None] = []

        def hardware() -> Hardware | None:
            """Its stored inventory's facts: read once, and only when a rule's other fields matched."""
            if not looked_up:
                looked_up.append(hardware_of(reader, machine.mac))
            return looked_up[0]

        if not is_host and first_match(self.settings.rules, machine.mac, machine.arch, machine.vendor_class,
                                       hardware):
            # The cap comes before a name is looked for (that costs a query per name tried): past it, a
            # flood of made-up MACs costs no more than a counter. Not settled: the machine waits as under
            # hold and is looked at again at its next sighting.
            refusal = self.limit().refusal(now, lambda: host_count(reader) + len(self._pending_names))
            if refusal is not None:
                reason, log_it = refusal
                if log_it:
                    log.warning("discovery-capped", mac=machine.mac, reason=reason, action="hold")
                return
        decision = decide_unknown(self.settings.policy, self.settings.rules, mac=machine.mac, arch=machine.arch,
                                  vendor_class=machine.vendor_class, is_host=is_host, taken=taken,
                                  hardware=hardware)
        if decision.kind == "known":
            self._settle(machine.mac)
            return
        if decision.kind != "create" or decision.name is None or decision.rule is None:
            return
        book = HostBook(reader, self.leases, auto_static=self.auto_static)
        try:
            host, op = book.create(decision.name, now=now, mac=machine.mac, image=decision.rule.image,
                                   version=decision.rule.version, source="discovery", client_arch=machine.arch)
        except ValueError as e:
            log.warning("discovery-failed", mac=machine.mac, name=decision.name, error=str(e))
            self._settle(machine.mac)
            return
        self._pending_names[host.name] = machine.mac
        self._settle(machine.mac)
        self.created += 1
        self.limit().created(now)
        log.info("host-discovered", mac=machine.mac, host=host.name, image=host.image, arch=machine.arch,
                 vendor_class=machine.vendor_class)
        fut = self.store.journal.submit(op)
        fut.add_done_callback(lambda f, name=host.name: self._written(name, f))
        if decision.rule.gives_bmc:
            self._discovered_bmc(host.name, decision.rule, hardware())

    def _discovered_bmc(self, name: str, rule: DiscoveryRule, hardware: Hardware | None) -> None:
        """The rule's BMC defaults at the address the machine's inventory reports (after the host's row, in
        the journal's order). The password is read here and goes nowhere but the bmcs table."""
        if hardware is None or not hardware.bmc_address:
            log.info("discovery-no-bmc", host=name, reason="its inventory reports no BMC address")
            return
        assert rule.bmc_scheme is not None and rule.bmc_username is not None and rule.bmc_password_file is not None
        try:
            password = rule.bmc_password_file.read_text().strip("\n")
            address, op = discovered_bmc_op(name, rule.bmc_scheme, hardware.bmc_address, rule.bmc_username, password)
        except OSError as e:
            log.warning("discovery-bmc-failed", host=name, reason=f"{rule.bmc_password_file}: {e.strerror}")
            return
        except Invalid as e:
            log.warning("discovery-bmc-failed", host=name, reason=str(e))
            return
        log.info("host-bmc-discovered", host=name, bmc=address, user=rule.bmc_username)
        self.store.journal.submit(op).add_done_callback(
            lambda f: f.cancelled() or f.exception() is None or log.error(
                "discovery-bmc-write-failed", host=name, error=str(f.exception())))

    def inspected(self, machine: Machine, now: float) -> str | None:
        """An inspection stored the machine's inventory: look at it again (a rule on its hardware may match
        now). The name of the host made of it, None if none."""
        self.seen(machine, now)
        return next((name for name, mac in self._pending_names.items() if mac == machine.mac), None)

    def _static_on_assign(self, mac: str, now: float) -> None:
        """auto_static on-assign for a host whose machine had no lease when it was assigned (or discovered):
        its first lease becomes its reservation. In-memory checks first; the store is read only for a
        machine that holds a lease and no reservation."""
        lease = self.leases.lease(mac)
        if lease is None or not lease.active(now) or self.leases.reservation(mac) is not None:
            return
        host = host_by_mac(self.store.reader, mac)
        if host is None or host.ip is not None:
            return
        res = make_lease_static(self.leases, mac, host.name, now, "on-assign")
        if res is None:
            return
        log.info("lease-made-static", mac=mac, host=host.name, ip=res.ip, source="on-assign")
        fut = self.store.journal.submit(address_op(host.name, res.ip, now))
        fut.add_done_callback(lambda f: f.cancelled() or f.exception())  # address_op never fails; no warning

    def _written(self, name: str, fut: Any) -> None:
        mac = self._pending_names.pop(name, None)
        if not fut.cancelled() and fut.exception() is not None:
            log.error("discovery-write-failed", host=name, error=str(fut.exception()))
            if mac is not None:
                self._settled.discard(mac)  # try again at its next sighting

    def _settle(self, mac: str) -> None:
        if len(self._settled) >= _SETTLED_LIMIT:
            self._settled.clear()
        self._settled.add(mac)

    def forget(self, mac: str) -> None:
        """A host went away (or lost its MAC): its machine may be discovered again."""
        self._settled.discard(mac)


class DiscoveringMachineLog(MachineLog):
    """The machine log, passing every sighting on to discovery."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.on_seen: Callable[[Machine, float], None] | None = None

    def sighted(self, mac: str, now: float, details: tuple[Any, ...] = NO_DETAILS) -> Machine:
        # seen() comes through here too.
        machine = super().sighted(mac, now, details)
        if self.on_seen is not None:
            try:
                self.on_seen(machine, now)
            except Exception:  # discovery must never stop a DHCP reply or a boot script
                log.exception("discovery-error", mac=mac)
        return machine
