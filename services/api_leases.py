"""Leases and reservations over the admin API, on the live lease book (ctx.live.leases).

  GET    /api/v1/leases              {"leases": [...]}: active leases; ?all=1 adds expired/released ones
  GET    /api/v1/reservations        {"reservations": [...]}
  POST   /api/v1/reservations        {"mac", "ip", "hostname"?} -> 201 {"reservation": {...}}
                                     400 malformed input, 409 refused (address reserved/leased elsewhere,
                                     outside every subnet, ...); the reason is in "error"
  DELETE /api/v1/reservations/{mac}  -> {"reservation": {...}} removed; 404 if the MAC has none
  POST   /api/v1/makedhcpstatic      every active lease becomes a reservation -> {"reservations": [...]}

JSON <-> the lease book; the answers are domain.leases views (the OpenAPI schemas are generated from them).
Changes act on the DHCP server's own model, so they apply to the next packet without a restart, and
a mutating call answers only after its rows are committed.
"""

from __future__ import annotations

from ipaddress import IPv4Address
from typing import Any

from aiohttp import web

from domain.bodies import parse_body
from domain.leases import OneReservation, ReservationView, lease_list, reservation_list
from domain.requests import NewReservation
from services.api_context import API, ApiContext, json_body, json_error, require_token
from state.lease_validators import LeaseError, normalize_mac, valid_hostname
from state.leases import LeaseModel


def _book(ctx: ApiContext) -> LeaseModel:
    model = ctx.live.leases
    if model is None:  # the DHCP service is not running (yet)
        raise web.HTTPServiceUnavailable(text='{"error": "the lease book is not loaded"}',
                                         content_type="application/json")
    return model


async def list_leases(request: web.Request) -> web.Response:
    ctx = request.app[API]
    now = ctx.clock()
    include_expired = request.query.get("all", "").lower() in ("1", "true", "yes")
    leases = _book(ctx).leases(now, include_expired=include_expired)
    return web.json_response(lease_list(leases, now).as_json())


async def list_reservations(request: web.Request) -> web.Response:
    return web.json_response(reservation_list(_book(request.app[API]).reservations()).as_json())


async def add_reservation(request: web.Request) -> web.Response:
    ctx = request.app[API]
    require_token(request, ctx)
    body = await json_body(request)
    try:
        mac, ip, hostname = _reservation_input(body)
    except LeaseError as e:
        return json_error(400, str(e))
    try:
        res = _book(ctx).add_reservation(mac, ip, ctx.clock(), hostname=hostname)
    except LeaseError as e:
        return json_error(409, str(e))
    await ctx.store.journal.flush()  # answer only once the rows are committed
    return web.json_response(OneReservation(ReservationView.of(res)).as_json(), status=201)


async def remove_reservation(request: web.Request) -> web.Response:
    ctx = request.app[API]
    require_token(request, ctx)
    try:
        mac = normalize_mac(request.match_info["mac"])
    except LeaseError as e:
        return json_error(400, str(e))
    res = _book(ctx).remove_reservation(mac)
    if res is None:
        return json_error(404, f"no reservation for {mac}")
    await ctx.store.journal.flush()
    return web.json_response(OneReservation(ReservationView.of(res)).as_json())


async def make_static(request: web.Request) -> web.Response:
    ctx = request.app[API]
    require_token(request, ctx)
    made = _book(ctx).make_static(ctx.clock())
    await ctx.store.journal.flush()
    return web.json_response(reservation_list(made).as_json())


ROUTES = [
    web.get("/api/v1/leases", list_leases),
    web.get("/api/v1/reservations", list_reservations),
    web.post("/api/v1/reservations", add_reservation),
    web.delete("/api/v1/reservations/{mac}", remove_reservation),
    web.post("/api/v1/makedhcpstatic", make_static),
]


def _reservation_input(raw: dict[str, Any]) -> tuple[str, IPv4Address, str | None]:
    body = parse_body(NewReservation, raw)
    try:
        address = IPv4Address(body.ip.strip())
    except ValueError:
        raise LeaseError(f"{body.ip!r} is not an IPv4 address") from None
    mac, hostname = body.mac, body.hostname
    return normalize_mac(mac), address, valid_hostname(hostname) if hostname else None
