"""The event loop the daemon runs on: uvloop when it is installed (its loop turns and socket callbacks are
compiled: less CPU per datagram for DHCP, TFTP and DNS), asyncio's own otherwise or when asked for.

`[appliance] event_loop`: "auto" (uvloop if importable), "uvloop" (required: refuse to start without it),
"asyncio". The environment variable IMAGESERVER_EVENT_LOOP, when set, wins over the file (tests, benches).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable

ENV = "IMAGESERVER_EVENT_LOOP"
CHOICES = ("auto", "uvloop", "asyncio")


class EventLoopUnavailable(RuntimeError):
    """uvloop was required and is not installed."""


def loop_factory(choice: str) -> tuple[str, Callable[[], asyncio.AbstractEventLoop]]:
    """(the loop's name, a factory for it) for a configured choice; the environment overrides it."""
    choice = os.environ.get(ENV) or choice
    if choice not in CHOICES:
        raise EventLoopUnavailable(f"event loop {choice!r}: expected one of {', '.join(CHOICES)}")
    if choice != "asyncio":
        try:
            import uvloop
        except ImportError:
            if choice == "uvloop":
                raise EventLoopUnavailable("event_loop = \"uvloop\" but uvloop is not installed "
                                           "(pip install uvloop, or apt-get install python3-uvloop)") from None
        else:
            return "uvloop", uvloop.new_event_loop
    return "asyncio", asyncio.new_event_loop


def running_loop_name() -> str:
    """"uvloop" or "asyncio": what the current thread's running loop is (for the start log and status)."""
    return "uvloop" if type(asyncio.get_running_loop()).__module__.startswith("uvloop") else "asyncio"
