"""Hosts as the operator sees them: state, install progress and timeline; add and reinstall.

  GET  /api/v1/hosts                  {"hosts": [...], "total", "offset", "limit", "next_offset"}: one page of
                                      hosts by name (?limit= default 100, at most 1000; ?offset=), each with
                                      its newest install's progress
  GET  /api/v1/hosts/{name}           one host: its row, address binding, progress and full timeline
  POST /api/v1/hosts                  {"name", "mac", "image"?, "ip"?, "version"?}: a new host (admin token)
  POST /api/v1/hosts/{name}/reinstall state assigned and a fresh install token (admin token): the next
                                      PXE boot installs again
JSON <-> domain.hosts. The install token is never shown: it is the installer's credential.
"""

from __future__ import annotations

import sqlite3

from aiohttp import web

from domain import hosts
from domain.errors import NotFound
from domain.paging import DEFAULT_LIMIT, Page
from services.api_context import API, json_body, require_token
from state.hostbook import AUTO_STATIC_DEFAULT

# A page of 100 hosts by default (the dashboard polls it every 2 s; a 10,000-host answer takes 100s of ms),
# up to 1,000 with ?limit=; `hosts` stays the list older clients read, with total and next_offset beside it.
HOSTS_PAGE = DEFAULT_LIMIT


async def list_hosts(request: web.Request) -> web.Response:
    ctx = request.app[API]
    page = hosts.list_hosts(ctx.sources(), Page.from_query(request.query, default=HOSTS_PAGE), ctx.clock())
    return web.json_response(page.as_json())


async def one_host(request: web.Request) -> web.Response:
    ctx = request.app[API]
    return web.json_response(hosts.show_host(ctx.sources(), request.match_info["name"], ctx.clock()).as_json())


async def add_host(request: web.Request) -> web.Response:
    ctx = request.app[API]
    require_token(request, ctx)
    req = hosts.AddHost.from_json(await json_body(request))
    settings = ctx.live.install
    op = hosts.add_host_op(ctx.sources(), req, ctx.clock(),
                           auto_static=settings.auto_static if settings is not None else AUTO_STATIC_DEFAULT)
    try:
        await ctx.store.journal.run(op)
    except sqlite3.IntegrityError as e:
        raise hosts.integrity_conflict(req, e) from None
    view = hosts.show_host(ctx.sources(), req.name, ctx.clock(), with_timeline=False)
    return web.json_response(view.as_json(), status=201)


async def reinstall(request: web.Request) -> web.Response:
    ctx = request.app[API]
    require_token(request, ctx)
    name = request.match_info["name"]
    if not await ctx.store.journal.run(hosts.reinstall_op(name, ctx.clock())):
        raise NotFound(f"no host named {name!r}")
    return web.json_response(hosts.show_host(ctx.sources(), name, ctx.clock(), with_timeline=False).as_json())


ROUTES = [
    web.get("/api/v1/hosts", list_hosts),
    web.post("/api/v1/hosts", add_host),
    web.get("/api/v1/hosts/{name}", one_host),
    web.post("/api/v1/hosts/{name}/reinstall", reinstall),
]
