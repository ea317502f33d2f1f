"""The one interface every BMC driver implements, and the error a BMC's refusal or silence becomes."""

from __future__ import annotations

from typing import Protocol


class BmcFailure(Exception):
    """The BMC refused, answered nonsense or could not be reached: the message is the host's error, for
    people (never with the password in it)."""


class PowerDriver(Protocol):
    async def power_status(self) -> str:
        """'on' or 'off'."""

    async def power_on(self) -> None: ...

    async def power_off(self) -> None: ...

    async def power_cycle(self) -> None:
        """Off and on again (the machine is on)."""

    async def set_boot_pxe_once(self) -> None:
        """The next boot, and only that one, is from the network."""

    async def close(self) -> None:
        """Release what the driver holds (a connection pool)."""
