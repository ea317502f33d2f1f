"""What the HTTP routes share: the store, the live models (services.live), and the admin token.

Routes are declared once each (services/routes.py `Route`), in `services/api_<domain>.py` modules exposing
`ROUTES`; their handlers get a `Call` whose `ctx` is the ApiContext found at `request.app[API]`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from domain.sources import Sources
from services.live import Live
from state.leases import LeaseModel
from state.store import Store

__all__ = ["API", "ApiContext", "Live"]


@dataclass(slots=True)
class ApiContext:
    store: Store
    admin_token: str
    clock: Callable[[], float] = time.time
    live: Live = field(default_factory=Live)
    status: Callable[[], dict[str, Any]] = lambda: {}
    # Asks the daemon to re-read its config (what SIGHUP does).
    request_reload: Callable[[], None] = lambda: None
    # A new admin token file (the old one was seen in clear: services/auth.py); returns the new token.
    replace_admin_token: Callable[[], str] | None = None

    def sources(self) -> Sources:
        """What the use cases read, now."""
        boot = self.live.boot
        return Sources(self.store.reader, leases=self.live.leases, machines=self.live.machines,
                       boot_policy=boot.settings.policy if boot is not None else None, progress=self.live.progress,
                       image_problem=self.live.image_problem)


    def lease_book(self) -> LeaseModel:
        """The live lease book, or 503 while the DHCP service has not loaded it."""
        if self.live.leases is None:
            raise web.HTTPServiceUnavailable(text='{"error": "the lease book is not loaded"}',
                                             content_type="application/json")
        return self.live.leases


API = web.AppKey("api", ApiContext)
