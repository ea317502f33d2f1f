"""One power action on many hosts: each host's BMC called with a timeout of its own, at most
`concurrency` at a time, so one slow, silent or wrong BMC costs its own host only."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence

from domain.power import PowerResult, parse_bmc_address
from services.power.driver import BmcFailure, PowerDriver
from services.power.ipmi import IpmiTool
from services.power.redfish import Redfish
from state.bmcs import BmcSecret
from state.eventlog import EventLog

log = EventLog("imageserver.power")
DriverFactory = Callable[[BmcSecret, float], PowerDriver]
POLL = 0.5  # how often an on/off is checked until the BMC says it is done


def driver_for(bmc: BmcSecret, timeout: float) -> PowerDriver:
    address = parse_bmc_address(bmc.address)
    if address.kind == "ipmi":
        return IpmiTool(bmc, address.host, address.port, timeout=timeout)
    return Redfish(bmc, address.base_url, tls=address.tls, timeout=timeout, system=address.system)


async def act(driver: PowerDriver, action: str, deadline: float) -> str | None:
    """Do `action`; the power state after it where known."""
    if action == "status":
        return await driver.power_status()
    if action in ("on", "off"):
        await (driver.power_on() if action == "on" else driver.power_off())
        return await _settled(driver, action, deadline)
    if action == "pxe":
        await driver.set_boot_pxe_once()
        return None
    if action in ("cycle", "pxe-cycle"):
        if action == "pxe-cycle":
            await driver.set_boot_pxe_once()
        if await driver.power_status() == "off":  # a BMC refuses to cycle a machine that is off
            await driver.power_on()
            return await _settled(driver, "on", deadline)
        await driver.power_cycle()
        return "on"
    raise BmcFailure(f"unknown action {action!r}")


async def _settled(driver: PowerDriver, want: str, deadline: float) -> str:
    """Wait until the BMC reports `want` (Redfish BMCs answer a reset before the power changes)."""
    while True:
        now = await driver.power_status()
        if now == want:
            return now
        if time.monotonic() + POLL >= deadline:
            raise BmcFailure(f"asked to power {want}, the BMC still reports {now}")
        await asyncio.sleep(POLL)


async def run_power(action: str, names: Sequence[str], targets: Mapping[str, BmcSecret],
                    refused: Mapping[str, str], *, concurrency: int, timeout: float,
                    factory: DriverFactory = driver_for) -> list[PowerResult]:
    """Per host in `names`: its result; a host in `refused` (no such host, no BMC) fails with that reason."""
    gate = asyncio.Semaphore(concurrency)
    begun = time.monotonic()

    async def one(name: str) -> PowerResult:
        if name in refused:
            return PowerResult(name, False, error=refused[name])
        async with gate:
            start = time.monotonic()
            started = round(start - begun, 3)
            try:
                driver = factory(targets[name], timeout)
            except (BmcFailure, ValueError) as e:
                return PowerResult(name, False, error=str(e))
            try:
                power = await asyncio.wait_for(act(driver, action, start + timeout), timeout)
                result = PowerResult(name, True, power=power, seconds=round(time.monotonic() - start, 3),
                                     started=started)
            except TimeoutError:
                result = PowerResult(name, False, error=f"the BMC did not answer within {timeout:g} s",
                                     seconds=round(time.monotonic() - start, 3), started=started)
            except BmcFailure as e:
                result = PowerResult(name, False, error=str(e), seconds=round(time.monotonic() - start, 3),
                                     started=started)
            except Exception as e:  # a driver's bug must not take the other hosts with it
                log.exception("power-driver-failed", action=action, host=name)
                result = PowerResult(name, False, error=f"{type(e).__name__}: {e}", started=started)
            finally:
                await driver.close()
        if result.ok:
            log.info("power-done", action=action, host=name, power=result.power or "-", seconds=result.seconds)
        else:
            log.warning("power-failed", action=action, host=name, error=result.error)
        return result

    return list(await asyncio.gather(*(one(n) for n in names)))
