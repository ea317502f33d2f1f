"""Named API tokens with roles (state/tokens.py), over the admin API; `imageserver tokens` asks these.

  GET    /api/v1/tokens          {"tokens": [{"name", "role", "created"}]}: never a secret; the admin token file
                                 is listed as "admin"
  POST   /api/v1/tokens          {"name", "role": "reader"|"operator"|"admin"} -> {"name", "role", "token"}: the
                                 token is in this answer only (the table keeps its SHA-256)
  DELETE /api/v1/tokens/{name}   revoke: the next request with it is refused

All three need the admin role.
"""

from __future__ import annotations

from dataclasses import dataclass

from domain.errors import Conflict, Invalid, NotFound
from services.auth import Auth
from services.routes import Call, Param, Route, error, ok
from state import tokens
from state.eventlog import EventLog

log = EventLog("imageserver.tokens")


@dataclass(frozen=True, slots=True)
class NewToken:
    """POST /api/v1/tokens."""

    name: str
    role: str


@dataclass(frozen=True, slots=True)
class TokenView:
    name: str
    role: str
    created: float | None


@dataclass(frozen=True, slots=True)
class TokenList:
    tokens: list[TokenView]


@dataclass(frozen=True, slots=True)
class TokenAdded:
    name: str
    role: str
    token: str


@dataclass(frozen=True, slots=True)
class TokenRevoked:
    revoked: str


def listed(conn_tokens: list[tokens.ApiToken]) -> TokenList:
    admin = TokenView(tokens.ADMIN_NAME, "admin", None)
    return TokenList([admin, *(TokenView(t.name, t.role, t.created) for t in conn_tokens)])


async def list_tokens(call: Call[None]) -> TokenList:
    return listed(tokens.list_tokens(call.ctx.store.reader))


async def add(call: Call[NewToken]) -> TokenAdded:
    ctx = call.ctx
    body = await call.body()
    try:
        op = tokens.add_op(body.name, body.role, ctx.clock())
    except tokens.TokenError as e:
        raise Invalid(str(e)) from None
    try:
        token = await ctx.store.journal.run(op)
    except tokens.TokenError as e:
        raise Conflict(str(e)) from None
    log.info("token-added", token=body.name, role=body.role, by=call.caller.name or "-")
    return TokenAdded(body.name, body.role, token)


async def revoke(call: Call[None]) -> TokenRevoked:
    ctx = call.ctx
    name = call.request.match_info["name"]
    if not await ctx.store.journal.run(tokens.revoke_op(name)):
        raise NotFound(f"no token named {name}" + (" (the admin token file cannot be revoked here: replace "
                                                   "<state_dir>/admin.token)" if name == tokens.ADMIN_NAME else ""))
    log.info("token-revoked", token=name, by=call.caller.name or "-")
    return TokenRevoked(name)


ROUTES = [
    Route("GET", "/api/v1/tokens", list_tokens, "The API tokens: name, role, created (never the secret)",
          {200: ok("the tokens", TokenList)}, auth=Auth.ADMIN),
    Route("POST", "/api/v1/tokens", add,
          "A new named token with a role (reader, operator or admin); the token is in this answer only",
          {201: ok("the token, shown once", TokenAdded), 400: error("a bad name or role"),
           409: error("the name is taken")},
          auth=Auth.ADMIN, body=NewToken),
    Route("DELETE", "/api/v1/tokens/{name}", revoke, "Revoke a named token: refused from the next request on",
          {200: ok("revoked", TokenRevoked), 404: error("no such token")},
          auth=Auth.ADMIN, params={"name": Param("the token's name")}),
]
