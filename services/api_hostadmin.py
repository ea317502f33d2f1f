"""Editing hosts over the admin API, live: every change goes through state.hostbook on the live lease
book, so a host with a MAC and an address has its reservation before the answer is sent.

  PATCH  /api/v1/hosts/{name}           {"mac"?, "ip"?, "image"?, "version"?, "state"?, "transport"?} (null/"" clears)
  DELETE /api/v1/hosts/{name}           the host goes; so does its reservation
  GET    /api/v1/hosts/{name}/script    {"script", "override"}: the host's own autoinstall script, else its
                                        image's <state_dir>/scripts/<image>.master
  PUT    /api/v1/hosts/{name}/script    {"script": text | null}: set the host's own copy (null: back to the image's)
  POST   /api/v1/addclients             {"base", "range", "image"?, "version"?, "pad"?, "first_ip"?, "macs"?,
                                        "dry_run"?} -> {"plan": ...}; 409 lists every clash
  POST   /api/v1/machines/{mac}/assign  {"host": NAME} or {"next": true}: the machine becomes that host
  GET    /hosts                         /etc/hosts lines for every host with an address

Errors: 400 malformed input, 404 no such host, 409 refused (the reason names the clash).
The host settings (pools, auto_static, own address, domain) come from ctx.live.hostbook.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import IPv4Address

from aiohttp import web

from domain.bodies import parse_body
from domain.hostadmin import (
    AddclientsAnswer,
    AddclientsClash,
    HostChanged,
    HostRecord,
    HostScript,
    OwnScript,
    ScriptStored,
)
from domain.hosts import from_host_error
from domain.requests import AddclientsBody, AssignBody, HostChange, ScriptBody
from domain.views import view_json
from services.api_context import API, ApiContext, json_body, json_error, require_token
from state.addclients import AddclientsRequest, PlanError
from state.hostbook import AUTO_STATIC_DEFAULT, AutoStatic, HostBook, addclients
from state.hosts import (
    Host,
    HostError,
    Op,
    host_by_name,
    host_script,
    hosts_file,
    list_hosts,
    update_host_op,
)
from state.imagename import ImageNameError, image_name_problem
from state.lease_pools import SubnetLike
from state.lease_validators import LeaseError


@dataclass(frozen=True, slots=True)
class HostSettings:
    pools: tuple[SubnetLike, ...] = ()
    auto_static: AutoStatic = AUTO_STATIC_DEFAULT
    own_addresses: tuple[IPv4Address, ...] = ()
    domain: str | None = None


def _settings(ctx: ApiContext) -> HostSettings:
    s = ctx.live.hostbook
    return s if s is not None else HostSettings()


def _book(ctx: ApiContext) -> HostBook:
    leases = ctx.live.leases
    if leases is None:
        raise web.HTTPServiceUnavailable(text='{"error": "the lease book is not loaded"}',
                                         content_type="application/json")
    s = _settings(ctx)
    return HostBook(ctx.store.reader, leases, pools=s.pools, auto_static=s.auto_static,
                    image_problem=ctx.live.image_problem)


async def _write(ctx: ApiContext, ops: list[Op]) -> None:
    # One batch: every row of the change commits together, then leases written alongside are durable too.
    futures = [ctx.store.journal.submit(op) for op in ops]
    await asyncio.gather(*futures)
    await ctx.store.journal.flush()


async def patch_host(request: web.Request) -> web.Response:
    ctx = request.app[API]
    require_token(request, ctx)
    body = await json_body(request)
    parse_body(HostChange, body)  # the shape; the keys given are what changes (null clears)
    name = request.match_info["name"]
    return await _apply(ctx, f"host {name}", lambda book: book.update(name, body, ctx.clock()))


async def _apply(ctx: ApiContext, what: str, change: Callable[[HostBook], tuple[Host, Op]]) -> web.Response:
    """One host edit: the book checks it (400 malformed, 404/409 by the error's kind), then its row is
    written (409 if a concurrent edit made it clash); the answer is the host as stored."""
    try:
        host, op = change(_book(ctx))
    except HostError as e:
        raise from_host_error(e) from None
    except ValueError as e:
        return json_error(400, str(e))
    try:
        await _write(ctx, [op])
    except sqlite3.IntegrityError as e:
        return json_error(409, f"{what}: {e}")
    return web.json_response(view_json(HostChanged(HostRecord.of(host_by_name(ctx.store.reader, host.name) or host))))


async def delete_host(request: web.Request) -> web.Response:
    ctx = request.app[API]
    require_token(request, ctx)
    name = request.match_info["name"]
    try:
        host, op = _book(ctx).remove(name)
    except HostError as e:
        return json_error(404, str(e))
    await _write(ctx, [op])
    discovery = ctx.live.discovery
    if host.mac is not None and discovery is not None:
        discovery.forget(host.mac)  # policy auto may make the machine a host again
    return web.json_response(view_json(HostChanged(HostRecord.of(host))))


async def get_script(request: web.Request) -> web.Response:
    ctx = request.app[API]
    name = request.match_info["name"]
    host = host_by_name(ctx.store.reader, name)
    if host is None:
        return json_error(404, f"no host named {name!r}")
    own = host_script(ctx.store.reader, name)
    if own and "\n" in own:
        return web.json_response(view_json(OwnScript(own, True)))
    if not own and host.image is None:  # no image, no script (not a file named "None.master")
        return web.json_response(view_json(HostScript(None, False, None)))
    file_name = own or f"{host.image}.master"
    if "/" in file_name or file_name.startswith(".") or (not own and image_name_problem(host.image)):
        # A row written before image names were checked must not read a file outside scripts/.
        return json_error(409, f"host {name}: script file {file_name!r} is not a plain name under scripts/")
    master = ctx.store.state_dir / "scripts" / file_name
    text = master.read_text(errors="replace") if host.image and master.is_file() else None
    return web.json_response(view_json(HostScript(text, bool(own), str(master))))


async def put_script(request: web.Request) -> web.Response:
    ctx = request.app[API]
    require_token(request, ctx)
    name = request.match_info["name"]
    script = parse_body(ScriptBody, await json_body(request)).script
    if script is not None and "\n" not in script.strip("\n") + "\n":
        return json_error(400, '"script" must be the script text or null')
    if host_by_name(ctx.store.reader, name) is None:
        return json_error(404, f"no host named {name!r}")
    await _write(ctx, [update_host_op(name, {"script": script or None}, ctx.clock())])
    return web.json_response(view_json(ScriptStored(name, bool(script))))


async def post_addclients(request: web.Request) -> web.Response:
    ctx = request.app[API]
    require_token(request, ctx)
    body = await json_body(request)
    dry_run = bool(parse_body(AddclientsBody, body).dry_run)
    body.pop("dry_run", None)
    try:
        req = AddclientsRequest.from_dict(body)
        plan, ops = addclients(_book(ctx), req, ctx.clock(), dry_run=dry_run, own=_settings(ctx).own_addresses)
    except ImageNameError as e:
        return json_error(400, str(e))
    except PlanError as e:
        return web.json_response(view_json(AddclientsClash(str(e), list(e.problems))), status=409)
    except (HostError, LeaseError) as e:
        return json_error(409, str(e))
    try:
        await _write(ctx, ops)
    except sqlite3.IntegrityError as e:
        return json_error(409, f"addclients: {e}")
    return web.json_response(view_json(AddclientsAnswer.of(plan, dry_run)))


async def assign(request: web.Request) -> web.Response:
    ctx = request.app[API]
    require_token(request, ctx)
    body = parse_body(AssignBody, await json_body(request))
    name = body.host
    if (name is None) == (not body.next):
        return json_error(400, 'give either {"host": NAME} or {"next": true}')
    mac = request.match_info["mac"]
    return await _apply(ctx, "assign", lambda book: book.assign(mac, name, ctx.clock()))


async def etc_hosts(request: web.Request) -> web.Response:
    ctx = request.app[API]
    text = hosts_file(list_hosts(ctx.store.reader), _settings(ctx).domain)
    return web.Response(text=text, content_type="text/plain", headers={"Cache-Control": "no-store"})


ROUTES = [
    web.patch("/api/v1/hosts/{name}", patch_host),
    web.delete("/api/v1/hosts/{name}", delete_host),
    web.get("/api/v1/hosts/{name}/script", get_script),
    web.put("/api/v1/hosts/{name}/script", put_script),
    web.post("/api/v1/addclients", post_addclients),
    web.post("/api/v1/machines/{mac}/assign", assign),
    web.get("/hosts", etc_hosts),
]
