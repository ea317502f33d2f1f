"""What the running daemon hands to the code that builds its services."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

from appliance.config import Config
from services.live import Live
from state.store import Store


def installed_version() -> str:
    """The version pyproject.toml gave the installed package: one source of truth, read from its metadata."""
    try:
        return metadata.version("imageserver")
    except metadata.PackageNotFoundError:  # run from a source tree that was never pip-installed
        return "0+unknown"


VERSION = installed_version()


# A checked change, ready to apply (possibly a coroutine: the boot files sync).
Apply = Callable[[], Awaitable[None] | None]


class ReconfigureError(Exception):
    """A service cannot take the re-read config; the message names the service and the problem."""

    def __init__(self, service: str, problem: str) -> None:
        super().__init__(f"{service}: {problem}")
        self.service = service


@dataclass(frozen=True, slots=True)
class Reconfigurer:
    """How one service takes a re-read config (SIGHUP). `prepare` checks the config and computes the
    service's new settings without changing anything (raising names the problem) and returns the change;
    the daemon applies the changes only after every service accepted: all or nothing."""

    service: str
    prepare: Callable[[Config], Apply]


@dataclass(slots=True)
class Runtime:
    config: Config
    store: Store
    admin_token: str
    clock: Callable[[], float] = time.time
    monotonic: Callable[[], float] = time.monotonic
    started_at: float = field(default_factory=time.time)
    # Filled by the daemon once services exist: the whole status document (for /api/v1/status).
    status: Callable[[], dict[str, Any]] = lambda: {}
    # Asks the daemon to re-read its config (what SIGHUP does), for the admin API.
    request_reload: Callable[[], None] = lambda: None
    # Live models and settings shared between services and the API (typed fields; the API reads the same object).
    live: Live = field(default_factory=Live)
    # One per running service (and for the shared live settings), registered by appliance.daemon.wiring.
    reconfigurers: list[Reconfigurer] = field(default_factory=list)
