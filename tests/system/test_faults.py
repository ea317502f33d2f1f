"""Faults around the running daemon: the other services carry on and /api/v1/status says what is wrong.

- The real rsync daemon crashing in a loop (another process holds tcp/873, so every rsync exits at once
  with "bind() failed"): restarts with backoff, the status says failed with rsync's reason, DHCP and
  HTTP keep answering, and once the port is free rsync is back without restarting the imageserver.
- No rsync binary at all: the service is failed from the start; the rest runs.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from lab.clients import Udhcpc
from lab.netns import Lab, Pair
from lab.servers import start_httpd
from tests.system._daemon import Imageserver

pytestmark = pytest.mark.system


def wait_status(server: Imageserver, check: Callable[[dict[str, Any]], bool], timeout: float, what: str) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        status = server.api("/api/v1/status")
        if check(status):
            return status
        assert time.monotonic() < deadline, f"{what}: {status['services']}"
        time.sleep(0.2)


def rsyncd_server(pair: Pair) -> Imageserver:
    return Imageserver(pair.server, pair.server_if, pair.server_ip, pair.subnet,
                       extra='\n[rsyncd]\nenabled = true\nport = 873\n')


def test_rsync_crashing_in_a_loop_backs_off_fails_and_recovers_while_dhcp_serves(lab: Lab) -> None:
    pair = lab.server_client_pair()
    root = lab.tmp_path("www")
    root.mkdir()
    squatter = start_httpd(pair.server, pair.server_ip, root, port=873)
    server = rsyncd_server(pair).start()

    failed = wait_status(server, lambda s: s["services"]["rsyncd"]["state"] == "failed", 30, "rsyncd never failed")
    rsyncd = failed["services"]["rsyncd"]
    assert "in use" in rsyncd["error"].lower(), rsyncd["error"]
    restarts = rsyncd["counters"]["restarts"]
    assert restarts >= 5
    assert failed["services"]["dhcp"]["state"] == "running" and failed["services"]["http"]["state"] == "running"
    lease = Udhcpc(pair.client, pair.client_if).obtain()
    assert lease.ip in pair.subnet

    # Backoff: one second later it has not been restarted five more times (no tight loop).
    time.sleep(1.0)
    later = server.api("/api/v1/status")["services"]["rsyncd"]["counters"]["restarts"]
    assert later - restarts <= 1, (restarts, later)

    squatter.proc.stop()
    wait_status(server, lambda s: s["services"]["rsyncd"]["state"] == "running", 40, "rsyncd did not come back")
    out = pair.server.run(["rsync", f"rsync://{pair.server_ip}/"], check=False)
    assert out.returncode == 0, out.stderr
    assert "Traceback" not in server.log()


def test_no_rsync_binary_fails_only_the_rsync_service(lab: Lab) -> None:
    pair = lab.server_client_pair()
    server = rsyncd_server(pair)
    empty = lab.tmp_path("bin")
    empty.mkdir()
    # The daemon's PATH holds no rsync; the interpreter is named by its full path.
    server.start(20, prefix=["env", f"PATH={empty}"])
    status = server.api("/api/v1/status")["services"]
    assert status["rsyncd"]["state"] == "failed" and "not found" in status["rsyncd"]["error"]
    assert status["dhcp"]["state"] == "running"
    assert Udhcpc(pair.client, pair.client_if).obtain().ip in pair.subnet
