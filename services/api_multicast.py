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
from services.api_context import API
from services.api_install import _bearer, _settings, own_auth
from services.multicast import MulticastError, MulticastService, Session
from state.eventlog import EventLog

log = EventLog("imageserver.multicast")


def _respond(request: web.Request, view: MulticastSeat | MulticastSession) -> web.Response:
    body = view_json(view)
    if "text/plain" in request.headers.get("Accept", ""):
        return web.Response(text="".join(f"{k}={'' if v is None else v}\n" for k, v in body.items()),
                            content_type="text/plain")
    return web.json_response(body)


def _service(request: web.Request) -> MulticastService:
    service = request.app[API].live.multicast
    if not isinstance(service, MulticastService):
        raise Conflict("multicast is not enabled on this imageserver ([multicast] enabled)")
    return service


def _seat(session: Session, service: MulticastService, sender: str) -> MulticastSeat:
    return MulticastSeat(session=session.id, portbase=session.portbase,
                         rdv_address=str(service.settings.rdv_address), key=session.key, sender=sender,
                         start_window=service.settings.start_window, image=session.image, version=session.version)


def _checked(request: web.Request) -> use.SeatRequest:
    ctx = request.app[API]
    return use.multicast_request(ctx.sources(), _settings(ctx), request.match_info["mac"], request.remote,
                                 _bearer(request), ctx.clock())


@own_auth
async def seat(request: web.Request) -> web.Response:
    asked = _checked(request)
    service = _service(request)
    try:
        session = service.join(asked.host, asked.image, asked.version, asked.tree, asked.expected)
    except MulticastError as e:
        raise Conflict(str(e)) from None
    sender = _settings(request.app[API]).address or request.url.host or ""
    log.info('multicast-seat', hostname=asked.host, mac=asked.mac, session=session.id, image=asked.image,
             version=asked.version)
    return _respond(request, _seat(session, service, sender))


async def state(request: web.Request) -> web.Response:
    asked = _checked(request)
    session = _service(request).session_of(asked.host)
    if session is None:
        raise NotFound(f"host {asked.host} holds no multicast seat")
    return _respond(request, MulticastSession(session=session.id, state=session.state, sha256=session.sha256,
                                              error=session.error))


ROUTES = [
    web.post("/install/{mac}/multicast", seat),
    web.get("/install/{mac}/multicast", state),
]
