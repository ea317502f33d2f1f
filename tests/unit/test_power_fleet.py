"""The power fleet runner with stand-in drivers: concurrency bounded by [power] concurrency, a timeout per
host, one hanging or broken BMC failing its own host only; the BMC address rule; the password kept out of
reprs and views."""

from __future__ import annotations

import asyncio
import time

import pytest

from domain.errors import Invalid
from domain.power import BmcView, canonical_fingerprint, parse_bmc_address
from protocols.rmcp import is_presence_pong, presence_ping
from services.power.driver import BmcFailure
from services.power.fleet import run_power
from state.bmcs import Bmc, BmcSecret


class FakeDriver:
    running = 0
    most = 0

    def __init__(self, bmc: BmcSecret, timeout: float) -> None:
        self.name = bmc.host
        self.power = "off"

    async def _work(self) -> None:
        FakeDriver.running += 1
        FakeDriver.most = max(FakeDriver.most, FakeDriver.running)
        try:
            if self.name == "hang":
                await asyncio.sleep(3600)
            if self.name == "broken":
                raise BmcFailure("the BMC said no")
            if self.name == "bug":
                raise KeyError("oops")
            await asyncio.sleep(0.1)
        finally:
            FakeDriver.running -= 1

    async def power_status(self) -> str:
        await self._work()
        return self.power

    async def power_on(self) -> None:
        await self._work()
        self.power = "on"

    async def power_off(self) -> None:
        await self._work()
        self.power = "off"

    async def power_cycle(self) -> None:
        await self._work()

    async def set_boot_pxe_once(self) -> None:
        await self._work()

    async def close(self) -> None:
        return None


def secret(name: str) -> BmcSecret:
    return BmcSecret(name, "ipmi://127.0.0.1", "admin", "hunter2", None)


async def test_bounded_concurrency_and_a_timeout_per_host() -> None:
    FakeDriver.most = 0
    names = [f"n{i:02d}" for i in range(12)] + ["hang", "broken", "bug", "ghost"]
    targets = {n: secret(n) for n in names if n != "ghost"}
    start = time.monotonic()
    results = await run_power("on", names, targets, {"ghost": "no host named 'ghost'"}, concurrency=4,
                              timeout=1.0, factory=FakeDriver)
    took = time.monotonic() - start
    by = {r.host: r for r in results}
    assert [r.host for r in results] == names  # in the order asked
    assert all(by[f"n{i:02d}"].ok and by[f"n{i:02d}"].power == "on" for i in range(12))
    assert FakeDriver.most == 4
    assert by["hang"].error == "the BMC did not answer within 1 s"
    assert by["broken"].error == "the BMC said no"
    assert by["bug"].error == "KeyError: 'oops'"
    assert by["ghost"].error == "no host named 'ghost'"
    # 15 hosts by 4 (two 0.2 s calls each), the hanging one costing its own 1 s only
    assert took < 2.5, took


async def test_cycle_of_a_machine_that_is_off_powers_it_on() -> None:
    results = await run_power("pxe-cycle", ["n1"], {"n1": secret("n1")}, {}, concurrency=1, timeout=5,
                              factory=FakeDriver)
    assert results[0].ok and results[0].power == "on"


def test_bmc_addresses() -> None:
    a = parse_bmc_address("ipmi://10.1.0.7")
    assert (a.kind, a.host, a.port) == ("ipmi", "10.1.0.7", 623)
    r = parse_bmc_address("redfish://bmc7.example:8443")
    assert (r.kind, r.port, r.tls, r.base_url) == ("redfish", 8443, True, "https://bmc7.example:8443")
    assert parse_bmc_address("https://[fd00::7]").base_url == "https://[fd00::7]:443"
    assert parse_bmc_address("http://127.0.0.1:8000").tls is False
    for bad in ("telnet://x", "ipmi://admin:pw@10.1.0.7", "ipmi://10.1.0.7/path", "http://x", "ipmi://",
                "ipmi://x:99999"):
        with pytest.raises(Invalid):
            parse_bmc_address(bad)
    assert canonical_fingerprint("AB:" * 31 + "AB") == "ab" * 32
    with pytest.raises(Invalid):
        canonical_fingerprint("abcd")


def test_the_password_is_in_no_repr_or_view() -> None:
    assert "hunter2" not in repr(secret("n1"))
    view = BmcView.of(Bmc("n1", "ipmi://10.0.0.1", "admin", None, "on", None, 1.0))
    assert "password" not in view.__dataclass_fields__


def test_rmcp_presence_ping_and_pong() -> None:
    ping = presence_ping(7)
    assert ping == bytes.fromhex("0600ff06000011be80070000")
    pong = bytes.fromhex("0600ff06000011be40070010000011be0000000081000000000000")
    assert is_presence_pong(pong) and not is_presence_pong(ping) and not is_presence_pong(b"\x06\x00garbage")
