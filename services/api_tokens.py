"""Named API tokens with roles (the use cases in domain/tokens.py), over the admin API; `imageserver tokens` asks these.

  GET    /api/v1/tokens          {"tokens": [{"name", "role", "created"}]}: never a secret; the admin token file
                                 is listed as "admin"
  POST   /api/v1/tokens          {"name", "role": "reader"|"operator"|"admin"} -> {"name", "role", "token"}: the
                                 token is in this answer only (the table keeps its SHA-256)
  DELETE /api/v1/tokens/{name}   revoke: the next request with it is refused

All three need the admin role.
"""

from __future__ import annotations

from dataclasses import dataclass

from domain import tokens
from domain.tokens import TokenAdded, TokenList, TokenRevoked
from services.auth import Auth
from services.routes import Call, Param, Route, error, ok
from state.eventlog import EventLog

log = EventLog("imageserver.tokens")


@dataclass(frozen=True, slots=True)
class NewToken:
    """POST /api/v1/tokens."""

    name: str
    role: str


async def list_tokens(call: Call[None]) -> TokenList:
    return tokens.token_list(call.ctx.store.reader)


async def add(call: Call[NewToken]) -> TokenAdded:
    body = await call.body()
    added = await call.ctx.store.journal.run(tokens.add_op(body.name, body.role, call.ctx.clock()))
    log.info("token-added", token=body.name, role=body.role, by=call.caller.name or "-")
    return added


async def revoke(call: Call[None]) -> TokenRevoked:
    revoked = await call.ctx.store.journal.run(tokens.revoke_op(call.request.match_info["name"]))
    log.info("token-revoked", token=revoked.revoked, by=call.caller.name or "-")
    return revoked


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
