"""Leases and reservations over the admin API, on the live lease book (ctx.live.leases).

  GET    /api/v1/leases              {"leases": [...]}: active leases; ?all=1 adds expired/released ones
  GET    /api/v1/reservations        {"reservations": [...]}
  POST   /api/v1/reservations        {"mac", "ip", "hostname"?} -> 201 {"reservation": {...}}
                                     400 malformed input, 409 refused (address reserved/leased elsewhere,
                                     outside every subnet, ...); the reason is in "error"
  DELETE /api/v1/reservations/{mac}  -> {"reservation": {...}} removed; 404 if the MAC has none
  POST   /api/v1/makedhcpstatic      every active lease becomes a reservation -> {"reservations": [...]}

Changes act on the DHCP server's own model, so they apply to the next packet without a restart, and
a mutating call answers only after its rows are committed.
"""

from __future__ import annotations

from ipaddress import IPv4Address
from typing import Any

from aiohttp import web

from services.api_context import ApiContext, json_body, json_error, require_token
from state.leases import LeaseError, LeaseModel, normalize_mac, valid_hostname


def routes(ctx: ApiContext) -> list[web.RouteDef]:
    def book() -> LeaseModel:
        model = ctx.live.leases
        if not isinstance(model, LeaseModel):
            raise web.HTTPServiceUnavailable(text='{"error": "the lease book is not loaded"}',
                                             content_type="application/json")
        return model

    async def durable() -> None:
        await ctx.store.journal.flush()

    async def list_leases(request: web.Request) -> web.Response:
        now = ctx.clock()
        include_expired = request.query.get("all", "").lower() in ("1", "true", "yes")
        leases = book().leases(now, include_expired=include_expired)
        return web.json_response({"now": now, "leases": [x.as_dict(now) for x in leases]})

    async def list_reservations(request: web.Request) -> web.Response:
        return web.json_response({"reservations": [r.as_dict() for r in book().reservations()]})

    async def add_reservation(request: web.Request) -> web.Response:
        require_token(request, ctx)
        body = await json_body(request)
        try:
            mac, ip, hostname = _reservation_input(body)
        except LeaseError as e:
            return json_error(400, str(e))
        try:
            res = book().add_reservation(mac, ip, ctx.clock(), hostname=hostname)
        except LeaseError as e:
            return json_error(409, str(e))
        await durable()
        return web.json_response({"reservation": res.as_dict()}, status=201)

    async def remove_reservation(request: web.Request) -> web.Response:
        require_token(request, ctx)
        try:
            mac = normalize_mac(request.match_info["mac"])
        except LeaseError as e:
            return json_error(400, str(e))
        res = book().remove_reservation(mac)
        if res is None:
            return json_error(404, f"no reservation for {mac}")
        await durable()
        return web.json_response({"reservation": res.as_dict()})

    async def make_static(request: web.Request) -> web.Response:
        require_token(request, ctx)
        made = book().make_static(ctx.clock())
        await durable()
        return web.json_response({"reservations": [r.as_dict() for r in made]})

    return [
        web.get("/api/v1/leases", list_leases),
        web.get("/api/v1/reservations", list_reservations),
        web.post("/api/v1/reservations", add_reservation),
        web.delete("/api/v1/reservations/{mac}", remove_reservation),
        web.post("/api/v1/makedhcpstatic", make_static),
    ]


def _reservation_input(body: dict[str, Any]) -> tuple[str, IPv4Address, str | None]:
    mac, ip, hostname = body.get("mac"), body.get("ip"), body.get("hostname")
    if not isinstance(mac, str) or not isinstance(ip, str):
        raise LeaseError('"mac" and "ip" are required strings, e.g. {"mac": "52:54:00:12:34:56", "ip": "10.0.0.20"}')
    try:
        address = IPv4Address(ip.strip())
    except ValueError:
        raise LeaseError(f"{ip!r} is not an IPv4 address") from None
    if hostname is not None and not isinstance(hostname, str):
        raise LeaseError('"hostname" must be a string')
    unknown = set(body) - {"mac", "ip", "hostname"}
    if unknown:
        raise LeaseError(f"unknown field(s): {', '.join(sorted(unknown))}")
    return normalize_mac(mac), address, valid_hostname(hostname) if hostname else None
