"""GET /api/v1/machines: every machine seen on the wire, with its host (if any) and what it boots now.

  GET /api/v1/machines         {"machines": [...], "total", "offset", "limit", "next_offset"}, most
                               recently seen first, one page: ?limit= (default 100, at most 1000),
                               ?offset= (next_offset of the page before; null on the last page),
                               ?unknown=1 only machines that are no host (what waits for an assignment)
  GET /api/v1/machines/{mac}   one machine (any MAC spelling), with the boot decision's reason; 404
                               if the MAC was never seen and is no host's
JSON <-> domain.machines; machines come from the live MachineLog when the daemon has one, else the store.
"""

from __future__ import annotations

from aiohttp import web

from domain import machines
from domain.paging import DEFAULT_LIMIT, MAX_LIMIT, Page, flag
from services.api_context import API

__all__ = ["DEFAULT_LIMIT", "MAX_LIMIT", "ROUTES"]


async def list_machines(request: web.Request) -> web.Response:
    ctx = request.app[API]
    page = machines.list_machines(ctx.sources(), Page.from_query(request.query),
                                  unknown_only=flag(request.query, "unknown"))
    return web.json_response(page.as_json())


async def one_machine(request: web.Request) -> web.Response:
    ctx = request.app[API]
    return web.json_response(machines.show_machine(ctx.sources(), request.match_info["mac"]).as_json())


ROUTES = [
    web.get("/api/v1/machines", list_machines),
    web.get("/api/v1/machines/{mac}", one_machine),
]
