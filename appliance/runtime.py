"""What the running daemon hands to the code that builds its services."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from appliance.config import Config
from state.store import Store

VERSION = "0.1.0"


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
    # Live models shared between services and the API, by name ("machines", "boot", "leases", ...).
    models: dict[str, Any] = field(default_factory=dict)
