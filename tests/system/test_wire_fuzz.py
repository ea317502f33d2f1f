"""Wire-level fuzzing of the running daemon while real clients keep using it.

A fuzzer (tests/system/_wirefuzz.py) in its own namespace on the provisioning bridge throws mutated
DHCP, TFTP and DNS at the imageserver; meanwhile dhclient keeps taking leases, atftp and curl keep
fetching undionly.kpxe (compared byte for byte) and dig keeps resolving the appliance's name, from
another namespace. Every one of those must succeed, the daemon must stay up with every service
running, and its log must hold no traceback. Bounded: 4,000 datagrams or 20 s (IMAGESERVER_FUZZ_LONG=1:
200,000 or 10 minutes). The seed is printed and can be set with IMAGESERVER_FUZZ_SEED.
"""

from __future__ import annotations

import json
import os
import random
import sys

import pytest

from lab.clients import Dhclient
from lab.netns import Lab
from tests.system._daemon import API_PORT, Imageserver, env

pytestmark = pytest.mark.system

LONG = os.environ.get("IMAGESERVER_FUZZ_LONG") == "1"
COUNT, SECONDS = (200_000, 600) if LONG else (4_000, 20)
DOMAIN = "fuzz.test"


def config(server: Imageserver) -> str:
    first, last = server.pool_range()
    return f"""
[appliance]
state_dir = "{server.state_dir}"
interface = "{server.interface}"
address = "{server.address}"
domain = "{DOMAIN}"
log_level = "debug"

[dhcp]
subnet = "{server.subnet}"
pool = "{first}-{last}"
router = "{server.address}"
dns = ["{server.address}"]
lease_time = 600
conflict_probe = false
rogue_probe = 0

[tftp]
enabled = true

[dns]
enabled = true

[http]
listen = "0.0.0.0"
port = {API_PORT}

[rsyncd]
enabled = false
"""


def test_mutated_dhcp_tftp_and_dns_do_not_stop_the_daemon_nor_its_real_clients(lab: Lab) -> None:
    seed = int(os.environ.get("IMAGESERVER_FUZZ_SEED", random.randrange(1 << 30)))
    print(f"IMAGESERVER_FUZZ_SEED={seed}")
    srv, cli, fuzz = lab.namespace("srv"), lab.namespace("cli"), lab.namespace("fuzz")
    bridge, s1, s2, c_if, f_if = (lab.ifname(k) for k in ("br", "vs", "vs", "vc", "vf"))
    lab.veth(srv, s1, cli, c_if)
    lab.veth(srv, s2, fuzz, f_if)
    lab.bridge(srv, bridge, [s1, s2])
    subnet = lab.random_subnet()
    server_ip = subnet.network_address + 1
    srv.add_address(bridge, f"{server_ip}/24")
    # Fixed addresses outside the pool: the clients must not depend on DHCP to reach TFTP and DNS.
    cli.add_address(c_if, f"{subnet.network_address + 2}/24")
    fuzz.add_address(f_if, f"{subnet.network_address + 3}/24")
    server = Imageserver(srv, bridge, server_ip, subnet, pool=(10, 250))
    server.config.write_text(config(server))
    server.start()
    boot_file = (server.state_dir / "boot" / "undionly.kpxe").read_bytes()

    fuzzer = fuzz.popen([sys.executable, "-m", "tests.system._wirefuzz", f_if, str(server_ip), str(COUNT), str(SECONDS),
                         str(seed)], env=env())
    rounds = 0
    leases = set()
    while fuzzer.alive() or rounds < 3:
        rounds += 1
        client = Dhclient(cli, c_if)
        leases.add(client.obtain().ip)
        client.stop()
        got = lab.tmp_path("undionly.atftp")
        cli.run(["atftp", "-g", "-r", "undionly.kpxe", "-l", str(got), "--option", "blksize 1468",
                 "--option", "windowsize 16", "--option", "tsize 0", str(server_ip)], timeout=30)
        assert got.read_bytes() == boot_file, f"round {rounds}: atftp got a different file"
        got = lab.tmp_path("undionly.curl")
        cli.run(["curl", "-sS", "--max-time", "20", "--tftp-blksize", "1024", "-o", str(got),
                 f"tftp://{server_ip}/undionly.kpxe"], timeout=30)
        assert got.read_bytes() == boot_file, f"round {rounds}: curl got a different file"
        answer = cli.run(["dig", f"@{server_ip}", "+short", "+time=2", "+tries=3",
                          f"imageserver.{DOMAIN}", "A"]).stdout.split()
        assert answer == [str(server_ip)], f"round {rounds}: dig said {answer}"
        if rounds > SECONDS * 20:  # a safety bound; the fuzzer ending ends the loop
            break
    fuzzer.wait(SECONDS + 30)
    stats = json.loads(fuzzer.output().strip().splitlines()[-1])
    print(f"rounds={rounds} leases={sorted(map(str, leases))} fuzz={stats}")
    assert stats.get("dhcp", 0) > 0 and stats.get("tftp", 0) > 0 and stats.get("dns", 0) > 0, stats

    assert server.proc is not None and server.proc.alive(), server.log()[-3000:]
    status = server.api("/api/v1/status")["services"]
    assert {name: s["state"] for name, s in status.items() if name in ("dhcp", "tftp", "dns", "http")} == \
        {"dhcp": "running", "tftp": "running", "dns": "running", "http": "running"}
    assert status["dhcp"]["counters"].get("malformed", 0) > 0  # the garbage did arrive
    assert "Traceback" not in server.log(), server.log()[-5000:]
