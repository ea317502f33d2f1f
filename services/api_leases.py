"""Leases and reservations over the admin API, on the live lease book (ctx.live.leases).

  GET    /api/v1/leases              {"leases": [...]}: active leases; ?all=1 adds expired/released ones
  GET    /api/v1/reservations        {"reservations": [...]}
  POST   /api/v1/reservations        {"mac", "ip", "hostname"?} -> 201 {"reservation": {...}}
                                     400 malformed input, 409 refused (address reserved/leased elsewhere,
                                     outside every subnet, ...); the reason is in "error"
  DELETE /api/v1/reservations/{mac}  -> {"reservation": {...}} removed; 404 if the MAC has none
  POST   /api/v1/makedhcpstatic      every active lease becomes a reservation -> {"reservations": [...]}

JSON <-> the use cases of domain/leases.py over the live lease book; the answers are its views (the OpenAPI
schemas are generated from them).
Changes act on the DHCP server's own model, so they apply to the next packet without a restart, and
a mutating call answers only after its rows are committed.
"""

from __future__ import annotations

from domain import leases
from domain.leases import LeaseList, OneReservation, ReservationList, ReservationView, reservation_list
from domain.requests import NewReservation
from services.auth import Auth
from services.routes import Call, Param, Route, error, ok


async def list_leases(call: Call[None]) -> LeaseList:
    now = call.ctx.clock()
    include_expired = call.request.query.get("all", "").lower() in ("1", "true", "yes")
    return leases.list_leases(call.ctx.lease_book(), now, include_expired=include_expired)


async def list_reservations(call: Call[None]) -> ReservationList:
    return leases.list_reservations(call.ctx.lease_book())


async def add_reservation(call: Call[NewReservation]) -> OneReservation:
    ctx = call.ctx
    body = await call.body()
    res = leases.add_reservation(ctx.lease_book(), body.mac, body.ip, body.hostname, ctx.clock())
    await ctx.store.journal.flush()  # answer only once the rows are committed
    return OneReservation(ReservationView.of(res))


async def remove_reservation(call: Call[None]) -> OneReservation:
    ctx = call.ctx
    res = leases.remove_reservation(ctx.lease_book(), call.request.match_info["mac"])
    await ctx.store.journal.flush()
    return OneReservation(ReservationView.of(res))


async def make_static(call: Call[None]) -> ReservationList:
    ctx = call.ctx
    made = leases.make_static(ctx.lease_book(), ctx.clock())
    await ctx.store.journal.flush()
    return reservation_list(made)


ROUTES = [
    Route("GET", "/api/v1/leases", list_leases,
          "DHCP leases, lowest address first: active ones; with ?all=1 also ended ones",
          {200: ok("leases", LeaseList)}, auth=Auth.READER,
          query={"all": Param("1/true/yes: include leases that have ended")}),
    Route("GET", "/api/v1/reservations", list_reservations,
          "DHCP reservations (static addresses), lowest address first", {200: ok("reservations", ReservationList)},
          auth=Auth.READER),
    Route("POST", "/api/v1/reservations", add_reservation,
          "Reserve an address for a MAC (live: the machine gets it on its next request); a MAC that has a "
          "reservation is moved",
          {201: ok("the reservation", OneReservation), 400: error("malformed MAC, address or host name"),
           409: error("refused: reserved for or leased to another MAC, outside every DHCP subnet, or the "
                      "imageserver's own address")},
          auth=Auth.OPERATOR, body=NewReservation),
    Route("DELETE", "/api/v1/reservations/{mac}", remove_reservation,
          "Remove a MAC's reservation; its address returns to the pool if inside one",
          {200: ok("the removed reservation", OneReservation), 400: error("not a MAC address"),
           404: error("the MAC has no reservation")},
          auth=Auth.OPERATOR),
    Route("POST", "/api/v1/makedhcpstatic", make_static,
          "makedhcpstatic: every active lease becomes a reservation of the same address",
          {200: ok("the reservations made", ReservationList)}, auth=Auth.OPERATOR),
]
