"""The primary's side of satellites: what a satellite reads and where it reports, by its own token.

  GET  /satellite/v1/config    image versions (with their disk layouts), hosts (MAC, address, image,
                               state) and the rsync module/user to mirror trees from; read-only
  POST /satellite/v1/reports   {"events": [...], "versions": [...], "backlog": N}: the satellite's buffered
                               install reports, applied in order, each once; answers {"delivered": id}

Both need the bearer <satellite token> (`imageserver satellites add NAME` printed it;
only its hash is stored). Outside /api/ on purpose: `[http] admin_networks` limits admin reads to the
operator's networks, and a satellite sits in another rack. The config lists MACs and addresses (what an
admin read shows) and no secrets: no install tokens, no rsync passwords of hosts.
"""

from __future__ import annotations

from aiohttp import web

from domain import satellites as satellite_cases
from domain.errors import Invalid
from domain.requests import NewSatellite, SatelliteReports
from domain.satellites import (
    ReportsReceipt,
    SatelliteAdded,
    SatelliteConfig,
    SatelliteRemoved,
    satellite_config,
)
from services.auth import Auth
from services.routes import Call, Param, Route, error, ok
from state import satellites
from state.eventlog import EventLog

log = EventLog("imageserver.satellite")

CONFIG_PATH = "/satellite/v1/config"
REPORTS_PATH = "/satellite/v1/reports"
MAX_HOSTS = 100_000  # the config document's cap (a primary with more hosts than this needs paging first)


async def config(call: Call[None]) -> web.Response:
    ctx, name = call.ctx, call.caller.name
    assert name is not None  # a SATELLITE route's caller is the satellite
    await ctx.store.journal.run(satellites.contact_op(name, ctx.clock(), call.request.remote, None, None))
    document = satellite_config(ctx.store.reader, name, MAX_HOSTS, ctx.live.install_settings().rsync_port)
    return call.answer(document, headers={"Cache-Control": "no-store"})


async def reports(call: Call[SatelliteReports]) -> ReportsReceipt:
    ctx, name = call.ctx, call.caller.name
    assert name is not None
    body = await call.body()
    if len(body.events) > satellites.MAX_EVENTS_PER_REPORT:
        raise Invalid(f'"events" must be a list of at most {satellites.MAX_EVENTS_PER_REPORT}')
    versions, backlog = body.versions, body.backlog
    if versions is not None and not (len(versions) <= 1000 and all(len(v) <= 80 for v in versions)):
        raise Invalid('"versions" must be a list of module names')
    if backlog is not None and backlog < 0:
        raise Invalid('"backlog" must be a count')
    now = ctx.clock()
    applied, dropped, last = await ctx.store.journal.run(satellite_cases.reports_op(name, body.events))
    await ctx.store.journal.run(satellites.contact_op(name, now, call.request.remote, versions, backlog))
    if applied or dropped:
        log.info("satellite-reports", satellite=name, applied=applied, dropped=dropped, delivered=last,
                 backlog=backlog)
    return ReportsReceipt(delivered=last, applied=applied, dropped=dropped)


async def add(call: Call[NewSatellite]) -> SatelliteAdded:
    ctx = call.ctx
    body = await call.body()
    token = await ctx.store.journal.run(satellite_cases.add_op(body.name, ctx.clock()))
    log.info("satellite-added", satellite=body.name)
    return SatelliteAdded(name=body.name, token=token)


async def remove(call: Call[None]) -> SatelliteRemoved:
    ctx = call.ctx
    name = call.request.match_info["name"]
    await ctx.store.journal.run(satellite_cases.remove_op(name))
    log.info("satellite-removed", satellite=name)
    return SatelliteRemoved(removed=name)


ROUTES = [
    Route("GET", CONFIG_PATH, config,
          "What a satellite mirrors: image versions (with disk layouts and their tree in the satellite rsync "
          "module), hosts (MAC, address, image, version, state), the rsync module and user; read-only, no secrets",
          {200: ok("the config document", SatelliteConfig)}, auth=Auth.SATELLITE),
    Route("POST", REPORTS_PATH, reports,
          "A satellite's buffered install reports, applied in order and each once (ids at or below the last "
          "applied are replays); also its versions and backlog for /api/v1/status",
          {200: ok("the last applied id, and how many were applied and dropped", ReportsReceipt),
           400: error("a malformed batch (nothing applied)")},
          auth=Auth.SATELLITE, body=SatelliteReports, unknown="ignore"),
    Route("POST", "/api/v1/satellites", add,
          "A new satellite (name: 1-31 lower-case letters, digits, '-'); its token is in this answer only (the "
          "primary keeps its hash)",
          {201: ok("the satellite and its token", SatelliteAdded), 400: error("a malformed name"),
           409: error("a satellite of that name exists, or there are as many as allowed")},
          auth=Auth.ADMIN, body=NewSatellite),
    Route("DELETE", "/api/v1/satellites/{name}", remove, "Forget a satellite: its token stops working at once",
          {200: ok("removed", SatelliteRemoved), 404: error("no satellite of that name")},
          auth=Auth.ADMIN, params={"name": Param("the satellite's name")}),
]
