"""The power state on the host view: the periodic poll asks every host with a BMC (its own or its profile's)
at most [power] concurrency at a time, and each answer, or the BMC's error, is the host's last known power
state; a host without a BMC is not asked. And which hosts a bulk request names."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from domain import hosts
from domain.bulk import BulkRemove, selected
from domain.errors import Invalid
from domain.settings import PowerConfig
from domain.sources import Sources
from services.power.driver import BmcFailure
from services.power.poller import PowerPoller
from state.bmcs import BmcSecret, set_bmc_op
from state.db import transaction
from state.hosts import Host, insert_host
from state.profiles import add_profile_op
from state.store import Store


class Driver:
    running = 0
    most = 0

    def __init__(self, bmc: BmcSecret, timeout: float) -> None:
        self.bmc = bmc

    async def power_status(self) -> str:
        Driver.running += 1
        Driver.most = max(Driver.most, Driver.running)
        try:
            await asyncio.sleep(0.05)
            if self.bmc.password != "right":
                raise BmcFailure("the BMC refused: wrong user or password")
            return "on" if self.bmc.host.endswith(("1", "3", "5", "7", "9")) else "off"
        finally:
            Driver.running -= 1

    async def close(self) -> None:
        pass


def test_the_poll_records_each_hosts_power_and_its_bmc_error(tmp_path: Path) -> None:
    async def go() -> None:
        store = Store(tmp_path)
        try:
            with transaction(store.reader) as conn:
                add_profile_op("rack", {"bmc_address": "ipmi://{host}-bmc", "bmc_username": "admin",
                                        "bmc_password": "right"}, 1.0)(conn)
                for i in range(20):
                    insert_host(conn, Host(f"n{i:02d}", None, None, None, None, "new", 1.0, 1.0,
                                           profile="rack" if i < 10 else None))
                set_bmc_op("n10", "ipmi://10.0.0.10", "admin", "right", None)(conn)
                set_bmc_op("n11", "ipmi://10.0.0.11", "admin", "wrong", None)(conn)
                set_bmc_op("n03", "ipmi://10.0.0.3", "admin", "wrong", None)(conn)  # its own wins over the profile's
            poller = PowerPoller(store, lambda: PowerConfig(concurrency=4, timeout=5, poll=1), clock=lambda: 50.0,
                                 factory=Driver)
            await poller.poll_once()
            assert Driver.most == 4  # bounded by [power] concurrency, and used
            assert poller.last_round["hosts"] == 12 and poller.last_round["failed"] == 2
            views = {h.name: h for h in hosts.all_hosts(Sources(store.reader), 60.0)}
            assert views["n01"].power is not None and views["n01"].power.state == "on"
            assert views["n02"].power is not None and views["n02"].power.state == "off"
            assert views["n10"].power is not None and views["n10"].power.checked == 50.0
            bad = views["n11"].power
            assert bad is not None and bad.state is None and "wrong user or password" in (bad.error or "")
            own = views["n03"].power
            assert own is not None and "wrong user or password" in (own.error or "")
            assert views["n15"].power is None  # no BMC: never asked
            assert views["n01"].effective is not None and views["n01"].effective["bmc"].source == "profile rack"
            # Its status entry has the fields every service's has (`imageserver status` reads state and counters).
            assert poller.status()["state"] == "stopped"
            await poller.start()
            entry = poller.status()
            assert entry["state"] == "running" and entry["counters"] == {"rounds": poller.rounds}
            assert {"listen", "error", "interval"} <= entry.keys()
            await poller.stop()
            assert poller.status()["state"] == "stopped"
        finally:
            await store.close()

    asyncio.run(go())


def test_a_bulk_request_names_a_list_and_a_range_each_host_once() -> None:
    assert selected(BulkRemove(hosts=["node2", "x"], range="node[001-003],node2")) == [
        "node2", "x", "node001", "node002", "node003"]
    for bad in (BulkRemove(), BulkRemove(range="node[1-"), BulkRemove(range="n[1-20000]"), BulkRemove(hosts=[" "])):
        with pytest.raises(Invalid):
            selected(bad)
