"""What the admin/status API route modules share: the store, the live models, the token check, JSON errors.

Route modules are `services/api_<domain>.py`, each exposing `ROUTES`: module-level handlers that find the
ApiContext at `request.app[API]` (JSON <-> a call); the HTTP service mounts the ones the appliance hands
it. GET routes are read-only and open; every mutating route calls `require_token` first. A handler raises
domain errors (domain.errors); `domain_error_response` is the one place they become HTTP statuses.
"""

from __future__ import annotations

import hmac
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import web

from domain.errors import Conflict, DomainError, Forbidden, Invalid, NotFound, Unauthorized
from domain.responses import Error
from domain.sources import Sources
from domain.views import view_json
from services.jsonbody import MAX_BYTES, BodyError, parse_json
from state.installs import LiveProgress
from state.installstats import InstallTally
from state.lease_pools import PoolSpec
from state.leases import LeaseModel
from state.sightings import MachineLog
from state.store import Store

if TYPE_CHECKING:  # (these modules import this one)
    from ipaddress import IPv4Network

    from services.api_client_scripts import ClientScripts
    from services.api_hostadmin import HostSettings
    from services.api_install import InstallSettings
    from services.bootresponder import BootResponder
    from services.discovery import Discovery
    from services.multicast import MulticastService
    from services.torrents import Torrents
    from state.credentials import RsyncGrants


@dataclass(slots=True)
class Live:
    """The daemon's live models and settings shared by services and the API (one object, typed fields);
    the daemon replaces a setting on SIGHUP and every reader sees the new one."""

    leases: LeaseModel | None = None  # the DHCP lease book
    machines: MachineLog | None = None  # machines seen on the wire
    boot: BootResponder | None = None  # what a machine boots
    discovery: Discovery | None = None
    install: InstallSettings | None = None  # what install scripts say about the network
    hostbook: HostSettings | None = None  # what host changes check against
    admin_networks: tuple[IPv4Network, ...] = ()
    pools: tuple[PoolSpec, ...] = ()
    client_scripts: ClientScripts | None = None
    progress: LiveProgress = field(default_factory=LiveProgress)  # installers' newest byte counts
    installs: InstallTally = field(default_factory=InstallTally)  # /metrics: outcomes and durations
    rsync_grants: RsyncGrants | None = None
    rsync_refresh: Callable[[], None] | None = None
    multicast: MulticastService | None = None  # udpcast sessions ([multicast] enabled)
    image_problem: Callable[[str, int | None], str | None] | None = None  # getimage's installability rule
    torrents: Torrents | None = None  # BitTorrent: built torrents, seeders, swarms (services/torrents.py)


@dataclass(slots=True)
class ApiContext:
    store: Store
    admin_token: str
    clock: Callable[[], float] = time.time
    live: Live = field(default_factory=Live)
    status: Callable[[], dict[str, Any]] = lambda: {}
    # Asks the daemon to re-read its config (what SIGHUP does).
    request_reload: Callable[[], None] = lambda: None


    def sources(self) -> Sources:
        """What the use cases read, now."""
        boot = self.live.boot
        return Sources(self.store.reader, leases=self.live.leases, machines=self.live.machines,
                       boot_policy=boot.settings.policy if boot is not None else None, progress=self.live.progress,
                       image_problem=self.live.image_problem)


API = web.AppKey("api", ApiContext)

# The one mapping of domain errors to HTTP statuses.
_STATUS: tuple[tuple[type[DomainError], int], ...] = (
    (Invalid, 400), (Unauthorized, 401), (Forbidden, 403), (NotFound, 404), (Conflict, 409))


def domain_error_response(error: DomainError) -> web.Response:
    status = next((code for kind, code in _STATUS if isinstance(error, kind)), 400)
    response = json_error(status, str(error))
    if isinstance(error, Unauthorized):
        response.headers["WWW-Authenticate"] = error.challenge
    return response


def json_error(status: int, message: str) -> web.Response:
    return web.json_response(view_json(Error(message)), status=status)


def require_token(request: web.Request, ctx: ApiContext) -> None:
    """Raise 401 unless the request carries `Authorization: Bearer <admin token>`."""
    header = request.headers.get("Authorization", "")
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), ctx.admin_token.encode()):
        raise web.HTTPUnauthorized(
            text='{"error": "this endpoint needs the admin token: Authorization: Bearer <state_dir/admin.token>"}',
            content_type="application/json",
            headers={"WWW-Authenticate": 'Bearer realm="imageserver"'},
        )


async def json_body(request: web.Request) -> dict[str, Any]:
    """The request's JSON object, or a 400 that says what is wrong with it (too big, too deep, not JSON)."""
    try:
        if request.content_length is not None and request.content_length > MAX_BYTES:
            raise BodyError(f"body is larger than {MAX_BYTES} bytes")
        # Read at most one byte past the cap (a chunked body has no length to check first).
        raw = await request.content.read(MAX_BYTES + 1)
        while len(raw) <= MAX_BYTES and not request.content.at_eof():
            more = await request.content.read(MAX_BYTES + 1 - len(raw))
            if not more:
                break
            raw += more
        body = parse_json(raw)
    except BodyError as e:
        raise web.HTTPBadRequest(text=json.dumps({"error": str(e)}), content_type="application/json") from None
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(text='{"error": "body must be a JSON object"}', content_type="application/json")
    return body
