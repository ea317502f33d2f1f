"""A QEMU VM installs from a satellite while the primary is stopped (issue 16, part 2), on the demo's path.

    primary ns [imageserver serve]  A.1 --veth-- A.2 [server ns: the satellite, imageserver serve
        |                                            with [satellite] primary = A.1] B.1 -- bridge (vm ns)
        +-- C.1 --veth-- C.2 [master ns]  B.2 --------------------------------------------+     |
                                                                                       tap -- VM

The demo master client is captured on the primary (getimage over the C link); the
primary's admin issues the satellite's token and adds the host. The satellite mirrors image demo v1
(real rsync over the satellite module), the host, and writes the autoinstall script for its own address.
Then the primary is stopped; the VM PXE-boots from the satellite (DHCP, TFTP, HTTP, rsync all local),
installs and reports done to the satellite, whose outbox holds the reports; the primary starts again
and shows the host installed.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from lab.demo.scenario import IMAGE, Appliance, DemoError, DemoLab
from lab.netns import Lab, lab_unavailable_reason
from lab.qemu import qemu_unavailable_reason

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(qemu_unavailable_reason() is not None, reason=str(qemu_unavailable_reason())),
    pytest.mark.skipif(lab_unavailable_reason() is not None, reason=str(lab_unavailable_reason())),
]


def wait_for(what: str, check: Callable[[], object], timeout: float) -> object:
    deadline = time.monotonic() + timeout
    while not (got := check()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.3)
    return got


@pytest.fixture
def world(bootenv_cache: Path, debian_kernel, lab_sweep: list[str]) -> Iterator[tuple[DemoLab, Appliance]]:
    with Lab() as lab:
        demo = DemoLab(lab, cache_dir=bootenv_cache, kernel_package=debian_kernel.package, say=print)
        net = demo.network()
        demo.master_tree()
        # The primary on its own subnet A, linked to the satellite's namespace (the satellite's uplink);
        # the master client also gets a direct link to the primary (subnet C) for the capture.
        primary_ns = lab.namespace("prim")
        p_if, s_if = lab.ifname("vp"), lab.ifname("vu")
        lab.veth(primary_ns, p_if, net.server, s_if)
        subnet_a = lab.random_subnet()
        primary_ip, uplink_ip = subnet_a.network_address + 1, subnet_a.network_address + 2
        primary_ns.add_address(p_if, f"{primary_ip}/24")
        net.server.add_address(s_if, f"{uplink_ip}/24")
        assert demo.master is not None
        pc_if, mc_if = lab.ifname("vc"), lab.ifname("vk")
        lab.veth(primary_ns, pc_if, demo.master, mc_if)
        subnet_c = lab.random_subnet()
        primary_ns.add_address(pc_if, f"{subnet_c.network_address + 1}/24")
        demo.master.add_address(mc_if, f"{subnet_c.network_address + 2}/24")
        state = lab.tmp_path("primary-state")
        state.mkdir()
        config = lab.tmp_path("primary.toml")
        config.write_text(f"""
[appliance]
state_dir = "{state}"
interface = "{p_if}"
address = "{primary_ip}"

[dhcp]
subnet = "{subnet_a}"
pool = "{subnet_a.network_address + 100}-{subnet_a.network_address + 150}"
conflict_probe = false

[tftp]
enabled = false

[dns]
enabled = false

[http]
port = 80
""")
        primary = Appliance(primary_ns, state_dir=state, config=config).start()
        demo.app = primary
        demo.master_ip = subnet_c.network_address + 2  # getimage pulls over the direct link
        demo.capture(imageserver=subnet_c.network_address + 1)
        token_file = lab.tmp_path("satellite.token")
        token_file.write_text(primary.cli("satellites", "add", "edge").strip().splitlines()[0] + "\n")
        token_file.chmod(0o600)
        demo.app = None
        demo.appliance(extra=f'\n[satellite]\nprimary = "http://{primary_ip}"\ntoken_file = "{token_file}"\n'
                             "interval = 1\n")
        demo.bootenv()
        yield demo, primary


def test_vm_installs_from_the_satellite_while_the_primary_is_stopped(world: tuple[DemoLab, Appliance]) -> None:
    demo, primary = world
    satellite = demo.app
    assert satellite is not None and primary.proc is not None
    install = demo.new_install("node1", 256)
    primary.cli("hosts", "add", install.name, "--mac", install.mac, "--image", IMAGE)

    def mirrored() -> bool:
        link = satellite.get("/api/v1/status")["services"]["satellite"]
        return (link["versions"] == [f"{IMAGE}_v1"] and (satellite.state_dir / f"scripts/{IMAGE}.master").exists()
                and any(h["name"] == "node1" for h in satellite.get("/api/v1/hosts")["hosts"]))

    wait_for("the satellite to mirror the image, its script and the host", mirrored, 60)
    primary.proc.stop()

    demo.power_on(install, first=True)
    try:
        demo.follow([install], timeout=150)
    except DemoError as e:  # the satellite's side of it too
        proc = satellite.proc
        alive = proc is not None and proc.alive()
        status = satellite.ns.run(["curl", "-s", "--max-time", "5", "http://127.0.0.1/api/v1/status"],
                                  check=False).stdout
        raise DemoError(f"{e}\n--- satellite alive={alive} (exit {proc.popen.returncode if proc else None})\n"
                        f"{proc.output()[-6000:] if proc else ''}\n--- status\n{status}") from None
    assert satellite.get("/api/v1/hosts/node1")["state"] == "installed"
    link = wait_for("the reports buffered on the satellite", lambda: (
        s := satellite.get("/api/v1/status")["services"]["satellite"])["state"] == "primary-unreachable"
        and s["backlog"] > 0 and s, 15)
    assert isinstance(link, dict)
    print(f"\n[satellite] installed in {install.installed_after:.1f} s with the primary stopped; "
          f"{link['backlog']} reports buffered")

    primary.start()
    # Reads need a token (the reader role): the primary's admin token, as its CLI sends.
    probe = [sys.executable, "-c", "import json,sys,urllib.request; print(json.load(urllib.request.urlopen("
             "urllib.request.Request('http://127.0.0.1/api/v1/hosts/node1', headers={'Authorization': "
             f"'Bearer {primary.admin_token()}'}})))['state'])"]
    wait_for("node1 installed on the primary", lambda: primary.ns.run(probe, env=primary.env(), check=False)
             .stdout.strip() == "installed", 60)
    stages = [e["stage"] for e in primary.get("/api/v1/hosts/node1")["timeline"]]
    assert stages[0] == "installer" and stages[-1] == "done" and "rsync" in stages, stages
    sats = primary.get("/api/v1/status")["satellites"]
    assert sats[0]["name"] == "edge" and sats[0]["versions"] == [f"{IMAGE}_v1"], sats
