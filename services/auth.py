"""The one auth layer of the HTTP API: which credential a route needs, the one place the bearer header is
read, and the one shape of a refusal (a domain `Unauthorized`, which services.errors turns into a JSON 401
with its WWW-Authenticate challenge; `Forbidden`, 403, for a good credential that may not do this).

The kinds, declared per route (services.routes.Route.auth):
- NONE       open (GET routes only: every other method needs a credential, checked when routes are declared)
- READER     a named token of any role (state.tokens), or the admin token: reads hosts, leases, machines, images
- OPERATOR   a named operator or admin token, or the admin token: assigns, reinstalls, edits hosts
- ADMIN      a named admin token or the admin token (<state_dir>/admin.token, named "admin"): images, tokens,
             satellites, settings
- INSTALL    a host's install token or fetch nonce, or an inspected machine's inspect nonce: bound to a MAC, an
             address and the host's (machine's) state, so the use case checks it (domain.installs,
             domain.hardware), given the bearer this layer read
- UPDATE     a host's update token (derived from its install token), from the host's own address, or the
             admin token; the host is the route's {name}: 404 if there is none
- SATELLITE  a satellite's token (state.satellites); the caller is the satellite's name
A role token that is known but ranks too low is 403 (it is not asked for again); none or an unknown one is 401.

Role tokens travel over TLS ([https]): one that arrives over plain HTTP (on any route) is refused with 403
(SeenInClear) unless the request comes from this box itself (loopback, or its own address) and [http]
loopback_tokens allows it (the CLI on the appliance). The route then revokes the token (services/routes.py):
it crossed the LAN in clear, so whoever listened has it; only its holder can cause that, so the rule cannot
be used to revoke someone else's token.
"""

from __future__ import annotations

import enum
import hmac
import logging
import time
from dataclasses import dataclass
from ipaddress import ip_address

from aiohttp import web

from domain import installs as domain_installs
from domain import tokens as domain_tokens
from domain.errors import Forbidden, NotFound, Unauthorized
from domain.sources import Sources
from services.api_context import ApiContext
from services.ratelimit import LimitedLog
from state import credentials, satellites, tokens
from state.eventlog import EventLog
from state.hosts import Host, host_by_name

log = EventLog("imageserver.auth")

HEADER = "Authorization"
ADMIN_REALM = 'Bearer realm="imageserver"'


class Auth(enum.Enum):
    NONE = "none"
    READER = "reader"
    OPERATOR = "operator"
    ADMIN = "admin"
    INSTALL = "install"
    UPDATE = "update"
    SATELLITE = "satellite"


class RoleRefused(Forbidden):
    """A known token whose role ranks too low (403); it names the token, for the audit log."""

    def __init__(self, message: str, token: str) -> None:
        super().__init__(message)
        self.token = token


# The role tokens' kinds, and the state.tokens role each needs.
ROLE_OF: dict[Auth, str] = {Auth.READER: "reader", Auth.OPERATOR: "operator", Auth.ADMIN: "admin"}


@dataclass(frozen=True, slots=True)
class Caller:
    """Who a request comes from, as far as its route's credential says: the bearer it carried, the token's
    name and role for role routes, the satellite's or the host's name for SATELLITE and UPDATE routes."""

    bearer: str | None = None
    name: str | None = None
    host: Host | None = None
    role: str | None = None


class SeenInClear(Forbidden):
    """A role token over plain HTTP from outside this box: 403. `token` names it (the route revokes it)."""

    def __init__(self, message: str, token: str) -> None:
        super().__init__(message)
        self.token = token


_clear_log = LimitedLog(log)


def over_tls(request: web.Request) -> bool:
    transport = request.transport
    return transport is not None and transport.get_extra_info("ssl_object") is not None


def is_loopback(peer: str | None) -> bool:
    try:
        return ip_address(peer or "").is_loopback
    except ValueError:
        return False


def from_this_box(request: web.Request) -> bool:
    """A connection that never left this box: from a loopback address, or from the very address it reached
    (curl http://<our address>/ on the appliance itself). Linux drops a packet arriving from the wire with
    one of its own addresses as source (a martian), so neither can come from the LAN."""
    if is_loopback(request.remote):
        return True
    sockname = request.transport.get_extra_info("sockname") if request.transport is not None else None
    return bool(sockname) and request.remote is not None and sockname[0] == request.remote


def may_carry_tokens(request: web.Request, ctx: ApiContext) -> bool:
    """Whether a role token may come this way: over TLS, or from this box while [http] loopback_tokens."""
    return over_tls(request) or (ctx.live.loopback_tokens and from_this_box(request))


def refuse_in_clear(request: web.Request, ctx: ApiContext, given: str | None) -> None:
    """SeenInClear for a role token over plain HTTP from outside this box. Any other bearer (an install, update
    or satellite credential, or one that is no token at all) follows its route's own rules."""
    if given is None or may_carry_tokens(request, ctx):
        return
    token = token_of(given, ctx)
    if token is None:
        return
    _clear_log.log("token-in-clear", time.monotonic(), logging.WARNING, "token-in-clear", token=token.name,
                   peer=request.remote or "-", method=request.method, path=request.path, action="revoked")
    raise SeenInClear("admin, operator and reader tokens are accepted over HTTPS only (the [https] listener); "
                      f"over plain HTTP only from this box itself. Token {token.name} is revoked: it crossed the "
                      "network in clear (make a new one with imageserver tokens add).", token.name)


def bearer(request: web.Request) -> str | None:
    """The `Bearer` credential of the request, if it carries one."""
    scheme, _, given = request.headers.get(HEADER, "").partition(" ")
    return given.strip() if scheme.lower() == "bearer" and given.strip() else None


def bearer_header(token: str) -> dict[str, str]:
    """The header a client (a satellite asking its primary) sends its token in."""
    return {HEADER: f"Bearer {token}"}


def is_admin(given: str | None, admin_token: str) -> bool:
    return given is not None and hmac.compare_digest(given.encode(), admin_token.encode())


def token_of(given: str | None, ctx: ApiContext) -> tokens.ApiToken | None:
    """The named token (or the admin token file, named "admin") the bearer is, or None."""
    if is_admin(given, ctx.admin_token):
        return tokens.ApiToken(tokens.ADMIN_NAME, "admin", None)
    return tokens.authenticate(ctx.store.reader, given)


def may_read(request: web.Request, ctx: ApiContext | None) -> bool:
    """Whether the request carries a token of any role (an open route showing a reader more)."""
    return ctx is not None and token_of(bearer(request), ctx) is not None


def is_update_caller(given: str | None, admin_token: str, host: Host, src: Sources,
                     peer: str | None) -> bool:
    """The admin token, or the host's own update token from the host's own address (the rule its install
    credentials follow, domain.installs.from_own_address); never the install token (a leaked install token
    must not ask for a reinstall nor pose as the installed system). Forbidden: the update token from
    another address (a copy of updateclient.conf elsewhere opens neither the image nor a reinstall)."""
    if not given:
        return False
    if is_admin(given, admin_token):
        return True
    if host.install_token is None or not credentials.same(given, credentials.update_token(host.install_token)):
        return False
    if domain_installs.from_own_address(src, host.mac, host, peer) is None:
        log.warning("update-refused", hostname=host.name, peer=peer or "-", reason="address")
        raise Forbidden(f"the update token of {host.name} is good only from the host's own address")
    return True


def check(auth: Auth, request: web.Request, ctx: ApiContext | None) -> Caller:
    """The caller of a route needing `auth`, or Unauthorized (NotFound: an UPDATE route's host is unknown;
    Forbidden: its token from another address)."""
    given = bearer(request)
    if ctx is not None:
        refuse_in_clear(request, ctx, given)
    if auth is Auth.NONE or auth is Auth.INSTALL:
        return Caller(given)
    if ctx is None:
        raise Unauthorized("no admin API on this server")
    store, admin_token = ctx.store, ctx.admin_token
    needed = ROLE_OF.get(auth)
    if needed is not None:
        token = token_of(given, ctx)
        if token is None:
            raise Unauthorized(f"this endpoint needs a token with the {needed} role (the admin token "
                               "<state_dir>/admin.token, or one from imageserver tokens add NAME --role ROLE): "
                               "Authorization: Bearer <token>", challenge=ADMIN_REALM)
        if not domain_tokens.allows(token.role, needed):
            log.info("role-refused", token=token.name, role=token.role, needed=needed,
                     method=request.method, path=request.path, peer=request.remote or "-")
            raise RoleRefused(f"token {token.name} has the {token.role} role; this endpoint needs {needed}", token.name)
        return Caller(given, token.name, role=token.role)
    if auth is Auth.SATELLITE:
        name = satellites.authenticate(store.reader, given)
        if name is None:
            raise Unauthorized("this endpoint needs a satellite token: Authorization: Bearer <token from "
                               "imageserver satellites add NAME>", challenge='Bearer realm="imageserver-satellite"')
        return Caller(given, name)
    name = request.match_info["name"]
    host = host_by_name(store.reader, name)
    if host is None:
        raise NotFound(f"no host named {name!r}")
    if not is_update_caller(given, admin_token, host, ctx.sources(), request.remote):
        raise Unauthorized(f"updates of {name} need its token (TOKEN= in /etc/systemimager/updateclient.conf, the "
                           "host's install token) or the admin token: Authorization: Bearer <token>",
                           challenge='Bearer realm="imageserver-update"')
    return Caller(given, name, host)
