"""Each HTTP route declared once: a `Route` names its method, path, credential, request body type, answers
per status and handler. From that one object come the aiohttp route (with the credential check and the body
parsing), and its OpenAPI operation (services/openapi.py), so what is mounted and what is documented cannot
differ.

A handler takes a `Call` (the request, the ApiContext, the caller the credential named, the parsed body) and
returns a response, or a view (a dataclass of domain/ or a plain dict) which is answered as JSON with the
route's first 2xx status. Domain errors it (or the credential check) raises become JSON errors here, by the
one mapping in services.errors.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, is_dataclass
from typing import Any, Generic, Literal, TypeVar

from aiohttp import web

from domain.bodies import parse_body
from domain.errors import DomainError, Invalid
from domain.paging import DEFAULT_LIMIT, MAX_LIMIT
from domain.responses import Error
from domain.views import view_json
from services.api_context import API, ApiContext
from services.auth import ROLE_OF, Auth, Caller, RoleRefused, SeenInClear, check
from services.errors import domain_error_response
from services.jsonbody import MAX_BYTES, BodyError, parse_json
from state import audit, tokens
from state.db import StoreFailure
from state.eventlog import EventLog

log = EventLog("imageserver.audit")

B = TypeVar("B")
Handler = Callable[["Call[Any]"], Awaitable[Any]]
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
JSON = "application/json"


@dataclass(frozen=True, slots=True)
class Answer:
    """One documented answer: JSON of `view` (a dataclass, a tuple of them for any of, `dict` for any object),
    or a body of `media` type (`text`: a string, `binary`: bytes, else unspecified), or no body."""

    description: str
    view: type | tuple[type, ...] | None = None
    media: str | None = None
    text: bool = False
    binary: bool = False


def ok(description: str, view: type | tuple[type, ...]) -> Answer:
    return Answer(description, view)


def error(description: str) -> Answer:
    return Answer(description, Error)


def text(description: str, media: str = "text/plain") -> Answer:
    return Answer(description, media=media, text=True)


def binary(description: str, media: str = "application/octet-stream") -> Answer:
    return Answer(description, media=media, binary=True)


@dataclass(frozen=True, slots=True)
class Param:
    """A path or query parameter: its description and the value's type and bounds."""

    description: str | None = None
    type: type = str
    minimum: int | None = None
    maximum: int | None = None
    default: Any = None
    enum: tuple[str, ...] = ()


# Path parameters mean the same in every route that has them (a route may say more of its own).
PATH_PARAMS: dict[str, Param] = {
    "mac": Param("MAC address in any usual spelling: aa:bb:cc:dd:ee:ff, AA-BB-..., aabbccddeeff, aabb.ccdd.eeff"),
    "name": Param("host name"),
    "key": Param("the install's torrent key (in the URLs of the host's torrent)"),
}

# ?limit= and ?offset= of the paged lists (domain.paging.Page.from_query reads them).
PAGING = {"limit": Param("per page", int, minimum=1, maximum=MAX_LIMIT, default=DEFAULT_LIMIT),
          "offset": Param("where the page starts: the previous page's next_offset", int, minimum=0, default=0)}

# What a 401 says when a route does not say more.
UNAUTHORIZED: dict[Auth, str] = {
    Auth.READER: "no token, or one that is not known (revoked)",
    Auth.OPERATOR: "no token, or one that is not known (revoked)",
    Auth.ADMIN: "the admin bearer token is missing or wrong",
    Auth.INSTALL: "missing, wrong or expired install token",
    Auth.UPDATE: "neither the host's update token nor the admin token",
    Auth.SATELLITE: "no or a wrong satellite token",
}


@dataclass(frozen=True, slots=True)
class Route:
    method: str
    path: str
    handler: Handler
    summary: str
    answers: Mapping[int, Answer]
    auth: Auth = Auth.NONE
    body: type | None = None  # the request body's dataclass (domain/requests.py)
    unknown: Literal["refuse", "ignore"] = "refuse"  # keys the body does not declare (machines' bodies: ignore)
    max_bytes: int = MAX_BYTES  # the body's size cap (a route may take less than the default)
    query: Mapping[str, Param] = field(default_factory=dict)
    params: Mapping[str, Param] = field(default_factory=dict)  # path parameters saying more than PATH_PARAMS

    def __post_init__(self) -> None:
        if self.method.upper() not in SAFE_METHODS and self.auth is Auth.NONE:
            raise ValueError(f"{self.method} {self.path}: a route that changes things needs a credential")

    @property
    def status(self) -> int:
        """The status of a view the handler returns: the route's first 2xx answer."""
        return next((s for s in sorted(self.answers) if 200 <= s < 300), 200)

    def responses(self) -> dict[int, Answer]:
        out = dict(self.answers)
        if self.auth is not Auth.NONE and 401 not in out:
            out[401] = error(UNAUTHORIZED[self.auth])
        if self.auth in ROLE_OF and self.auth is not Auth.READER and 403 not in out:
            out[403] = error(f"the token's role ranks below {ROLE_OF[self.auth]}")
        return dict(sorted(out.items()))

    def mount(self) -> web.RouteDef:
        if self.method.upper() == "GET":
            return web.get(self.path, self._endpoint)  # HEAD as well (boot files: HEAD before a ranged GET)
        return web.route(self.method.upper(), self.path, self._endpoint)

    async def _endpoint(self, request: web.Request) -> web.StreamResponse:
        ctx = request.app.get(API)
        call: Call[Any] | None = None
        who: str | None = None
        try:
            call = Call(request, self, check(self.auth, request, ctx))
            who = call.caller.name or "-"
            out = await self.handler(call)
        except DomainError as e:
            response: web.StreamResponse = domain_error_response(e)
            if isinstance(e, RoleRefused):  # a known token tried what its role may not: recorded too
                who = e.token
            if isinstance(e, SeenInClear) and ctx is not None:
                await revoke_seen_in_clear(ctx, request, e.token)
        else:
            response = out if isinstance(out, web.StreamResponse) else web.json_response(rendered(out),
                                                                                          status=self.status)
        if who is not None and ctx is not None and self.audited:
            fields = (call._raw if call is not None else None) or {}
            await record_change(ctx, request, self, who, fields, response.status)
        return response

    @property
    def audited(self) -> bool:
        """A change by a named caller (a role token, or a host's update token) goes into the audit log."""
        return self.method.upper() not in SAFE_METHODS and (self.auth in ROLE_OF or self.auth is Auth.UPDATE)


@dataclass(slots=True)
class Call(Generic[B]):
    """One request to a declared route."""

    request: web.Request
    route: Route
    caller: Caller
    _body: Any = None
    _raw: dict[str, Any] | None = None

    @property
    def ctx(self) -> ApiContext:
        return self.request.app[API]

    @property
    def bearer(self) -> str | None:
        return self.caller.bearer

    async def raw(self) -> dict[str, Any]:
        """The body's JSON object, as sent (PATCH: the keys given are what changes)."""
        if self._raw is None:
            self._raw = await json_body(self.request, self.route.max_bytes)
        return self._raw

    async def body(self) -> B:
        """The body as the route's body type (Invalid names the key path that does not fit). Parsed when
        asked, so a use case checking an install token first refuses a stranger before reading its body."""
        if self._body is None:
            assert self.route.body is not None, f"{self.route.path} declares no body"
            self._body = parse_body(self.route.body, await self.raw(), unknown=self.route.unknown)
        return self._body  # type: ignore[no-any-return]

    def answer(self, view: Any, status: int | None = None, headers: Mapping[str, str] | None = None) -> web.Response:
        """A view as JSON with another status than the route's first 2xx, or with headers."""
        return web.json_response(rendered(view), status=status or self.route.status, headers=headers)


async def record_change(ctx: ApiContext, request: web.Request, route: Route, who: str, fields: Mapping[str, Any],
                        status: int) -> None:
    """The audit entry of one change through the API (state/audit.py): who, from where, what, the outcome."""
    entry = audit.AuditEntry(
        at=ctx.clock(), who=who, via="api", peer=request.remote, operation=f"{route.method.upper()} {route.path}",
        target="/".join(request.match_info.values()) or None, fields=dict(fields), outcome=str(status))
    max_entries, max_age = ctx.live.audit_limits
    try:
        await ctx.store.journal.run(audit.record_op(entry, max_entries=max_entries, max_age=max_age))
    except StoreFailure as e:  # the change itself stands; the store says why it took no more
        log.error("audit-failed", operation=entry.operation, who=entry.who, error=str(e))


async def revoke_seen_in_clear(ctx: ApiContext, request: web.Request, name: str) -> None:
    """The token `name` crossed the network in clear (services.auth.SeenInClear): it ends now. A named token
    is revoked; the admin token file gets a new token (the CLI on the appliance reads the file each time).
    Recorded in the audit log as a change made by the appliance itself."""
    try:
        if name == tokens.ADMIN_NAME:
            if ctx.replace_admin_token is None:
                return
            ctx.admin_token = ctx.replace_admin_token()
            revoked = True
        else:
            revoked = await ctx.store.journal.run(tokens.revoke_op(name))
    except (OSError, StoreFailure) as e:
        log.error("token-revoke-failed", token=name, error=str(e))
        return
    if revoked:
        entry = audit.AuditEntry(at=ctx.clock(), who="imageserver", via="api", peer=request.remote,
                                 operation="revoke token seen over plain HTTP", target=name,
                                 fields={"method": request.method, "path": request.path}, outcome="revoked")
        max_entries, max_age = ctx.live.audit_limits
        try:
            await ctx.store.journal.run(audit.record_op(entry, max_entries=max_entries, max_age=max_age))
        except StoreFailure as e:
            log.error("audit-failed", operation=entry.operation, who=entry.who, error=str(e))


def rendered(view: Any) -> Any:
    """A view's JSON (its own as_json where it has one), or a plain dict as it is."""
    if not is_dataclass(view):
        return view
    as_json = getattr(view, "as_json", None)
    return as_json() if callable(as_json) else view_json(view)


async def json_body(request: web.Request, max_bytes: int = MAX_BYTES) -> dict[str, Any]:
    """The request's JSON object, or Invalid saying what is wrong with it (too big, too deep, not JSON)."""
    try:
        if request.content_length is not None and request.content_length > max_bytes:
            raise BodyError(f"body is larger than {max_bytes} bytes")
        # Read at most one byte past the cap (a chunked body has no length to check first).
        raw = await request.content.read(max_bytes + 1)
        while len(raw) <= max_bytes and not request.content.at_eof():
            more = await request.content.read(max_bytes + 1 - len(raw))
            if not more:
                break
            raw += more
        body = parse_json(raw, max_bytes=max_bytes)
    except BodyError as e:
        raise Invalid(str(e)) from None
    if not isinstance(body, dict):
        raise Invalid("body must be a JSON object")
    return body


@dataclass(slots=True)
class Mounted:
    """The declared routes an application mounts, and what is made of them once (its OpenAPI document)."""

    routes: tuple[Route, ...]
    made: dict[str, Any] = field(default_factory=dict)


MOUNTED = web.AppKey("routes", Mounted)


def mount(routes: Sequence[Route]) -> list[web.RouteDef]:
    return [r.mount() for r in routes]


__all__ = ["JSON", "Answer", "Auth", "Call", "Param", "Route", "binary", "error", "json_body", "mount",
           "ok", "text"]
