"""The inventory's LLDP neighbours against a real LLDP sender: Debian's lldpd plays the switch in one network
namespace; the machine's namespace runs the installer's own lib/inventory.sh (dash, tcpdump as the initrd
has it) on a made-up /sys naming the veth as its physical NIC, and a second NIC nobody sends on. The frame
is posted raw as Ironic's [type, hex] TLVs and the imageserver's reading (domain.inventory.with_neighbors ->
protocols/lldp.py) names the switch's chassis (its MAC), port (its interface name) and system name. The wait
is bounded: the capture ends at the first frame, and a silent NIC costs LLDP_WAIT at most."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from domain.bodies import parse_body
from domain.inventory import Inventory
from lab.netns import Lab
from protocols.lldp import LldpNeighbor
from tests.installer_sh import prelude

pytestmark = pytest.mark.skipif(not (shutil.which("lldpd") and shutil.which("tcpdump")),
                                reason="lldpd and tcpdump (deps/apt-packages.txt)")
WAIT = 5


def _nic(sys: Path, name: str, mac: str) -> None:
    nic = sys / "class" / "net" / name
    nic.mkdir(parents=True)
    (nic / "address").write_text(mac + "\n")
    (nic / "carrier").write_text("1\n")
    device = sys / "devices" / "pci0000:00" / f"0000:00:0{len(list(nic.parent.iterdir()))}.0"
    device.mkdir(parents=True)
    (nic / "device").symlink_to(device)


@pytest.fixture
def control_dir() -> Iterator[Path]:
    """lldpd's control socket's directory: lldpcli (which lldpd runs to read its configuration) must reach it,
    so not inside the lab's private tmp dir."""
    path = Path(tempfile.mkdtemp(prefix="isl-lldpd-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def test_each_nic_records_the_switch_port_its_lldp_frame_names(lab: Lab, control_dir: Path) -> None:
    switch, machine = lab.namespace("switch"), lab.namespace("machine")
    port, nic, silent, silent_peer = lab.ifname("sw"), lab.ifname("en"), lab.ifname("en"), lab.ifname("xx")
    lab.veth(switch, port, machine, nic)
    lab.veth(machine, silent, machine, silent_peer)  # a second NIC: up, nobody sends LLDP on it
    conf = control_dir / "lldpd.conf"
    conf.write_text("configure system hostname switch-7.lab\nconfigure lldp tx-interval 1\n"
                    "configure lldp portidsubtype ifname\n")
    lldpd = switch.popen(["lldpd", "-d", "-u", str(control_dir / "lldpd.sock"), "-O", str(conf), "-I", port])
    switch_mac = switch.ip("-o", "link", "show", port).stdout.split("link/ether ")[1].split()[0]

    sys = lab.tmp_path("sys")
    mac = machine.ip("-o", "link", "show", nic).stdout.split("link/ether ")[1].split()[0]
    _nic(sys, nic, mac)
    _nic(sys, silent, "52:54:00:00:77:02")
    (sys / "block").mkdir()
    script = prelude("common", "disks") + '. "$INSTALLER_LIB/lib/inventory.sh"\ninventory_json\n'
    env = {"PATH": os.environ["PATH"], "SYS_ROOT": str(sys), "PROC_ROOT": "/proc", "LLDP_WAIT": str(WAIT),
           "TMPDIR": str(lab.tmp_path("tmp")), "MAC": mac}
    Path(env["TMPDIR"]).mkdir()
    started = time.monotonic()
    out = machine.run(["dash", "-c", script], env=env, timeout=WAIT + 30)
    took = time.monotonic() - started
    assert lldpd.alive(), lldpd.output()

    inventory = parse_body(Inventory, json.loads(out.stdout), unknown="refuse").with_neighbors()
    heard = {n.name: n for n in inventory.interfaces}
    assert heard[nic].lldp is not None and [1, heard[nic].lldp[0][1][:2]] == [1, "04"], "chassis id: a MAC"
    assert heard[nic].lldp_neighbor == LldpNeighbor(chassis_id=switch_mac, port_id=port,
                                                    system_name="switch-7.lab", port_description=port), heard[nic]
    assert heard[silent].lldp is None and heard[silent].lldp_neighbor is None
    assert took < WAIT + 10, f"the silent NIC's wait is bounded by LLDP_WAIT ({took:.1f} s)"
    print(f"inventory with LLDP: {took:.1f} s (LLDP_WAIT {WAIT})")
