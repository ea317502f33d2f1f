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

from domain import hosts
from domain.errors import NotFound
from domain.hostbook import AUTO_STATIC_DEFAULT
from domain.hosts import AddHost, HostPage, HostView
from domain.paging import DEFAULT_LIMIT, Page
from services.auth import Auth
from services.routes import PAGING, Call, Route, error, ok
from state.hosts import HostClash

# A page of 100 hosts by default (the dashboard polls it every 2 s; a 10,000-host answer takes 100s of ms),
# up to 1,000 with ?limit=; `hosts` stays the list older clients read, with total and next_offset beside it.
HOSTS_PAGE = DEFAULT_LIMIT


async def list_hosts(call: Call[None]) -> HostPage:
    ctx = call.ctx
    return hosts.list_hosts(ctx.sources(), Page.from_query(call.request.query, default=HOSTS_PAGE), ctx.clock())


async def one_host(call: Call[None]) -> HostView:
    ctx = call.ctx
    return hosts.show_host(ctx.sources(), call.request.match_info["name"], ctx.clock())


async def add_host(call: Call[AddHost]) -> HostView:
    ctx = call.ctx
    req = AddHost.from_json(await call.raw())  # checked and canonical: MAC spelling, lower-case name
    settings = ctx.live.install
    op = hosts.add_host_op(ctx.sources(), req, ctx.clock(),
                           auto_static=settings.auto_static if settings is not None else AUTO_STATIC_DEFAULT)
    try:
        await ctx.store.journal.run(op)
    except HostClash as e:
        raise hosts.integrity_conflict(req, e) from None
    return hosts.show_host(ctx.sources(), req.name, ctx.clock(), with_timeline=False)


async def reinstall(call: Call[None]) -> HostView:
    ctx = call.ctx
    name = call.request.match_info["name"]
    if not await ctx.store.journal.run(hosts.reinstall_op(name, ctx.clock())):
        raise NotFound(f"no host named {name!r}")
    return hosts.show_host(ctx.sources(), name, ctx.clock(), with_timeline=False)


ROUTES = [
    Route("GET", "/api/v1/hosts", list_hosts,
          "One page of hosts by name (default 100, ?limit= up to 1000, ?offset=), each with its state and its "
          "newest install's progress",
          {200: ok("one page of hosts", HostPage), 400: error("bad limit or offset")}, auth=Auth.READER,
          query=PAGING),
    Route("POST", "/api/v1/hosts", add_host,
          "Add a host (name, MAC, image, optional fixed address, profile); state assigned if it has an image (its "
          "own or its profile's)",
          {201: ok("the host", HostView), 400: error("malformed field"), 404: error("no profile of that name"),
           409: error("the name, MAC or address is taken")},
          auth=Auth.OPERATOR, body=AddHost),
    Route("GET", "/api/v1/hosts/{name}", one_host,
          "One host: state, address binding, boot decision, install progress and timeline",
          {200: ok("the host", HostView), 404: error("no such host")}, auth=Auth.READER),
    Route("POST", "/api/v1/hosts/{name}/reinstall", reinstall,
          "Install the host again at its next PXE boot (state assigned, fresh install token)",
          {200: ok("the host", HostView), 404: error("no such host")}, auth=Auth.OPERATOR),
]
