"""200 hosts in one command against 200 simulated BMCs: sushy-tools' Redfish emulator serving 200 fake systems
(one process; each host's BMC address names its system, /redfish/v1/Systems/nodeNNN), with HTTP basic auth.

The hosts get their BMC from a profile (`profiles add rack --bmc 'http://.../Systems/{host}'`, then one bulk
`hosts set 'node[001-200]' --profile rack`), two of them one of their own: a wrong password, and an address
that accepts connections and never answers. Then `hosts reinstall 'node[001-200]' --power-cycle` is ONE request
(POST /api/v1/bulk/reinstall): every host is marked for install and, through its BMC, set to boot from the
network once and power cycled. Per-host results; the wrong and the silent BMC fail their own hosts only, with
their reasons; the concurrency is bounded by [power] concurrency, seen in the per-host timings (the most BMC
calls in flight at once), not in the wall clock. The last power state is on the host view afterwards."""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from lab.netns import Lab
from tests.system._daemon import Imageserver

bcrypt = pytest.importorskip("bcrypt")
EMULATOR = Path(sys.executable).parent / "sushy-emulator"
pytestmark = [pytest.mark.system,
              pytest.mark.skipif(not EMULATOR.exists() or shutil.which("curl") is None,
                                 reason="needs sushy-tools (pip install -e '.[test]') and curl")]

HOSTS = 200
CONCURRENCY = 16
TIMEOUT = 15  # above the fake driver's 1-11 s before a power change shows (a host that must settle on)
PASSWORD = "rf-fleet-4c1a-Secret"
REDFISH, SILENT = 8000, 8001


def in_flight(results: list[dict[str, Any]]) -> int:
    """The most BMC calls running at once, from each host's start and duration. Both are rounded to the
    millisecond, so an end computed from them may lie up to 1.5 ms past the true one: an end and the next
    start within 2 ms of each other are taken as the same instant."""
    edges = sorted([(r["started"], 1) for r in results] +
                   [(r["started"] + r["seconds"] - 0.002, -1) for r in results],
                   key=lambda e: (e[0], e[1]))  # an end before a start at the same instant
    most = now = 0
    for _, step in edges:
        now += step
        most = max(most, now)
    return most


@pytest.fixture
def fleet(lab: Lab) -> Imageserver:
    ns = lab.namespace("srv")
    bridge = lab.ifname("br")
    lab.bridge(ns, bridge)
    subnet = lab.random_subnet()
    address = subnet.network_address + 1
    ns.add_address(bridge, f"{address}/{subnet.prefixlen}")
    server = Imageserver(ns, bridge, address, subnet, extra=f"\n[power]\nconcurrency = {CONCURRENCY}\n"
                                                             f"timeout = {TIMEOUT}\npoll = 0\n").start()
    # the emulator: 200 systems named like the hosts, all powered on, behind basic auth
    d = lab.tmp_path("sushy")
    d.mkdir()
    systems = [{"uuid": f"node{i:03d}", "name": f"node{i:03d}", "power_state": "On", "nics": []}
               for i in range(1, HOSTS + 1)]
    (d / "users").write_text(f"admin:{bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(4)).decode()}\n")
    (d / "conf.py").write_text(f"SUSHY_EMULATOR_FAKE_SYSTEMS = {systems!r}\n"
                               f"SUSHY_EMULATOR_AUTH_FILE = {str(d / 'users')!r}\n")
    ns.popen([str(EMULATOR), "--fake", "-i", "127.0.0.1", "-p", str(REDFISH), "--config", str(d / "conf.py")],
             env={**os.environ, "SUSHY_EMULATOR_STATE_DIR": str(d)})
    # a BMC that takes the connection and never says a word
    ns.popen([sys.executable, "-c", "import socket, time\ns = socket.socket()\n"
              f"s.bind(('127.0.0.1', {SILENT}))\ns.listen(64)\ntime.sleep(3600)\n"])
    deadline = time.monotonic() + 60
    while ns.run(["curl", "-sf", "-o", "/dev/null", "-u", f"admin:{PASSWORD}",
                  f"http://127.0.0.1:{REDFISH}/redfish/v1/Systems/node200"], check=False).returncode != 0:
        assert time.monotonic() < deadline, "the Redfish emulator did not come up"
        time.sleep(0.5)
    return server


def test_200_hosts_reinstalled_and_power_cycled_in_one_command(fleet: Imageserver) -> None:
    server = fleet
    secret = server.ns.lab.tmp_path("bmc.pw")
    secret.write_text(PASSWORD + "\n")
    wrong = server.ns.lab.tmp_path("wrong.pw")
    wrong.write_text("not-the-password\n")
    server.cli("addclients", "--base", "node", "--range", f"1-{HOSTS}", "--pad", "3")
    server.cli("profiles", "add", "rack", "--bmc", f"http://127.0.0.1:{REDFISH}/redfish/v1/Systems/{{host}}",
               "--bmc-user", "admin", "--bmc-password-file", str(secret))
    joined = server.daemon.run_cli("hosts", "set", f"node[001-{HOSTS}]", "--profile", "rack", "--json", timeout=60)
    assert joined.returncode == 0, joined.stderr
    assert len(json.loads(joined.stdout)) == HOSTS
    assert server.cli_json("profiles", "show", "rack")["hosts"] == HOSTS
    # two hosts with a BMC of their own (it wins over the profile's): a wrong password, a silent one
    server.cli("hosts", "set", "node050", "--bmc", f"http://127.0.0.1:{REDFISH}/redfish/v1/Systems/node050",
               "--bmc-user", "admin", "--bmc-password-file", str(wrong))
    server.cli("hosts", "set", "node150", "--bmc", f"http://127.0.0.1:{SILENT}", "--bmc-user", "admin",
               "--bmc-password-file", str(secret))

    done = server.daemon.run_cli("hosts", "reinstall", f"node[001-{HOSTS}]", "--power-cycle", "--json", timeout=90)
    assert done.returncode == 1, (done.stdout[-2000:], done.stderr)  # two hosts failed: exit 1
    assert PASSWORD not in done.stdout + done.stderr
    results = {r["host"]: r for r in json.loads(done.stdout)}
    assert len(results) == HOSTS
    failed = {name for name, r in results.items() if not r["ok"]}
    assert failed == {"node050", "node150"}, {n: results[n].get("error") for n in failed}
    assert "refused the user or password" in results["node050"]["error"]
    assert f"did not answer within {TIMEOUT} s" in results["node150"]["error"]
    assert all(r["result"]["power"]["power"] == "on" for n, r in results.items() if n not in failed)

    # one request: the audit log has one bulk reinstall and no one-host reinstall
    operations = [e["operation"] for e in server.cli_json("audit", "--limit", "1000")]
    assert operations.count("POST /api/v1/bulk/reinstall") == 1
    assert "POST /api/v1/hosts/{name}/reinstall" not in operations
    timings = [r["result"]["power"] for r in results.values()]
    most = in_flight(timings)
    assert most <= CONCURRENCY, most  # bounded ...
    assert most >= CONCURRENCY // 2, most  # ... and used: the BMCs were called in parallel
    # a host waited for a free slot: the last ones started well after the first
    assert max(t["started"] for t in timings) > min(t["started"] for t in timings)

    # every host marked for install; the BMC saw a one-time network boot and a restart
    shown = server.cli_json("hosts", "show", "node001")
    assert shown["state"] == "assigned" and shown["power"]["state"] == "on" and shown["power"]["error"] is None
    assert shown["effective"]["bmc"]["source"] == "profile rack"
    bad = server.cli_json("hosts", "show", "node050")
    assert "refused the user or password" in bad["power"]["error"] and bad["effective"]["bmc"]["source"] == "host"
    system = json.loads(server.ns.run(["curl", "-sf", "-u", f"admin:{PASSWORD}",
                                       f"http://127.0.0.1:{REDFISH}/redfish/v1/Systems/node001"]).stdout)
    assert system["Boot"]["BootSourceOverrideTarget"] == "Pxe"
    listed = server.run_cli("hosts", "list")
    assert listed.returncode == 0
    row = next(line for line in listed.stdout.splitlines() if "node050" in line)
    assert "ERROR" in row
    assert PASSWORD not in server.log()
