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
The host settings (pools, auto_static, own address, domain) come from ctx.live.hostbook (services.live.HostSettings).
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable

from aiohttp import web

from domain.errors import Conflict, Invalid, NotFound
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
from services.api_context import ApiContext
from services.auth import Auth
from services.routes import Call, Route, error, ok, text
from state.addclients import AddclientsRequest, PlanError
from state.hostbook import HostBook, addclients
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
from state.lease_validators import LeaseError


def _book(ctx: ApiContext) -> HostBook:
    s = ctx.live.host_settings()
    return HostBook(ctx.store.reader, ctx.lease_book(), pools=s.pools, auto_static=s.auto_static,
                    image_problem=ctx.live.image_problem)


async def _write(ctx: ApiContext, ops: list[Op]) -> None:
    # One batch: every row of the change commits together, then leases written alongside are durable too.
    futures = [ctx.store.journal.submit(op) for op in ops]
    await asyncio.gather(*futures)
    await ctx.store.journal.flush()


async def patch_host(call: Call[HostChange]) -> HostChanged:
    ctx = call.ctx
    await call.body()  # the shape; the keys given are what changes (null clears)
    body = await call.raw()
    name = call.request.match_info["name"]
    return await _apply(ctx, f"host {name}", lambda book: book.update(name, body, ctx.clock()))


async def _apply(ctx: ApiContext, what: str, change: Callable[[HostBook], tuple[Host, Op]]) -> HostChanged:
    """One host edit: the book checks it (400 malformed, 404/409 by the error's kind), then its row is
    written (409 if a concurrent edit made it clash); the answer is the host as stored."""
    try:
        host, op = change(_book(ctx))
    except HostError as e:
        raise from_host_error(e) from None
    except ValueError as e:
        raise Invalid(str(e)) from None
    try:
        await _write(ctx, [op])
    except sqlite3.IntegrityError as e:
        raise Conflict(f"{what}: {e}") from None
    return HostChanged(HostRecord.of(host_by_name(ctx.store.reader, host.name) or host))


async def delete_host(call: Call[None]) -> HostChanged:
    ctx = call.ctx
    name = call.request.match_info["name"]
    try:
        host, op = _book(ctx).remove(name)
    except HostError as e:
        raise NotFound(str(e)) from None
    await _write(ctx, [op])
    discovery = ctx.live.discovery
    if host.mac is not None and discovery is not None:
        discovery.forget(host.mac)  # policy auto may make the machine a host again
    return HostChanged(HostRecord.of(host))


async def get_script(call: Call[None]) -> HostScript | OwnScript:
    ctx = call.ctx
    name = call.request.match_info["name"]
    host = host_by_name(ctx.store.reader, name)
    if host is None:
        raise NotFound(f"no host named {name!r}")
    own = host_script(ctx.store.reader, name)
    if own and "\n" in own:
        return OwnScript(own, True)
    if not own and host.image is None:  # no image, no script (not a file named "None.master")
        return HostScript(None, False, None)
    file_name = own or f"{host.image}.master"
    if "/" in file_name or file_name.startswith(".") or (not own and image_name_problem(host.image)):
        # A row written before image names were checked must not read a file outside scripts/.
        raise Conflict(f"host {name}: script file {file_name!r} is not a plain name under scripts/")
    master = ctx.store.state_dir / "scripts" / file_name
    text = master.read_text(errors="replace") if host.image and master.is_file() else None
    return HostScript(text, bool(own), str(master))


async def put_script(call: Call[ScriptBody]) -> ScriptStored:
    ctx = call.ctx
    name = call.request.match_info["name"]
    script = (await call.body()).script
    if script is not None and "\n" not in script.strip("\n") + "\n":
        raise Invalid('"script" must be the script text or null')
    if host_by_name(ctx.store.reader, name) is None:
        raise NotFound(f"no host named {name!r}")
    await _write(ctx, [update_host_op(name, {"script": script or None}, ctx.clock())])
    return ScriptStored(name, bool(script))


async def post_addclients(call: Call[AddclientsBody]) -> web.Response | AddclientsAnswer:
    ctx = call.ctx
    dry_run = bool((await call.body()).dry_run)
    body = dict(await call.raw())
    body.pop("dry_run", None)
    try:
        req = AddclientsRequest.from_dict(body)
        plan, ops = addclients(_book(ctx), req, ctx.clock(), dry_run=dry_run,
                               own=ctx.live.host_settings().own_addresses)
    except ImageNameError as e:
        raise Invalid(str(e)) from None
    except PlanError as e:
        return call.answer(AddclientsClash(str(e), list(e.problems)), status=409)
    except (HostError, LeaseError) as e:
        raise Conflict(str(e)) from None
    try:
        await _write(ctx, ops)
    except sqlite3.IntegrityError as e:
        raise Conflict(f"addclients: {e}") from None
    return AddclientsAnswer.of(plan, dry_run)


async def assign(call: Call[AssignBody]) -> HostChanged:
    ctx = call.ctx
    body = await call.body()
    name = body.host
    if (name is None) == (not body.next):
        raise Invalid('give either {"host": NAME} or {"next": true}')
    mac = call.request.match_info["mac"]
    return await _apply(ctx, "assign", lambda book: book.assign(mac, name, ctx.clock()))


async def etc_hosts(call: Call[None]) -> web.Response:
    ctx = call.ctx
    text = hosts_file(list_hosts(ctx.store.reader), ctx.live.host_settings().domain)
    return web.Response(text=text, content_type="text/plain", headers={"Cache-Control": "no-store"})


ROUTES = [
    Route("PATCH", "/api/v1/hosts/{name}", patch_host,
          'Change a host: MAC, address, image, version, state (null or "" clears). A host with a MAC and an address '
          "gets its reservation at once; with [dhcp] auto_static the machine's lease becomes its reservation on "
          "assignment (on-assign) or when it is installed (on-install)",
          {200: ok("the host", HostChanged), 400: error("malformed input"), 404: error("no such host"),
           409: error("refused: the address or MAC is another's, inside a pool, or the state change is not allowed")},
          auth=Auth.OPERATOR, body=HostChange),
    Route("DELETE", "/api/v1/hosts/{name}", delete_host, "Remove a host and its reservation",
          {200: ok("the host", HostChanged), 404: error("no such host")}, auth=Auth.OPERATOR),
    Route("GET", "/api/v1/hosts/{name}/script", get_script,
          "The host's autoinstall script: its own copy if it has one, else its image's NAME.master",
          {200: ok("the script", (HostScript, OwnScript)), 404: error("no such host"),
           409: error("the host's script file is not a plain name under scripts/ (a row from before image names "
                      "were checked)")}, auth=Auth.READER),
    Route("PUT", "/api/v1/hosts/{name}/script", put_script,
          "Set the host's own copy of its autoinstall script (null: use the image's again)",
          {200: ok("stored", ScriptStored), 400: error("not a script"), 404: error("no such host")},
          auth=Auth.ADMIN, body=ScriptBody),
    Route("POST", "/api/v1/addclients", post_addclients,
          "addclients: hosts BASE+n for n in a range, addresses from first_ip upward (outside every pool), MACs in "
          "order or by name; idempotent; dry_run only plans",
          {200: ok("the plan: every host with action create, update or keep", AddclientsAnswer),
           400: error("an image name that is not one (e.g. ../../x)"),
           409: ok("clashes, each naming both sides", AddclientsClash)},
          auth=Auth.OPERATOR, body=AddclientsBody),
    Route("POST", "/api/v1/machines/{mac}/assign", assign,
          'Make a seen machine a host: {"host": NAME} or {"next": true} (the first host of an addclients range '
          "without a MAC); it installs at its next boot",
          {200: ok("the host", HostChanged), 400: error("neither host nor next, or a bad MAC"),
           404: error("no such host"), 409: error("the machine is another host already, or the host has another MAC")},
          auth=Auth.OPERATOR, body=AssignBody),
    Route("GET", "/hosts", etc_hosts, "/etc/hosts lines (IP, name.domain, name) for every host with an address",
          {200: text("hosts file")}, auth=Auth.READER),
]
