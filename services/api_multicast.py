"""Seats in multicast install sessions, for installers (services/multicast.py).

  POST /install/{mac}/multicast   a seat in the session sending the host's image version (started by the
                                  first one to ask): portbase, rendezvous address, the session's key, the
                                  sender's address. 409 when the transfer has begun, or no session can be
                                  had: the installer pulls by rsync. `Accept: text/plain` gives KEY=value lines
                                  (the installer's busybox has no JSON parser).
  GET  /install/{mac}/multicast   the host's session: state, and once done the SHA-256 of what was sent.

Both need the install token, from the address leased or reserved for the MAC, while the host is due to
install: the key decrypts the image, so it goes where the image may go and nowhere else.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from aiohttp import web

from protocols.mac import MacError, normalize_mac
from services.api_context import ApiContext, json_error
from services.api_install import _address_of, _bearer, _settings, _unauthorized, own_auth
from services.multicast import MulticastError, MulticastService, Session
from state import credentials, images, installs

log = logging.getLogger("imageserver.multicast")


def _service(ctx: ApiContext) -> MulticastService | None:
    service = ctx.models.get("multicast")
    return service if isinstance(service, MulticastService) else None


def _authorized(ctx: ApiContext, request: web.Request) -> installs.InstallHost | web.Response:
    try:
        mac = normalize_mac(request.match_info["mac"])
    except MacError as e:
        return json_error(400, str(e))
    host = installs.host_by_mac(ctx.store.reader, mac)
    if host is None:
        return json_error(404, f"no host has MAC {mac}")
    if not (credentials.install_token_live(host.state) and installs.token_matches(host, _bearer(request))
            and not credentials.token_expired(host.token_issued, ctx.clock(), _settings(ctx).token_seconds)):
        return _unauthorized(f"a multicast seat for {host.name} needs its install token: Authorization: Bearer <token>")
    bound = _address_of(ctx, mac, host)
    if bound is None or request.remote != str(bound):
        log.warning("event=multicast-refused hostname=%s mac=%s peer=%s reason=address", host.name, mac,
                    request.remote)
        return json_error(403, f"a multicast seat for {host.name} is given only to the address leased or reserved "
                               f"for {mac}")
    return host


def _seat(session: Session, service: MulticastService, sender: str) -> dict[str, Any]:
    return {"session": session.id, "portbase": session.portbase, "rdv_address": str(service.settings.rdv_address),
            "key": session.key, "sender": sender, "start_window": service.settings.start_window,
            "image": session.image, "version": session.version}


def _respond(request: web.Request, body: dict[str, Any], status: int = 200) -> web.Response:
    if "text/plain" in request.headers.get("Accept", ""):
        text = "".join(f"{k}={'' if v is None else v}\n" for k, v in body.items())
        return web.Response(text=text, status=status, content_type="text/plain")
    return web.json_response(body, status=status)


def routes(ctx: ApiContext) -> list[web.RouteDef]:
    @own_auth
    async def seat(request: web.Request) -> web.Response:
        host = _authorized(ctx, request)
        if isinstance(host, web.Response):
            return host
        service = _service(ctx)
        if service is None:
            return json_error(409, "multicast is not enabled on this imageserver ([multicast] enabled)")
        if not host.image:
            return json_error(409, f"host {host.name} has no image")
        version = installs.resolve_version(ctx.store.reader, host)
        iv = images.get_version(ctx.store.reader, host.image, version) if version is not None else None
        if iv is None:
            return json_error(409, f"image {host.image} has no captured version")
        expected = installs.due_to_install(ctx.store.reader, host.image)
        try:
            session = service.join(host.name, iv.name, iv.version, Path(iv.path), expected)
        except MulticastError as e:
            return json_error(409, str(e))
        sender = _settings(ctx).address or request.url.host or ""
        log.info("event=multicast-seat hostname=%s mac=%s session=%s image=%s version=%s", host.name, host.mac,
                 session.id, iv.name, iv.version)
        return _respond(request, _seat(session, service, sender))

    async def state(request: web.Request) -> web.Response:
        host = _authorized(ctx, request)
        if isinstance(host, web.Response):
            return host
        service = _service(ctx)
        session = service.session_of(host.name) if service is not None else None
        if session is None:
            return json_error(404, f"host {host.name} holds no multicast seat")
        return _respond(request, {"session": session.id, "state": session.state, "sha256": session.sha256,
                                  "error": session.error})

    return [
        web.post("/install/{mac}/multicast", seat),
        web.get("/install/{mac}/multicast", state),
    ]
