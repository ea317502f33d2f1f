"""Hosts as the operator sees them: state, install progress and timeline; add and reinstall.

  GET  /api/v1/hosts                  {"hosts": [...]}: each host with its newest install's progress
  GET  /api/v1/hosts/{name}           one host: its row, address binding, progress and full timeline
  POST /api/v1/hosts                  {"name", "mac", "image"?, "ip"?, "version"?}: a new host (admin token)
  POST /api/v1/hosts/{name}/reinstall state assigned and a fresh install token (admin token): the next
                                      PXE boot installs again
The install token is never shown: it is the installer's credential.
"""

from __future__ import annotations

import sqlite3
from ipaddress import IPv4Address
from typing import Any

from aiohttp import web

from protocols.mac import MacError, normalize_mac
from services.api_context import ApiContext, json_body, json_error, require_token
from state import installs
from state.hostbook import HostBook, check_version
from state.hosts import HostError
from state.imagename import check_image_name
from state.leases import LeaseError, LeaseModel

_COLUMNS = ("name", "mac", "ip", "image", "version", "state", "created", "updated", "last_seen",
            "running_version", "last_update")  # last_update: when updateclient last finished on the host


def _host_dict(row: sqlite3.Row) -> dict[str, Any]:
    out = {c: row[c] for c in _COLUMNS}
    out["ip"] = str(IPv4Address(row["ip"])) if row["ip"] is not None else None
    out["script_override"] = bool(row["script"])
    return out


def _binding(ctx: ApiContext, mac: str | None, now: float) -> dict[str, Any] | None:
    """The host's address binding: its reservation, else its lease."""
    if mac is None:
        return None
    leases = ctx.models.get("leases")
    if leases is not None:
        res = leases.reservation(mac)
        if res is not None:
            return {"kind": "reservation", **res.as_dict()}
        lease = leases.lease(mac)
        return {"kind": "lease", **lease.as_dict(now)} if lease is not None else None
    row = ctx.store.read_one("SELECT ip, source FROM reservations WHERE mac = ?", (mac,))
    if row is not None:
        return {"kind": "reservation", "ip": str(IPv4Address(row[0])), "source": row[1]}
    row = ctx.store.read_one("SELECT ip, expires FROM leases WHERE mac = ?", (mac,))
    if row is not None:
        return {"kind": "lease", "ip": str(IPv4Address(row[0])), "expires": row[1], "active": row[1] > now}
    return None


def _read_host(ctx: ApiContext, name: str) -> sqlite3.Row | None:
    return ctx.store.read_one(f"SELECT {', '.join(_COLUMNS)}, script FROM hosts WHERE name = ?", (name,))


def host_view(ctx: ApiContext, row: sqlite3.Row, *, with_timeline: bool) -> dict[str, Any]:
    now = ctx.clock()
    events = installs.timeline(ctx.store.reader, row["name"])
    out = _host_dict(row)
    live = ctx.models.get("install_progress")
    latest = live.get(row["name"]) if isinstance(live, installs.LiveProgress) else None
    out["progress"] = installs.summary(events, now, latest)
    out["binding"] = _binding(ctx, row["mac"], now)
    boot = ctx.models.get("boot")
    if boot is not None and row["mac"]:
        out["boot"] = boot.decide(row["mac"]).as_dict()
    if with_timeline:
        out["timeline"] = events
    return out


def routes(ctx: ApiContext) -> list[web.RouteDef]:
    async def list_hosts(request: web.Request) -> web.Response:
        rows = ctx.store.read(f"SELECT {', '.join(_COLUMNS)}, script FROM hosts ORDER BY name")
        return web.json_response({"hosts": [host_view(ctx, r, with_timeline=False) for r in rows]})

    async def one_host(request: web.Request) -> web.Response:
        row = _read_host(ctx, request.match_info["name"])
        if row is None:
            return json_error(404, f"no host named {request.match_info['name']!r}")
        return web.json_response(host_view(ctx, row, with_timeline=True))

    async def add_host(request: web.Request) -> web.Response:
        require_token(request, ctx)
        body = await json_body(request)
        leases = ctx.models.get("leases")
        settings = ctx.models.get("install")
        now = ctx.clock()
        try:
            name = installs.check_host_name(body.get("name"))
            mac = normalize_mac(str(body.get("mac", "")))
            ip = IPv4Address(body["ip"]) if body.get("ip") else None
            image = body.get("image") or None
            if image is not None:
                check_image_name(image)  # ImageNameError is a ValueError: 400
            version = check_version(body.get("version"))
        except (MacError, ValueError) as e:
            return json_error(400, str(e))
        if _read_host(ctx, name) is not None:
            return json_error(409, f"host {name} exists already")
        if isinstance(leases, LeaseModel):
            # The shared rules for host changes: unique MAC/address, a fixed address reserved for the MAC.
            book = HostBook(ctx.store.reader, leases, auto_static=getattr(settings, "auto_static", "on-install"),
                            image_problem=ctx.models.get("image_problem"))
            try:
                _, op = book.create(name, now=now, mac=mac, ip=ip, image=image, version=version)
            except (HostError, LeaseError) as e:
                return json_error(409, str(e))
        else:
            problem = ctx.models.get("image_problem")
            if image is not None and problem is not None and (why := problem(image, version)):
                return json_error(409, f"image {image} cannot be installed: {why}")
            op = installs.add_host_op(name, mac, image, ip, now, version)
        try:
            await ctx.store.journal.run(op)
        except sqlite3.IntegrityError as e:
            return json_error(409, f"host {name} or MAC {mac}{' or ' + str(ip) if ip else ''} exists already ({e})")
        row = _read_host(ctx, name)
        assert row is not None
        return web.json_response(host_view(ctx, row, with_timeline=False), status=201)

    async def reinstall(request: web.Request) -> web.Response:
        require_token(request, ctx)
        name = request.match_info["name"]
        done = await ctx.store.journal.run(installs.reinstall_op(name, installs.new_token(), ctx.clock()))
        if not done:
            return json_error(404, f"no host named {name!r}")
        row = _read_host(ctx, name)
        assert row is not None
        return web.json_response(host_view(ctx, row, with_timeline=False))

    return [
        web.get("/api/v1/hosts", list_hosts),
        web.post("/api/v1/hosts", add_host),
        web.get("/api/v1/hosts/{name}", one_host),
        web.post("/api/v1/hosts/{name}/reinstall", reinstall),
    ]
