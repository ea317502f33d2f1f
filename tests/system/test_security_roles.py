"""Issue 24: named tokens with roles. Every route x every role x no token, from one table generated from the
route declarations (appliance.daemon.wiring.api_route_modules: each Route names its credential once).

The real daemon runs in a server namespace; the tokens are made by the CLI there (`imageserver tokens add`,
which asks the daemon's API with the appliance's admin.token); every request is curl from a machine on the
provisioning LAN (the client namespace, with a real DHCP lease). What the table expects of each route:
- a role route (reader < operator < admin): no token or an unknown one 401; a token whose role ranks below
  403; one that ranks high enough gets the handler's own answer (path parameters name nothing that exists and
  bodies are `{}`, so nothing changes: 400/404/409, or 200 for reads), one the route documents;
- an open route and the routes of other credentials (install, update, satellite): the same answer with every
  role token as with none (a role token opens nothing there), and never a 2xx for the credentialed ones.
Also: /api/v1/status and /metrics stay open and name no MAC, address or host; `tokens list` shows no
secret; a revoked token is refused at once.
"""

from __future__ import annotations

import json
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from appliance.daemon.wiring import api_route_modules
from domain.tokens import ROLES, allows
from lab.clients import Dhclient
from lab.netns import Lab, Pair
from services.auth import ROLE_OF, Auth
from services.routes import Route
from tests.system._daemon import HTTPS_PORT, Imageserver

pytestmark = [pytest.mark.system, pytest.mark.skipif(shutil.which("curl") is None, reason="curl is needed")]

NODE_MAC = "52:54:00:24:05:01"
FILL = {"mac": "52:54:00:99:99:99", "name": "nobody", "key": "k", "torrent": "t", "path": "p"}
CALLERS = (None, *ROLES)  # no token, then a named token of each role


@dataclass(frozen=True)
class Case:
    route: Route
    url_path: str

    @property
    def label(self) -> str:
        return f"{self.route.method} {self.route.path}"


def cases() -> list[Case]:
    """Every declared route, its path parameters filled with names of nothing that exists."""
    out = []
    for module in api_route_modules():
        for route in module:
            path = re.sub(r"\{(\w+)(?::[^}]*)?\}", lambda m: FILL[m.group(1)], route.path)
            out.append(Case(route, path))
    return out


def expected(route: Route, role: str | None) -> str:
    """'refused-401', 'refused-403', 'allowed' (the handler answers), or 'as-anonymous'."""
    needed = ROLE_OF.get(route.auth)
    if needed is None:
        return "as-anonymous"
    if role is None:
        return "refused-401"
    return "allowed" if allows(role, needed) else "refused-403"


@dataclass
class World:
    pair: Pair
    server: Imageserver
    tokens: dict[str, str]
    tmp: Path

    @property
    def base(self) -> str:
        return f"https://{self.pair.server_ip}:{HTTPS_PORT}"  # role tokens from the LAN: over TLS only

    def curl(self, method: str, path: str, token: str | None, body: bool) -> tuple[int, str]:
        out = self.tmp / f"r-{time.monotonic_ns()}"
        argv = ["curl", "-sk", "--max-time", "10", "--path-as-is", "-o", str(out), "-w", "%{http_code}",
                "-X", method]
        if token is not None:
            argv += ["-H", f"Authorization: Bearer {token}"]
        if body:
            argv += ["-H", "Content-Type: application/json", "--data", "{}"]
        code = self.pair.client.run([*argv, self.base + path], check=False, timeout=20).stdout
        assert code and code != "000", f"curl reached nothing: {method} {path}"
        return int(code), out.read_text(errors="replace") if out.exists() else ""


@pytest.fixture
def world(lab: Lab) -> World:
    pair = lab.server_client_pair()
    server = Imageserver(pair.server, pair.server_if, pair.server_ip, pair.subnet).start()
    server.cli("hosts", "add", "node1", "--mac", NODE_MAC, "--ip", str(pair.host(40)))
    tokens = {role: server.cli("tokens", "add", f"desk-{role}", "--role", role).strip() for role in ROLES}
    assert all(t.startswith("ist-") for t in tokens.values()), tokens
    # A machine on the LAN (the leases test takes a real lease besides).
    pair.client.add_address(pair.client_if, f"{pair.host(50)}/{pair.subnet.prefixlen}")
    tmp = lab.tmp_path("roles")
    tmp.mkdir()
    return World(pair, server, tokens, tmp)


def test_every_route_with_every_role_and_none_answers_as_its_declaration_says(world: World) -> None:
    w = world
    table = [(case, role, expected(case.route, role)) for case in cases() for role in CALLERS]
    assert {e for _, _, e in table} == {"refused-401", "refused-403", "allowed", "as-anonymous"}
    anonymous: dict[str, int] = {}
    wrong: list[str] = []
    for case, role, expect in table:
        token = w.tokens[role] if role else None
        status, text = w.curl(case.route.method, case.url_path, token, case.route.body is not None)
        got = f"{case.label} as {role or 'nobody'}: {status} {text[:160]}"
        if role is None:
            anonymous[case.label] = status
        if expect == "refused-401":
            ok = status == 401
        elif expect == "refused-403":
            ok = status == 403 and "role" in json.loads(text)["error"]
        elif expect == "allowed":
            ok = status not in (401, 403) and status in case.route.responses()
        else:
            ok = status == anonymous[case.label]
            if case.route.auth in (Auth.INSTALL, Auth.UPDATE, Auth.SATELLITE):
                ok = ok and not 200 <= status < 300
        if not ok:
            wrong.append(f"expected {expect}: {got}")
    assert wrong == [], "\n".join(wrong)
    # The roles the issue names: a reader cannot reinstall, an operator can; an operator cannot add a token.
    reinstall = "/api/v1/hosts/node1/reinstall"
    assert w.curl("POST", reinstall, w.tokens["reader"], False)[0] == 403
    assert w.curl("POST", reinstall, w.tokens["operator"], False)[0] == 200
    new_token = "/api/v1/tokens"
    assert w.curl("POST", new_token, w.tokens["operator"], True)[0] == 403
    # The admin token file is an admin (the CLI on the appliance uses it): tokens list shows no secret.
    listed = w.server.cli("tokens", "list")
    assert "desk-reader" in listed and "operator" in listed and "admin" in listed
    assert not any(t in listed for t in w.tokens.values())
    assert w.server.daemon.admin_token() not in listed


def test_status_and_metrics_stay_open_and_name_no_machine(world: World) -> None:
    w = world
    lease = Dhclient(w.pair.client, w.pair.client_if).obtain()
    client_mac = w.pair.client.run(["cat", f"/sys/class/net/{w.pair.client_if}/address"]).stdout.strip()
    assert len(w.server.api("/api/v1/leases")["leases"]) == 1
    secrets = [client_mac, str(lease.ip), NODE_MAC, "node1", str(w.pair.host(40))]
    for path in ("/api/v1/status", "/metrics"):
        status, text = w.curl("GET", path, None, False)
        assert status == 200, (path, status, text[:300])
        leaked = [s for s in secrets if s.lower() in text.lower()]
        assert leaked == [], (path, leaked)
    # The lists that do name them need a token.
    for path in ("/api/v1/leases", "/api/v1/hosts", "/api/v1/machines", "/hosts"):
        assert w.curl("GET", path, None, False)[0] == 401, path
        status, text = w.curl("GET", path, w.tokens["reader"], False)
        assert status == 200 and (client_mac in text or "node1" in text), (path, text[:300])


def test_a_revoked_token_is_refused_at_once(world: World) -> None:
    w = world
    token = w.tokens["operator"]
    assert w.curl("GET", "/api/v1/hosts", token, False)[0] == 200
    w.server.cli("tokens", "revoke", "desk-operator")
    started = time.monotonic()
    status, text = w.curl("GET", "/api/v1/hosts", token, False)
    assert status == 401 and time.monotonic() - started < 1.0, (status, text)
    assert w.curl("POST", "/api/v1/hosts/node1/reinstall", token, False)[0] == 401
    assert "desk-operator" not in w.server.cli("tokens", "list")
    # The others still work.
    assert w.curl("GET", "/api/v1/hosts", w.tokens["reader"], False)[0] == 200
