"""domain/tokens.py (the use cases) over state/tokens.py (the table): named tokens with roles, stored hashed,
revoked at once."""

from __future__ import annotations

import re
import sqlite3

import pytest

from appliance.daemon.wiring import api_route_modules
from domain import tokens as use_cases
from domain.errors import Conflict, Invalid, NotFound
from services.adminnet import is_admin_read
from services.auth import ROLE_OF
from state import tokens


def test_a_token_is_kept_only_as_its_hash_and_authenticates_until_revoked() -> None:
    conn = sqlite3.connect(":memory:")
    assert tokens.authenticate(conn, "ist-anything") is None  # no table yet: nobody
    secret = use_cases.add_op("desk", "reader", 100.0)(conn).token
    assert secret.startswith(tokens.TOKEN_PREFIX) and len(secret) > 40
    dump = "\n".join(conn.iterdump())
    assert secret not in dump and tokens.token_hash(secret) in dump  # never in clear at rest
    assert tokens.authenticate(conn, secret) == tokens.ApiToken("desk", "reader", 100.0)
    assert tokens.authenticate(conn, secret + "x") is None and tokens.authenticate(conn, None) is None
    assert tokens.list_tokens(conn) == [tokens.ApiToken("desk", "reader", 100.0)]
    assert tokens.revoke_op("desk")(conn) and not tokens.revoke_op("desk")(conn)
    assert tokens.authenticate(conn, secret) is None


def test_names_roles_and_ranks() -> None:
    conn = sqlite3.connect(":memory:")
    for name, role in (("admin", "admin"), ("Bad Name", "reader"), ("ok", "root")):
        with pytest.raises(Invalid):
            use_cases.add_op(name, role, 0.0)(conn)
    use_cases.add_op("ops", "operator", 0.0)(conn)
    with pytest.raises(Conflict, match="exists"):
        use_cases.add_op("ops", "admin", 0.0)(conn)
    assert use_cases.allows("admin", "operator") and use_cases.allows("operator", "reader")
    assert not use_cases.allows("reader", "operator") and not use_cases.allows("operator", "admin")


def test_admin_networks_limit_exactly_the_reads_that_need_a_role() -> None:
    """[http] admin_networks (services/adminnet.py, by path) and the reader role (services/routes.py, by
    declaration) name the same reads: a list a token opens is never left open to the LAN by the network rule."""
    for module in api_route_modules():
        for route in module:
            if route.method != "GET":
                continue
            path = re.sub(r"\{(\w+)(?::[^}]*)?\}", "x", route.path)
            assert is_admin_read(path) == (route.auth in ROLE_OF), (route.path, route.auth)


def test_the_use_cases_list_revoke_and_cap_the_table(monkeypatch: pytest.MonkeyPatch) -> None:
    """What the API and the offline CLI both run: the admin token file listed first, never a secret; a token
    minted by state.credentials.new_token only; revoking an unknown name is NotFound; the table is capped."""
    conn = sqlite3.connect(":memory:")
    assert use_cases.token_list(conn) == use_cases.TokenList([use_cases.TokenView("admin", "admin", None)])
    monkeypatch.setattr(use_cases, "new_token", lambda: "minted-by-credentials")
    added = use_cases.add_op("desk", "operator", 5.0)(conn)
    assert added == use_cases.TokenAdded("desk", "operator", "ist-minted-by-credentials")
    assert tokens.authenticate(conn, added.token) == tokens.ApiToken("desk", "operator", 5.0)
    assert use_cases.token_list(conn).tokens[1:] == [use_cases.TokenView("desk", "operator", 5.0)]
    assert "minted" not in repr(use_cases.token_list(conn))
    assert use_cases.revoke_op("desk")(conn) == use_cases.TokenRevoked("desk")
    with pytest.raises(NotFound, match="no token named desk"):
        use_cases.revoke_op("desk")(conn)
    with pytest.raises(NotFound, match="admin token file"):
        use_cases.revoke_op("admin")(conn)
    monkeypatch.setattr(use_cases, "MAX_TOKENS", 2)
    monkeypatch.setattr(use_cases, "new_token", lambda: str(len(tokens.list_tokens(conn))))
    use_cases.add_op("a", "reader", 0.0)(conn)
    use_cases.add_op("b", "reader", 0.0)(conn)
    with pytest.raises(Conflict, match="at most 2"):
        use_cases.add_op("c", "reader", 0.0)(conn)
