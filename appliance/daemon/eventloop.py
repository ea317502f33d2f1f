"""The event loop the daemon runs on: asyncio's own by default, uvloop when asked for.

uvloop's loop turns and socket callbacks are compiled: less CPU per datagram for TFTP and DNS (bench/tftp.py
lock-step: ~35 % less CPU per MiB). But it implements no loop.sendfile, so aiohttp serves boot files through
userspace copies and HTTP throughput drops to about a third (bench/http.py): for a boot storm, whose bytes
are mostly kernels and initrds over HTTP, that loses more than the datagrams gain. Hence the default.

`[appliance] event_loop`: "asyncio" (default), "uvloop" (required: refuse to start without it), "auto"
(uvloop if importable). The environment variable IMAGESERVER_EVENT_LOOP, when set, wins over the file
(tests, benches).
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
