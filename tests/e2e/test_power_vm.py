"""Power control end to end: OpenIPMI's ipmi_sim is the BMC of a QEMU VM (its chassis_control,
lab/vmchassis.py, starts and kills the VM and boots it from the network only when told `pxe`, once), and
nobody touches the VM but the imageserver through IPMI.

`power pxe-cycle` takes the bare machine (off) to the installer; after the install the VM reboots (QEMU
-no-reboot: it powers off) and `power on` boots its own disk (no PXE: the override was for one boot);
`hosts reinstall node1 --power-cycle` takes the installed, running VM through a second full install; `ipmitool`
against the same simulator agrees on the power state throughout."""

from __future__ import annotations

import json
import re
import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab.demo.scenario import MARKER_RE, DemoLab
from lab.ipmisim import IpmiSim
from lab.netns import lab_unavailable_reason
from lab.qemu import VmConfig, qemu_argv, qemu_unavailable_reason
from tests.e2e._sites import demo_image_site

REPO = Path(__file__).resolve().parents[2]
pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(qemu_unavailable_reason() is not None, reason=str(qemu_unavailable_reason())),
    pytest.mark.skipif(lab_unavailable_reason() is not None, reason=str(lab_unavailable_reason())),
    pytest.mark.skipif(any(shutil.which(b) is None for b in ("ipmi_sim", "ipmitool")),
                       reason="needs ipmi_sim (openipmi) and ipmitool (deps/apt-packages.txt)"),
]
PORT = 9623


@pytest.fixture(scope="module")
def demo(bootenv_cache: Path, debian_kernel, lab_sweep: list[str]) -> Iterator[DemoLab]:
    with demo_image_site(bootenv_cache, debian_kernel) as demo:
        yield demo


def boots(sim: IpmiSim) -> list[tuple[str, Path]]:
    path = sim.dir / "boots.log"
    lines = path.read_text().splitlines() if path.exists() else []
    return [(mode, Path(serial)) for mode, serial in (line.split(" ", 1) for line in lines)]


def wait_for(what: str, check, timeout: float) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.5)


def test_ipmi_powers_a_vm_through_install_disk_boot_and_reinstall(demo: DemoLab) -> None:
    app, net = demo.app, demo.net
    assert app is not None and net is not None
    install = demo.new_install("node1", 256)
    # the VM's BMC, beside the daemon (its ipmitool reaches 127.0.0.1 there); the VM on its own tap
    sim = IpmiSim(net.server, PORT, password="vm-bmc-pw")
    tap = net.new_tap()
    disk_cfg = VmConfig(boot="disk", mac=install.mac, disks=[install.disk], memory_mb=512)
    net_cfg = VmConfig(boot="network", mac=install.mac, disks=[install.disk], memory_mb=512)
    (sim.dir / "vm.json").write_text(json.dumps({
        "ns": net.vmns.name,
        "network": qemu_argv(net_cfg, tap, Path("{serial}")),
        "disk": qemu_argv(disk_cfg, tap, Path("{serial}"))}))
    wrapper = sim.dir / "vm-chassis.sh"
    wrapper.write_text(f'#!/bin/sh\nexec {sys.executable} {REPO / "lab/vmchassis.py"} {sim.dir} "$@"\n')
    wrapper.chmod(0o755)
    sim.chassis = str(wrapper)
    sim.start()
    wait_for("ipmi_sim", lambda: sim.ipmitool("chassis", "power", "status").returncode == 0, 20)
    try:
        demo.add_host("node1", install.mac)
        pw = demo.lab.tmp_path("bmc.pw")
        pw.write_text("vm-bmc-pw\n")
        app.cli("hosts", "set", "node1", "--bmc", sim.address, "--bmc-user", "admin", "--bmc-password-file", str(pw))
        assert "Chassis Power is off" in sim.ipmitool("chassis", "power", "status").stdout

        # 1. the bare machine, off: network boot once, power on -> the installer installs it
        install.power_on = time.monotonic()
        out = json.loads(app.cli("power", "pxe-cycle", "node1", "--json"))
        assert out[0]["ok"] and out[0]["power"] == "on", out
        assert [m for m, _ in boots(sim)] == ["network"]
        assert "Chassis Power is on" in sim.ipmitool("chassis", "power", "status").stdout
        demo.follow([install], timeout=300)
        assert app.get("/api/v1/hosts/node1")["state"] == "installed"
        # the installer reboots: QEMU -no-reboot exits, the machine is off, as ipmitool and we both see
        wait_for("the installer's reboot", lambda: "is off" in sim.ipmitool("chassis", "power", "status").stdout, 90)
        assert json.loads(app.cli("power", "status", "node1", "--json"))[0]["power"] == "off"

        # 2. power on: no override any more, so its own disk, with its hostname
        assert json.loads(app.cli("power", "on", "node1", "--json"))[0]["ok"]
        mode, serial = boots(sim)[-1]
        assert mode == "disk"
        wait_for("the disk boot's marker", lambda: re.search(MARKER_RE, serial.read_text(errors="replace")), 180)
        match = re.search(MARKER_RE, serial.read_text(errors="replace"))
        assert match is not None and match.group(1) == "node1"
        # the demo client powers itself off after its marker: wait for that (it is off, reinstall powers it on)
        wait_for("the demo client's own power-off",
                 lambda: "is off" in sim.ipmitool("chassis", "power", "status").stdout, 60)

        # 3. reinstall with a power cycle: marked, network boot once, powered on -> a second full install
        installs_before = sum(1 for e in app.get("/api/v1/hosts/node1")["timeline"] if e["stage"] == "done")
        install.power_on = time.monotonic()
        again = json.loads(app.cli("hosts", "reinstall", "node1", "--power-cycle", "--json"))
        assert again[0]["ok"], again
        assert app.get("/api/v1/hosts/node1")["state"] in ("assigned", "installing")
        assert [m for m, _ in boots(sim)][-1] == "network"
        demo.follow([install], timeout=300)
        host = app.get("/api/v1/hosts/node1")
        assert host["state"] == "installed"
        assert sum(1 for e in host["timeline"] if e["stage"] == "done") == installs_before + 1

        # 4. power off: the VM is gone, and ipmitool agrees
        wait_for("the second install's reboot",
                 lambda: "is off" in sim.ipmitool("chassis", "power", "status").stdout, 90)
        assert json.loads(app.cli("power", "on", "node1", "--json"))[0]["power"] == "on"
        assert boots(sim)[-1][0] == "disk"
        assert json.loads(app.cli("power", "off", "node1", "--json"))[0]["power"] == "off"
        assert "Chassis Power is off" in sim.ipmitool("chassis", "power", "status").stdout
        assert "vm-bmc-pw" not in app.log()
    finally:
        # QEMU was started by the chassis script, not by the lab: stop it by its pid
        sim.ipmitool("chassis", "power", "off")
