"""Named API tokens: the use cases the admin API (services/api_tokens.py) and `imageserver tokens` (offline,
on the state database) share, and what they answer, as views.

The rules live here: how roles rank, what a token may be named, which roles exist, how many tokens there
may be, and that a new token is minted by state.credentials.new_token (its secret is in the answer to `add`
only; the table, state/tokens.py, keeps its SHA-256). Refusals are domain errors: Invalid (a bad name or
role), Conflict (the name is taken, too many tokens), NotFound (revoking a token that does not exist).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from domain.errors import Conflict, Invalid, NotFound
from state import tokens as stored
from state.credentials import new_token
from state.db import Connection

ROLES = stored.ROLES  # ranked: each may do what the ones before it may
TOKEN_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")
MAX_TOKENS = 256


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


def rank(role: str) -> int:
    """reader 0 < operator 1 < admin 2. Reader reads everything (hosts, leases, machines, images); operator
    may also assign, reinstall and edit hosts; admin may also change images, tokens, satellites and settings."""
    return ROLES.index(role)


def allows(role: str, needed: str) -> bool:
    """Whether a token of `role` may do what needs `needed`."""
    return rank(role) >= rank(needed)


def check(name: str, role: str) -> None:
    """Invalid unless `name` may name a token and `role` is one of ROLES."""
    if not isinstance(name, str) or not TOKEN_NAME.match(name):
        raise Invalid(f"token name {name!r}: use 1-63 lower-case letters, digits, '.', '_' or '-', "
                      "starting with a letter or digit")
    if name == stored.ADMIN_NAME:
        raise Invalid(f"{stored.ADMIN_NAME!r} is the admin token file's name (<state_dir>/admin.token)")
    if role not in ROLES:
        raise Invalid(f"role {role!r}: one of {', '.join(ROLES)}")


def add_op(name: str, role: str, now: float) -> Callable[[Connection], TokenAdded]:
    """A new named token, checked now (Invalid) and written by the returned op (Conflict if the name is
    taken or the table full). The answer carries the token: shown once, only its hash is kept."""
    check(name, role)

    def op(conn: Connection) -> TokenAdded:
        if stored.exists(conn, name):
            raise Conflict(f"token {name} exists (revoke it first to issue a new one)")
        if stored.count(conn) >= MAX_TOKENS:
            raise Conflict(f"at most {MAX_TOKENS} named tokens")
        token = stored.TOKEN_PREFIX + new_token()
        stored.insert(conn, name, role, token, now)
        return TokenAdded(name, role, token)

    return op


def revoke_op(name: str) -> Callable[[Connection], TokenRevoked]:
    """Delete the named token: refused from its next request on. NotFound if there is none (the admin
    token file is not a row: it is replaced, not revoked)."""

    def op(conn: Connection) -> TokenRevoked:
        if not stored.revoke_op(name)(conn):
            raise NotFound(f"no token named {name}" + (
                " (the admin token file cannot be revoked here: replace <state_dir>/admin.token)"
                if name == stored.ADMIN_NAME else ""))
        return TokenRevoked(name)

    return op


def token_list(conn: Connection) -> TokenList:
    """The tokens, never a secret: the admin token file first (as ADMIN_NAME), then the named ones by name."""
    admin = TokenView(stored.ADMIN_NAME, "admin", None)
    return TokenList([admin, *(TokenView(t.name, t.role, t.created) for t in stored.list_tokens(conn))])
