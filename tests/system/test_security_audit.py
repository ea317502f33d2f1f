"""Issue 24: the audit log. Changes through the API (curl from a machine on the LAN with named tokens) and
through the offline CLI each leave an entry: who (the token's name, or the local user), via, from where, the
operation, its target, the fields given, and the outcome; GET /api/v1/audit (admin) and `imageserver audit`
show them; the entries survive kill -9 of the daemon (they are in the state database).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from lab.netns import Lab, Pair
from tests.system._daemon import HTTPS_PORT, Imageserver

pytestmark = pytest.mark.system

MAC1, MAC2 = "52:54:00:24:0a:01", "52:54:00:24:0a:02"


@dataclass
class World:
    pair: Pair
    server: Imageserver
    client_ip: str
    tmp: Path

    def curl(self, method: str, path: str, token: str, body: dict[str, Any] | None = None) -> tuple[int, str]:
        out = self.tmp / f"r-{time.monotonic_ns()}"
        argv = ["curl", "-sk", "--max-time", "10", "-o", str(out), "-w", "%{http_code}", "-X", method,
                "-H", f"Authorization: Bearer {token}"]
        if body is not None:
            argv += ["-H", "Content-Type: application/json", "--data", json.dumps(body)]
        code = self.pair.client.run([*argv, f"https://{self.pair.server_ip}:{HTTPS_PORT}{path}"], timeout=20).stdout
        return int(code), out.read_text() if out.exists() else ""


def test_changes_through_the_api_and_the_offline_cli_are_audited_and_survive_kill_9(lab: Lab) -> None:
    pair = lab.server_client_pair()
    server = Imageserver(pair.server, pair.server_if, pair.server_ip, pair.subnet).start()
    client_ip = str(pair.host(50))
    pair.client.add_address(pair.client_if, f"{client_ip}/{pair.subnet.prefixlen}")
    tmp = lab.tmp_path("audit")
    tmp.mkdir()
    w = World(pair, server, client_ip, tmp)
    operator = server.cli("tokens", "add", "helpdesk", "--role", "operator").strip()
    reader = server.cli("tokens", "add", "viewer", "--role", "reader").strip()

    assert w.curl("POST", "/api/v1/hosts", operator, {"name": "node1", "mac": MAC1})[0] == 201
    assert w.curl("PATCH", "/api/v1/hosts/node1", operator, {"state": "nonsense"})[0] in (400, 409)
    assert w.curl("POST", "/api/v1/hosts/node1/reinstall", reader)[0] == 403
    assert w.curl("GET", "/api/v1/audit", reader)[0] == 403  # the log is the admin's
    assert w.curl("GET", "/api/v1/audit", operator)[0] == 403

    entries = server.api("/api/v1/audit")["entries"]  # the appliance's admin token
    by_op = {(e["operation"], e["outcome"]): e for e in entries}
    added = by_op[("POST /api/v1/hosts", "201")]
    assert added["who"] == "helpdesk" and added["via"] == "api" and added["peer"] == client_ip
    assert added["fields"] == {"name": "node1", "mac": MAC1}
    refused = by_op[("POST /api/v1/hosts/{name}/reinstall", "403")]  # a known token beyond its role: recorded
    assert refused["who"] == "viewer" and refused["target"] == "node1" and refused["peer"] == client_ip
    patched = next(e for e in entries if e["operation"] == "PATCH /api/v1/hosts/{name}")
    assert patched["target"] == "node1" and patched["outcome"] in ("400", "409") and patched["who"] == "helpdesk"
    tokens_added = [e for e in entries if e["operation"] == "POST /api/v1/tokens"]
    assert {e["fields"]["name"] for e in tokens_added} == {"helpdesk", "viewer"}
    assert all(e["who"] == "admin" and e["outcome"] == "201" for e in tokens_added)  # the CLI, through the API
    assert operator not in json.dumps(entries) and reader not in json.dumps(entries)  # no secret in the log
    assert [e["id"] for e in entries] == sorted((e["id"] for e in entries), reverse=True)  # newest first

    # kill -9: what was recorded stays; the offline CLI's change is recorded too, with its user and exit code.
    server.kill9()
    server.cli("hosts", "add", "node2", "--mac", MAC2)
    offline = json.loads(server.cli("audit", "--json"))
    cli = offline[0]
    assert cli["via"] == "cli" and cli["operation"] == "imageserver hosts add" and cli["target"] == "node2"
    assert cli["outcome"] == "exit 0" and cli["who"] and "node2" in cli["fields"]["argv"]
    assert {(e["operation"], e["who"]) for e in offline} >= {("POST /api/v1/hosts", "helpdesk"),
                                                           ("PATCH /api/v1/hosts/{name}", "helpdesk")}
    text = server.cli("audit")
    assert "helpdesk" in text and "imageserver hosts add" in text
