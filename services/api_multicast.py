"""Seats in multicast install sessions, for installers (services/multicast.py).

  POST /install/{mac}/multicast   a seat in the session sending the host's image version (started by the
                                  first one to ask): portbase, rendezvous address, the session's key, the
                                  sender's address. 409 when the transfer has begun, or no session can be
                                  had: the installer pulls by rsync. `Accept: text/plain` gives KEY=value lines
                                  (the installer's busybox has no JSON parser).
  GET  /install/{mac}/multicast   the host's session: state, and once done the SHA-256 of what was sent.

Both need the install token, from the address leased or reserved for the MAC, while the host is due to
install (domain.installs.multicast_request): the key decrypts the image, so it goes where the image may go.
"""

from __future__ import annotations

from aiohttp import web

from domain import installs as use
from domain.errors import Conflict, NotFound
from domain.multicast import MulticastSeat, MulticastSession
from domain.views import view_json
from services.auth import Auth
from services.multicast import MulticastError, MulticastService, Session
from services.routes import Call, Route, error, ok
from state.eventlog import EventLog

log = EventLog("imageserver.multicast")


def _respond(call: Call[None], view: MulticastSeat | MulticastSession) -> web.Response:
    body = view_json(view)
    if "text/plain" in call.request.headers.get("Accept", ""):
        return web.Response(text="".join(f"{k}={'' if v is None else v}\n" for k, v in body.items()),
                            content_type="text/plain")
    return web.json_response(body)


def _service(call: Call[None]) -> MulticastService:
    service = call.ctx.live.multicast
    if not isinstance(service, MulticastService):
        raise Conflict("multicast is not enabled on this imageserver ([multicast] enabled)")
    return service


def _seat(session: Session, service: MulticastService, sender: str) -> MulticastSeat:
    return MulticastSeat(session=session.id, portbase=session.portbase,
                         rdv_address=str(service.settings.rdv_address), key=session.key, sender=sender,
                         start_window=service.settings.start_window, image=session.image, version=session.version)


def _checked(call: Call[None]) -> use.SeatRequest:
    ctx = call.ctx
    return use.multicast_request(ctx.sources(), ctx.live.install_settings(), call.request.match_info["mac"],
                                 call.request.remote, call.bearer, ctx.clock())


async def seat(call: Call[None]) -> web.Response:
    asked = _checked(call)
    service = _service(call)
    try:
        session = service.join(asked.host, asked.image, asked.version, asked.tree, asked.expected)
    except MulticastError as e:
        raise Conflict(str(e)) from None
    sender = call.ctx.live.install_settings().address or call.request.url.host or ""
    log.info('multicast-seat', hostname=asked.host, mac=asked.mac, session=session.id, image=asked.image,
             version=asked.version)
    return _respond(call, _seat(session, service, sender))


async def state(call: Call[None]) -> web.Response:
    asked = _checked(call)
    session = _service(call).session_of(asked.host)
    if session is None:
        raise NotFound(f"host {asked.host} holds no multicast seat")
    return _respond(call, MulticastSession(session=session.id, state=session.state, sha256=session.sha256,
                                              error=session.error))


_FROM_ELSEWHERE = error("not asked from the address leased or reserved for this MAC")

ROUTES = [
    Route("POST", "/install/{mac}/multicast", seat,
          "A seat in the multicast session sending the host's image version ([multicast] enabled): portbase, "
          "rendezvous address, the session's key, the sender; only from the host's own address with its install "
          "token; Accept: text/plain gives KEY=value lines",
          {200: ok("the seat", MulticastSeat), 403: _FROM_ELSEWHERE, 404: error("no host has this MAC"),
           409: error("no seat: multicast off, the transfer has begun, sessions or seats full: pull by rsync")},
          auth=Auth.INSTALL),
    Route("GET", "/install/{mac}/multicast", state,
          "The host's multicast session: its state and, once done, the SHA-256 of the stream sent",
          {200: ok("the session", MulticastSession), 403: _FROM_ELSEWHERE,
           404: error("no host has this MAC, or it holds no seat"),
           409: error("multicast is not enabled on this imageserver")},
          auth=Auth.INSTALL),
]
