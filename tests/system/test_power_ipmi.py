"""Power control over IPMI against real peers: OpenIPMI's ipmi_sim BMCs in a lab namespace (each with a
chassis script standing in for a machine), the daemon, and the `imageserver` CLI as an operator runs it;
`ipmitool` itself against the same simulators is the reference. A wrong password, a BMC that never answers
and one that answers garbage each fail their own host, with a reason that tells them apart, while the other
hosts are done. The BMC password never appears in an API answer, a CLI output or the daemon's log."""

from __future__ import annotations

import json
import os
import shutil
import stat
import time
from typing import Any

import pytest

from lab.ipmisim import IpmiSim, udp_peer
from lab.netns import Lab
from tests.system._daemon import Imageserver

pytestmark = [pytest.mark.system,
              pytest.mark.skipif(any(shutil.which(b) is None for b in ("ipmi_sim", "ipmitool", "curl")),
                                 reason="needs ipmi_sim (openipmi), ipmitool and curl (deps/apt-packages.txt)")]

PASSWORD = "pw-7f3c9e-Secret"  # distinctive: grepped for in every answer and the log
SILENT, GARBAGE = 9610, 9611


def results(server: Imageserver, *args: str, code: int | None = None) -> dict[str, dict[str, Any]]:
    done = server.run_cli(*args, "--json")
    if code is not None:
        assert done.returncode == code, (done.stdout, done.stderr)
    assert PASSWORD not in done.stdout + done.stderr
    return {r["host"]: r for r in json.loads(done.stdout)}


def wait_for(check: Any, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


@pytest.fixture
def world(lab: Lab) -> tuple[Imageserver, list[IpmiSim]]:
    ns = lab.namespace("srv")
    bridge = lab.ifname("br")
    lab.bridge(ns, bridge)
    subnet = lab.random_subnet()
    address = subnet.network_address + 1
    ns.add_address(bridge, f"{address}/{subnet.prefixlen}")
    server = Imageserver(ns, bridge, address, subnet, extra="\n[power]\nconcurrency = 4\ntimeout = 8\n").start()
    sims = [IpmiSim(ns, 9601 + i, password=PASSWORD).start() for i in range(3)]
    udp_peer(ns, SILENT, "silent")
    udp_peer(ns, GARBAGE, "garbage")
    for sim in sims:
        wait_for(lambda s=sim: s.ipmitool("chassis", "power", "status").returncode == 0)
    for i, name in enumerate(("node1", "node2", "node3", "badpw", "silent", "garbage", "nobmc")):
        server.cli("hosts", "add", name, "--mac", f"52:54:00:5a:00:{i + 1:02x}")
    return server, sims


def test_power_through_ipmi_sim_agrees_with_ipmitool_and_bad_bmcs_fail_alone(
        world: tuple[Imageserver, list[IpmiSim]]) -> None:
    server, sims = world
    secret = server.ns.lab.tmp_path("bmc.pw")
    secret.write_text(PASSWORD + "\n")
    # each host of the range its own BMC: the address's range pairs with the hosts in order
    set_ = results(server, "hosts", "set", "node[1-3]", "--bmc", "ipmi://127.0.0.1:[9601-9603]", "--bmc-user",
                   "admin", "--bmc-password-file", str(secret), code=0)
    assert [set_[f"node{i}"]["result"]["bmc"]["address"] for i in (1, 2, 3)] == [s.address for s in sims]
    wrong = server.ns.lab.tmp_path("wrong.pw")
    wrong.write_text("not-the-password\n")
    server.cli("hosts", "set", "badpw", "--bmc", sims[0].address, "--bmc-user", "admin", "--bmc-password-file",
               str(wrong))
    for name, port in (("silent", SILENT), ("garbage", GARBAGE)):
        server.cli("hosts", "set", name, "--bmc", f"ipmi://127.0.0.1:{port}", "--bmc-user", "admin",
                   "--bmc-password-file", str(secret))
    db = server.state_dir / "imageserver.db"
    assert stat.S_IMODE(os.stat(db).st_mode) == 0o600  # where the password is kept

    start = time.monotonic()
    status = results(server, "power", "status", "node[1-3],badpw,silent,garbage,nobmc,ghost", code=1)
    took = time.monotonic() - start
    assert {n: status[n]["power"] for n in ("node1", "node2", "node3")} == dict.fromkeys(
        ("node1", "node2", "node3"), "off")
    assert all(status[n]["ok"] for n in ("node1", "node2", "node3"))
    assert "wrong user or password" in status["badpw"]["error"]
    assert "does not answer" in status["silent"]["error"]
    assert "answers, but not IPMI" in status["garbage"]["error"]
    assert "has no BMC" in status["nobmc"]["error"]
    assert "no host named 'ghost'" in status["ghost"]["error"]
    # the silent BMC costs its own timeout (8 s), not one per host: the good ones answer in well under a second
    assert took < 20, took
    assert max(status[n]["seconds"] for n in ("node1", "node2", "node3")) < 3

    on = results(server, "power", "on", "node[1-3]", code=0)
    assert all(on[n]["power"] == "on" for n in on)
    for sim in sims:
        assert sim.power() == "on"
        assert "Chassis Power is on" in sim.ipmitool("chassis", "power", "status").stdout

    off = results(server, "power", "off", "node2", code=0)
    assert off["node2"]["power"] == "off" and sims[1].power() == "off"
    assert "Chassis Power is off" in sims[1].ipmitool("chassis", "power", "status").stdout
    assert "Chassis Power is on" in sims[0].ipmitool("chassis", "power", "status").stdout

    pxe = results(server, "power", "pxe", "node1", code=0)
    assert pxe["node1"]["ok"] and sims[0].boot() == "pxe"
    assert "set boot pxe" in sims[0].calls()

    before = len(sims[2].calls())
    cycle = results(server, "power", "cycle", "node3", code=0)
    assert cycle["node3"]["power"] == "on"
    told = sims[2].calls()[before:]
    assert "set power 0" in told and told.index("set power 1") > told.index("set power 0")
    assert "Chassis Power is on" in sims[2].ipmitool("chassis", "power", "status").stdout

    # the table an operator reads
    table = server.run_cli("power", "status", "node[1-3],badpw")
    assert table.returncode == 1
    rows = {line.split()[0]: line.split() for line in table.stdout.splitlines()[1:]}
    assert rows["node1"][1:3] == ["ok", "on"] and rows["node2"][1:3] == ["ok", "off"]
    assert rows["badpw"][1] == "FAILED"

    # reinstall with a power cycle: marked for install, PXE once, cycled (node2 was off: powered on)
    before = len(sims[1].calls())
    again = results(server, "hosts", "reinstall", "node2,ghost", "--power-cycle", code=1)
    assert again["node2"]["ok"] and not again["ghost"]["ok"]
    assert server.cli_json("hosts", "show", "node2")["state"] == "assigned"
    told = sims[1].calls()[before:]
    assert told.index("set boot pxe") < told.index("set power 1"), told
    assert sims[1].power() == "on" and sims[1].boot() == "pxe"

    # the host's BMC as the API shows it: the last power answer, never the password
    token = server.daemon.admin_token()
    shown = server.ns.run(["curl", "-sS", "--fail-with-body", "-H", f"Authorization: Bearer {token}",
                           server.daemon.api_url("/api/v1/hosts/node1/bmc")]).stdout
    view = json.loads(shown)
    assert view["power"] == "on" and view["kind"] == "ipmi" and view["username"] == "admin"
    assert "password" not in view
    bad = json.loads(server.ns.run(["curl", "-sS", "-H", f"Authorization: Bearer {token}",
                                    server.daemon.api_url("/api/v1/hosts/badpw/bmc")]).stdout)
    assert "wrong user or password" in bad["error"]
    for path in ("/api/v1/hosts", "/api/v1/hosts/node1", "/api/v1/openapi.json"):
        assert PASSWORD not in server.daemon.api_text(path)
    assert PASSWORD not in server.log()
    assert PASSWORD not in server.cli("hosts", "show", "node1", "--json")
