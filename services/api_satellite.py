"""The primary's side of satellites: what a satellite reads and where it reports, by its own token.

  GET  /satellite/v1/config    image versions (with their disk layouts), hosts (MAC, address, image,
                               state) and the rsync module/user to mirror trees from; read-only
  POST /satellite/v1/reports   {"events": [...], "versions": [...], "backlog": N}: the satellite's buffered
                               install reports, applied in order, each once; answers {"delivered": id}

Both need `Authorization: Bearer <satellite token>` (`imageserver satellites add NAME` printed it;
only its hash is stored). Outside /api/ on purpose: `[http] admin_networks` limits admin reads to the
operator's networks, and a satellite sits in another rack. The config lists MACs and addresses (what an
admin read shows) and no secrets: no install tokens, no rsync passwords of hosts.
"""

from __future__ import annotations

from dataclasses import asdict

from aiohttp import web

from domain.bodies import parse_body
from domain.requests import NewSatellite, SatelliteReports
from domain.satellites import ReportsReceipt, SatelliteAdded, SatelliteRemoved, satellite_config
from services.api_context import API, ApiContext, json_body, json_error, require_token
from services.api_install import own_auth
from state import satellites
from state.eventlog import EventLog

log = EventLog("imageserver.satellite")

CONFIG_PATH = "/satellite/v1/config"
REPORTS_PATH = "/satellite/v1/reports"
MAX_HOSTS = 100_000  # the config document's cap (a primary with more hosts than this needs paging first)


def _satellite(ctx: ApiContext, request: web.Request) -> str:
    header = request.headers.get("Authorization", "")
    scheme, _, given = header.partition(" ")
    name = satellites.authenticate(ctx.store.reader, given.strip()) if scheme.lower() == "bearer" else None
    if name is None:
        raise web.HTTPUnauthorized(text='{"error": "this endpoint needs a satellite token: Authorization: '
                                        'Bearer <token from imageserver satellites add NAME>"}',
                                   content_type="application/json",
                                   headers={"WWW-Authenticate": 'Bearer realm="imageserver-satellite"'})
    return name


async def config(request: web.Request) -> web.Response:
    ctx = request.app[API]
    name = _satellite(ctx, request)
    await ctx.store.journal.run(satellites.contact_op(name, ctx.clock(), request.remote, None, None))
    document = satellite_config(ctx.store.reader, name, MAX_HOSTS, getattr(ctx.live.install, "rsync_port", 873))
    return web.json_response(document.as_json(), headers={"Cache-Control": "no-store"})


@own_auth
async def reports(request: web.Request) -> web.Response:
    ctx = request.app[API]
    name = _satellite(ctx, request)
    body = parse_body(SatelliteReports, await json_body(request), unknown="ignore")
    if len(body.events) > satellites.MAX_EVENTS_PER_REPORT:
        return json_error(400, f'"events" must be a list of at most {satellites.MAX_EVENTS_PER_REPORT}')
    versions, backlog = body.versions, body.backlog
    if versions is not None and not (len(versions) <= 1000 and all(len(v) <= 80 for v in versions)):
        return json_error(400, '"versions" must be a list of module names')
    if backlog is not None and backlog < 0:
        return json_error(400, '"backlog" must be a count')
    events = [asdict(e) for e in body.events]
    now = ctx.clock()
    try:
        applied, dropped, last = await ctx.store.journal.run(satellites.apply_reports_op(name, events, now))
    except satellites.SatelliteError as e:
        return json_error(400, str(e))
    await ctx.store.journal.run(satellites.contact_op(name, now, request.remote, versions, backlog))
    if applied or dropped:
        log.info("satellite-reports", satellite=name, applied=applied, dropped=dropped, delivered=last,
                 backlog=backlog)
    return web.json_response(ReportsReceipt(delivered=last, applied=applied, dropped=dropped).as_json())


async def add(request: web.Request) -> web.Response:
    ctx = request.app[API]
    require_token(request, ctx)
    body = parse_body(NewSatellite, await json_body(request))
    try:
        token = await ctx.store.journal.run(satellites.add_op(body.name, ctx.clock()))
    except satellites.SatelliteError as e:
        return json_error(400 if "satellite name" in str(e) else 409, str(e))
    log.info("satellite-added", satellite=body.name)
    return web.json_response(SatelliteAdded(name=body.name, token=token).as_json(), status=201)


async def remove(request: web.Request) -> web.Response:
    ctx = request.app[API]
    require_token(request, ctx)
    name = request.match_info["name"]
    if not await ctx.store.journal.run(satellites.remove_op(name)):
        return json_error(404, f"no satellite named {name}")
    log.info("satellite-removed", satellite=name)
    return web.json_response(SatelliteRemoved(removed=name).as_json())


ROUTES = [web.get(CONFIG_PATH, config), web.post(REPORTS_PATH, reports),
          web.post("/api/v1/satellites", add), web.delete("/api/v1/satellites/{name}", remove)]
