"""Another DHCP server on the segment: busybox udhcpd next to the imageserver on one bridge.

The daemon finds it with its start-up DISCOVER and reports it in /api/v1/status. In authoritative mode
it then gives pool addresses to no new machine (a real udhcpc gets its lease from udhcpd, and none of
ours is on disk), unless `[dhcp] allow_rogue = true`, with which it keeps offering.
"""

from __future__ import annotations

import re
import time
from typing import Any

import pytest

from lab.clients import Udhcpc
from lab.netns import Lab
from lab.servers import start_udhcpd
from tests.system._daemon import Imageserver

pytestmark = pytest.mark.system


def wait_probed(server: Imageserver, timeout: float = 15) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        other = server.api("/api/v1/status")["services"]["dhcp"]["other_servers"]
        if other.get("probed") or other.get("error"):
            return other
        assert time.monotonic() < deadline, other
        time.sleep(0.2)


@pytest.mark.parametrize("allow_rogue", [False, True])
def test_a_second_dhcp_server_is_reported_and_the_pool_refused_unless_allowed(lab: Lab, allow_rogue: bool) -> None:
    seg = lab.segment("rogue", "cli")
    (rog, r_if), (cli, c_if) = seg.members
    srv, bridge, subnet, server_ip, rogue_ip = seg.server, seg.bridge, seg.subnet, seg.server_ip, seg.host(2)
    rog.add_address(r_if, f"{rogue_ip}/24")
    udhcpd = start_udhcpd(rog, r_if, rogue_ip, subnet, pool=(200, 220))

    server = Imageserver(srv, bridge, server_ip, subnet, extra=f"allow_rogue = {str(allow_rogue).lower()}").start()
    other = wait_probed(server)
    assert other["probed"] is True and other["servers"] == [str(rogue_ip)], other

    dhcp = server.api("/api/v1/status")["services"]["dhcp"]
    assert dhcp["other_servers"]["refusing_pool"] is (not allow_rogue)
    lease = Udhcpc(cli, c_if).obtain()
    counters = server.dhcp_counters()
    if allow_rogue:
        assert counters.get("out_offer", 0) >= 1, counters
        assert counters.get("refused_other_server", 0) == 0
    else:
        assert lease.server_id == rogue_ip and udhcpd.in_pool(lease.ip), lease
        assert counters.get("refused_other_server", 0) >= 1 and counters.get("out_offer", 0) == 0, counters
        assert server.db().execute("SELECT count(*) FROM leases").fetchone()[0] == 0
        assert "event=other-dhcp-server" in server.log() and "action=pool-refused" in server.log()
    # The probe's own DISCOVER is not a machine we saw: only the client is.
    client_mac = re.search(r"link/ether (\S+)", cli.ip("link", "show", c_if).stdout).group(1)
    assert {row[0] for row in server.db().execute("SELECT mac FROM machines")} == {client_mac}
