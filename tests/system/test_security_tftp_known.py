"""Issue 24, hole 7: a sustained TFTP flood from strangers must not starve the machines the appliance knows.

40 addresses, each under its per-client cap (8), fill every transfer slot (256) with RRQs they never ACK,
round after round. A machine with a DHCP lease from this server (what a PXE ROM has before its first
TFTP fetch) still gets its boot file in every round: a stranger's transfer is ended to make room. Before,
it got "server busy" while the flood held the slots, and a PXE ROM told "busy" does not boot.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path

import pytest

from lab.clients import Dhclient
from lab.netns import Lab, LabError, Namespace, Proc
from tests.system._daemon import Imageserver, env

pytestmark = [pytest.mark.system,
              pytest.mark.skipif(shutil.which("atftp") is None, reason="atftp is needed")]

BOOT_FILE = "undionly.kpxe"
SOURCE = Path("/usr/lib/ipxe") / BOOT_FILE
ROUNDS = 3


def first_line(proc: Proc, timeout: float = 30) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in proc.output().splitlines():
            if line.startswith("{"):
                return json.loads(line)
        if not proc.alive():
            raise LabError(f"attacker ended without a report: {proc.output()[-2000:]}")
        time.sleep(0.05)
    raise LabError(f"no report from the attacker in {timeout} s")


def atftp(ns: Namespace, server: str, out: Path) -> tuple[bool, str]:
    result = ns.run(["atftp", "-g", "-r", BOOT_FILE, "-l", str(out), server, "69"], check=False, timeout=20)
    ok = result.returncode == 0 and out.exists() and out.read_bytes() == SOURCE.read_bytes()
    return ok, result.stdout + result.stderr


def test_a_leased_machine_gets_its_boot_file_while_strangers_hold_every_slot(lab: Lab) -> None:
    if not SOURCE.exists():
        pytest.skip(f"{SOURCE} not installed (package ipxe)")
    seg = lab.segment("cli", "att")
    (machine, m_if), (attacker, a_if) = seg.members
    base = str(seg.subnet.network_address).rsplit(".", 1)[0]
    for n in range(200, 240):
        attacker.add_address(a_if, f"{base}.{n}/24")
    server = Imageserver(seg.server, seg.bridge, seg.server_ip, seg.subnet)
    server.config.write_text(server.config.read_text().replace("[tftp]\nenabled = false", "[tftp]\nport = 69"))
    server.start()
    Dhclient(machine, m_if).obtain()
    tmp = lab.tmp_path("fetched")
    tmp.mkdir()

    for round_ in range(ROUNDS):
        flood = attacker.popen([sys.executable, "-m", "tests.system._flood", "tftp-hold", "--host",
                                str(seg.server_ip), "--port", "69", "--count", "320", "--sources", "40",
                                "--base", base, "--first", "200", "--option", "tsize=0", "--hold", "4"], env=env())
        answered = first_line(flood)
        kinds = answered["kinds"]
        assert isinstance(kinds, dict) and kinds.get("oack", 0) >= 250, answered  # the slots are full
        ok, text = atftp(machine, str(seg.server_ip), tmp / f"round-{round_}")
        assert ok, f"round {round_}: the leased machine was refused while strangers held the slots: {text}"
        flood.wait(30)
    tftp = server.api("/api/v1/status")["services"]["tftp"]
    assert tftp["counters"].get("transfers_evicted", 0) >= ROUNDS, tftp
    assert tftp["counters"].get("busy_full", 0) > 0, tftp  # the strangers themselves are still refused
