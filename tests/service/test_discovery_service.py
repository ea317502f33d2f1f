"""Discovery in the daemon's own objects (a real store, journal and lease book; no sockets): policy auto
names machines by rule without handing one name out twice, even before the first name is committed."""

from __future__ import annotations

import asyncio
from pathlib import Path

from domain.discovery import DiscoveryRule
from domain.settings import DiscoveryConfig
from services.discovery import DiscoveringMachineLog, Discovery
from state.hosts import list_hosts
from state.lease_rows import journal_writer
from state.leases import LeaseModel
from state.store import Store

T0 = 1_000_000.0
RULES = (DiscoveryRule("uefi{n}", "efi", arch=7), DiscoveryRule("node{n:03}", "base", mac_prefix="52:54:00"))


def test_auto_names_machines_by_rule_once_each(tmp_path: Path) -> None:
    async def scenario() -> None:
        store = Store(tmp_path)
        try:
            writer = journal_writer(store.journal.submit)
            leases = LeaseModel.load(store.reader, (), writer, now=T0)
            log = DiscoveringMachineLog.load(store.reader, writer, refresh=60)
            discovery = Discovery(store, leases, DiscoveryConfig(policy="auto", rules=RULES), clock=lambda: T0)
            log.on_seen = discovery.seen
            # Three machines and their repeated packets, all before anything is committed.
            for _ in range(3):
                log.seen("52:54:00:00:00:01", T0, arch=0)
                log.seen("52:54:00:00:00:02", T0, arch=7)
                log.seen("52:54:00:00:00:03", T0, arch=0)
                log.seen("aa:bb:cc:00:00:04", T0, arch=0)  # no rule matches: it waits
            await store.journal.flush()
            hosts = {h.mac: (h.name, h.image, h.state) for h in list_hosts(store.reader)}
            assert hosts == {"52:54:00:00:00:01": ("node001", "base", "assigned"),
                             "52:54:00:00:00:02": ("uefi1", "efi", "assigned"),
                             "52:54:00:00:00:03": ("node002", "base", "assigned")}
            assert discovery.created == 3
            # Later it says it is UEFI: now a rule matches.
            log.seen("aa:bb:cc:00:00:04", T0 + 1, arch=7)
            await store.journal.flush()
            assert {h.name for h in list_hosts(store.reader)} == {"node001", "node002", "uefi1", "uefi2"}
            # Under hold nothing is created, and DHCP may boot everybody; under ignore only hosts.
            discovery.settings = DiscoveryConfig(policy="hold", rules=RULES)
            log.seen("52:54:00:00:00:09", T0 + 2, arch=0)
            await store.journal.flush()
            assert len(list_hosts(store.reader)) == 4 and discovery.may_boot("52:54:00:00:00:09")
            discovery.settings = DiscoveryConfig(policy="ignore", rules=RULES)
            assert not discovery.may_boot("52:54:00:00:00:09") and discovery.may_boot("52:54:00:00:00:01")
        finally:
            await store.close()

    asyncio.run(scenario())


def test_on_assign_a_discovered_machines_first_lease_becomes_its_reservation(tmp_path: Path) -> None:
    from ipaddress import IPv4Address, IPv4Network

    from state.lease_pools import PoolSpec

    pool = PoolSpec(IPv4Network("10.20.0.0/24"), IPv4Address("10.20.0.100"), IPv4Address("10.20.0.150"), 600)
    mac = "52:54:00:00:00:01"

    async def scenario() -> None:
        store = Store(tmp_path)
        try:
            writer = journal_writer(store.journal.submit)
            leases = LeaseModel.load(store.reader, [pool], writer, now=T0)
            log = DiscoveringMachineLog.load(store.reader, writer, refresh=60)
            discovery = Discovery(store, leases, DiscoveryConfig(policy="auto", rules=RULES), auto_static="on-assign",
                                  clock=lambda: T0)
            log.on_seen = discovery.seen
            offered = leases.offer(mac, pool, None, T0)
            log.seen(mac, T0, arch=0)  # its DISCOVER: named now, no lease yet
            await store.journal.flush()
            assert offered is not None and leases.commit(mac, offered, pool, T0, None, None) is not None
            log.seen(mac, T0, arch=0)  # its REQUEST, acknowledged
            await store.journal.flush()
            res = leases.reservation(mac)
            assert res is not None and (res.ip, res.hostname, res.source) == (offered, "node001", "on-assign")
            [host] = list_hosts(store.reader)
            assert (host.name, host.ip) == ("node001", offered)
            row = store.read_one("SELECT ip, source FROM reservations WHERE mac = ?", (mac,))
            assert row is not None and (IPv4Address(row[0]), row[1]) == (offered, "on-assign")
        finally:
            await store.close()

    asyncio.run(scenario())


def test_auto_gives_each_cpu_its_own_image_and_never_one_it_cannot_run(tmp_path: Path) -> None:
    """Rules by CPU (`cpu = "arm64"`: option 93 = 11 over PXE, 19 over HTTP) name arm64 and x64 machines apart; a
    rule that would give an x64 machine an arm64 image creates no host (the host rule refuses it)."""
    from domain.discovery import RuleCpu
    from state.images import ImageVersion, insert_version

    rules = (DiscoveryRule("arm{n}", "deb-arm64", cpu=RuleCpu("arm64")),
             DiscoveryRule("pc{n}", "deb-amd64", cpu=RuleCpu("x86_64"), vendor_class="PXEClient"),
             DiscoveryRule("wrong{n}", "deb-arm64", arch=16))  # a mistaken rule: x64 HTTP boot -> arm64 image

    async def scenario() -> None:
        store = Store(tmp_path)
        try:
            for name, arch in (("deb-arm64", "arm64"), ("deb-amd64", "x86_64")):
                iv = ImageVersion(name, 1, f"/images/{name}/v1", T0, arch=arch)
                await store.journal.run(lambda conn, iv=iv: insert_version(conn, iv))
            writer = journal_writer(store.journal.submit)
            leases = LeaseModel.load(store.reader, (), writer, now=T0)
            log = DiscoveringMachineLog.load(store.reader, writer, refresh=60)
            discovery = Discovery(store, leases, DiscoveryConfig(policy="auto", rules=rules), clock=lambda: T0)
            log.on_seen = discovery.seen
            log.seen("52:54:00:00:0b:01", T0, arch=11, vendor_class="PXEClient:Arch:00011:UNDI:003000")
            log.seen("52:54:00:00:13:01", T0, arch=19, vendor_class="HTTPClient:Arch:00019")
            log.seen("52:54:00:00:07:01", T0, arch=7, vendor_class="PXEClient:Arch:00007:UNDI:003016")
            log.seen("52:54:00:00:10:01", T0, arch=16, vendor_class="HTTPClient:Arch:00016")
            await store.journal.flush()
            hosts = {h.mac: (h.name, h.image) for h in list_hosts(store.reader)}
            assert hosts == {"52:54:00:00:0b:01": ("arm1", "deb-arm64"), "52:54:00:00:13:01": ("arm2", "deb-arm64"),
                             "52:54:00:00:07:01": ("pc1", "deb-amd64")}, hosts
            assert discovery.created == 3
        finally:
            await store.close()

    asyncio.run(scenario())
