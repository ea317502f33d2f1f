"""What the admin/status API route modules share: the store, the token check, JSON errors.

Route modules are `services/api_<domain>.py`, each exposing `routes(ctx: ApiContext) -> list[web.RouteDef]`;
the HTTP service mounts the ones the appliance hands it. GET routes are read-only and open;
every mutating route calls `require_token` first.
"""

from __future__ import annotations

import hmac
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from services.jsonbody import MAX_BYTES, BodyError, parse_json
from state.store import Store


@dataclass(slots=True)
class ApiContext:
    store: Store
    admin_token: str
    clock: Callable[[], float] = time.time
    # Live models shared with other services (e.g. "leases": the DHCP lease book), by name.
    models: dict[str, Any] = field(default_factory=dict)
    status: Callable[[], dict[str, Any]] = lambda: {}
    # Asks the daemon to re-read its config (what SIGHUP does).
    request_reload: Callable[[], None] = lambda: None


def json_error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


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
