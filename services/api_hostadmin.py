"""Editing hosts over the admin API, live: every change is a use case of domain/hostadmin (the same the
offline CLI runs) over a HostBook on the live lease book, so a host with a MAC and an address has its
reservation before the answer is sent.

  PATCH  /api/v1/hosts/{name}           {"mac"?, "ip"?, "image"?, "version"?, "state"?, "transport"?} (null/"" clears)
  DELETE /api/v1/hosts/{name}           the host goes; so does its reservation
  GET    /api/v1/hosts/{name}/script    {"script", "override"}: the host's own autoinstall script, else its
                                        image's <state_dir>/scripts/<image>.master
  PUT    /api/v1/hosts/{name}/script    {"script": text | null}: set the host's own copy (null: back to the image's)
  POST   /api/v1/addclients             {"base", "range", "image"?, "version"?, "pad"?, "first_ip"?, "macs"?,
                                        "profile"?, "dry_run"?} -> {"plan": ...}; 409 lists every clash
  POST   /api/v1/machines/{mac}/assign  {"host": NAME} or {"next": true}: the machine becomes that host
  GET    /hosts                         /etc/hosts lines for every host with an address

Errors: 400 malformed input, 404 no such host, 409 refused (the reason names the clash).
The host settings (pools, auto_static, own address, domain) come from ctx.live.hostbook (services.live.HostSettings).
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from domain import hostadmin
from domain.errors import Invalid
from domain.hostadmin import (
    AddclientsAnswer,
    AddclientsClash,
    Clashes,
    HostChanged,
    HostRecord,
    HostScript,
    OwnScript,
    ScriptStored,
)
from domain.hostbook import HostBook
from domain.hostsfile import hosts_file
from domain.requests import AddclientsBody, AssignBody, HostChange, ScriptBody
from services.api_context import ApiContext
from services.auth import Auth
from services.routes import Call, Route, error, ok, text
from state.hosts import (
    Host,
    Op,
    host_by_name,
    list_hosts,
)


def host_book(ctx: ApiContext) -> HostBook:
    s = ctx.live.host_settings()
    return HostBook(ctx.store.reader, ctx.lease_book(), pools=s.pools, auto_static=s.auto_static,
                    image_problem=ctx.live.image_problem)


async def write_ops(ctx: ApiContext, what: str, ops: list[Op]) -> None:
    # One batch: every row of the change commits together, then leases written alongside are durable too.
    with hostadmin.writing(what):
        futures = [ctx.store.journal.submit(op) for op in ops]
        await asyncio.gather(*futures)
        await ctx.store.journal.flush()


async def patch_host(call: Call[HostChange]) -> HostChanged:
    ctx = call.ctx
    await call.body()  # the shape; the keys given are what changes (null clears)
    body = await call.raw()
    name = call.request.match_info["name"]
    host, ops = hostadmin.change_host(host_book(ctx), name, body, ctx.clock())
    return await _written(ctx, f"host {name}", host, ops)


async def _written(ctx: ApiContext, what: str, host: Host, ops: list[Op]) -> HostChanged:
    """A host edit checked by its use case (400 malformed, 404/409 by the error's kind): its row is written
    (409 if a concurrent edit made it clash); the answer is the host as stored."""
    await write_ops(ctx, what, ops)
    return HostChanged(HostRecord.of(host_by_name(ctx.store.reader, host.name) or host))


async def delete_host(call: Call[None]) -> HostChanged:
    ctx = call.ctx
    name = call.request.match_info["name"]
    host, ops = hostadmin.remove_host(host_book(ctx), name)
    await write_ops(ctx, f"host {name}", ops)
    forget_machine(ctx, host)
    return HostChanged(HostRecord.of(host))


def forget_machine(ctx: ApiContext, host: Host) -> None:
    """A removed host's machine is new to discovery again."""
    discovery = ctx.live.discovery
    if host.mac is not None and discovery is not None:
        discovery.forget(host.mac)  # policy auto may make the machine a host again


async def get_script(call: Call[None]) -> HostScript | OwnScript:
    ctx = call.ctx
    return hostadmin.host_script(ctx.store.reader, ctx.store.state_dir / "scripts", call.request.match_info["name"])


async def put_script(call: Call[ScriptBody]) -> ScriptStored:
    ctx = call.ctx
    name = call.request.match_info["name"]
    script = (await call.body()).script
    await write_ops(ctx, f"host {name}", [hostadmin.set_script_op(ctx.store.reader, name, script, ctx.clock())])
    return ScriptStored(name, bool(script))


async def post_addclients(call: Call[AddclientsBody]) -> web.Response | AddclientsAnswer:
    ctx = call.ctx
    dry_run = bool((await call.body()).dry_run)
    body = dict(await call.raw())
    body.pop("dry_run", None)
    try:
        req = hostadmin.addclients_request(body)
        plan, ops = hostadmin.add_clients(host_book(ctx), req, ctx.clock(), dry_run=dry_run,
                                          own=ctx.live.host_settings().own_addresses)
    except Clashes as e:
        return call.answer(AddclientsClash(str(e), e.problems), status=409)
    await write_ops(ctx, "addclients", ops)
    return AddclientsAnswer.of(plan, dry_run)


async def assign(call: Call[AssignBody]) -> HostChanged:
    ctx = call.ctx
    body = await call.body()
    name = body.host
    if (name is None) == (not body.next):
        raise Invalid('give either {"host": NAME} or {"next": true}')
    mac = call.request.match_info["mac"]
    host, ops = hostadmin.assign_machine(host_book(ctx), mac, name, ctx.clock())
    return await _written(ctx, "assign", host, ops)


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
           400: error("an image name that is not one (e.g. ../../x)"), 404: error("no profile of that name"),
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
