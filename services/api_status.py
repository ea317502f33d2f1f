"""GET /api/v1/status (the daemon's status document, open, read-only), the OpenAPI document, and reload.

  GET  /api/v1/status        version, uptime, each service (state, listen, counters), counts
  GET  /api/v1/openapi.json  the API description (services/openapi.py)
  POST /api/v1/reload        re-read the config file, as SIGHUP does (admin token; 202)
Any other method on these paths is 405 (aiohttp answers it from the routing table).
"""

from __future__ import annotations

from dataclasses import replace

from aiohttp import web

from domain.responses import ReloadRequested
from domain.views import view_json
from services.api_context import API, require_token
from services.openapi import OPENAPI


async def status(request: web.Request) -> web.Response:
    ctx = request.app[API]
    out = ctx.status()  # a domain.status.Status document
    if ctx.live.torrents is not None:  # the BitTorrent side: seeders and swarm sizes
        transports = ctx.live.torrents.status()
        if ctx.live.multicast is not None:
            transports = replace(transports, available=[*transports.available, "multicast"])
        out["transports"] = transports.as_json()
    return web.json_response(out, headers={"Cache-Control": "no-store"})


async def openapi(request: web.Request) -> web.Response:
    return web.json_response(OPENAPI)


async def reload(request: web.Request) -> web.Response:
    ctx = request.app[API]
    require_token(request, ctx)
    ctx.request_reload()
    return web.json_response(view_json(ReloadRequested("requested")), status=202)


ROUTES = [
    web.get("/api/v1/status", status),
    web.get("/api/v1/openapi.json", openapi),
    web.post("/api/v1/reload", reload),
]
