"""GET /api/v1/status (the daemon's status document, open, read-only), the OpenAPI document, and reload.

  GET  /api/v1/status        version, uptime, each service (state, listen, counters), counts; open, so it names
                             no machine (a satellite's address only to a token of any role)
  GET  /api/v1/openapi.json  the API description, generated from the routes this server mounts (reader)
  POST /api/v1/reload        re-read the config file, as SIGHUP does (admin role; 202)
Any other method on these paths is 405 (aiohttp answers it from the routing table).
"""

from __future__ import annotations

from dataclasses import replace

from aiohttp import web

from domain.responses import ReloadRequested
from domain.status import Status
from domain.views import view_json
from services.auth import Auth, may_read
from services.openapi import document
from services.routes import MOUNTED, Call, Route, ok


async def status(call: Call[None]) -> web.Response:
    ctx = call.ctx
    out = ctx.status()  # a domain.status.Status document
    if not may_read(call.request, ctx):
        # Open to the LAN: no address of any machine (a satellite's) without a token.
        out = {**out, "satellites": [{**sat, "address": None} for sat in out.get("satellites") or []]}
    if ctx.live.torrents is not None:  # the BitTorrent side: seeders and swarm sizes
        transports = ctx.live.torrents.status()
        if ctx.live.multicast is not None:
            transports = replace(transports, available=[*transports.available, "multicast"])
        out["transports"] = view_json(transports)
    return web.json_response(out, headers={"Cache-Control": "no-store"})


async def openapi(call: Call[None]) -> web.Response:
    mounted = call.request.app[MOUNTED]
    if "openapi" not in mounted.made:  # made once per application: the routes do not change while it runs
        mounted.made["openapi"] = document(mounted.routes)
    return web.json_response(mounted.made["openapi"])


async def reload(call: Call[None]) -> ReloadRequested:
    call.ctx.request_reload()
    return ReloadRequested("requested")


ROUTES = [
    Route("GET", "/api/v1/status", status,
          "The daemon's status: version, uptime, each service with state, listen and counters, and counts of "
          "leases, reservations, hosts, machines and images",
          {200: ok("the status document", Status)}),
    Route("GET", "/api/v1/openapi.json", openapi, "This document", {200: ok("OpenAPI 3 document", dict)},
          auth=Auth.READER),
    Route("POST", "/api/v1/reload", reload,
          "Re-read the configuration file (what SIGHUP does); a bad file is logged and ignored",
          {202: ok("reload requested", ReloadRequested)}, auth=Auth.ADMIN),
]
