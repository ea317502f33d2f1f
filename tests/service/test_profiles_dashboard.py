"""Profiles and the dashboard's machines, over the real daemon (`imageserver serve` on 127.0.0.1) and its API,
nothing mocked: a profile change reaches every host that inherits it and not those that override it (hosts
added with their profile, `POST /api/v1/hosts {"profile"}`, and moved onto it in bulk); a profile's root-device
hints choose the disk an installer's inventory is answered with; and the machines list the dashboard polls
carries each machine's inventory summary (CPU, memory, disks, NICs) and its power state (here a BMC, inherited
from the profile, that refuses the connection: the host's error), which the served page shows in its own
columns."""

from __future__ import annotations

import json
import socket
import urllib.error
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.service.test_dashboard_browser import (  # noqa: F401  (browser: the fixture)
    Console,
    Daemon,
    _missing,
    browser,
    register_version,
    serve,
    table,
    wait_for,
)

MACS = {f"node{i}": f"52:54:00:f1:00:0{i}" for i in (1, 2, 3, 4)}
INVENTORY: dict[str, Any] = {
    "cpu": {"model_name": "QEMU Virtual CPU", "count": 2, "architecture": "x86_64"},
    "memory": {"total": 500 << 20, "physical_mb": 512},
    "disks": [{"name": "/dev/vda", "size": 256 << 20, "serial": "VIRTIO-0002", "rotational": True},
              {"name": "/dev/nvme0n1", "size": 96 << 20, "serial": "NVME-0001", "rotational": False}],
    "interfaces": [{"name": "eth0", "mac_address": MACS["node1"], "driver": "virtio_net"}],
    "system_vendor": {"manufacturer": "QEMU", "product_name": "Standard PC"},
    "boot": {"current_boot_mode": "bios"},
}


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Daemon]:
    """With a DHCP subnet on loopback, DHCP itself off: node1 is given 127.0.0.1, the address its installer's
    requests come from (an install credential is taken only from the host's own address)."""
    with serve(tmp_path, '[dhcp]\nenabled = false\nsubnet = "127.0.0.0/24"\npool = "127.0.0.100-127.0.0.199"\n') \
            as running:
        yield running


def _refused(daemon: Daemon, method: str, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    with pytest.raises(urllib.error.HTTPError) as caught:
        daemon.admin(method, path, body)
    return caught.value.code, json.loads(caught.value.read())


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # closed again when the with ends: nothing answers there


def _effective(daemon: Daemon, key: str) -> dict[str, Any]:
    return {h["name"]: h["effective"][key] for h in daemon.admin("GET", "/api/v1/hosts")["hosts"]}


def test_a_profile_change_reaches_inheriting_hosts_only_and_the_machines_show_inventory_and_power(
        daemon: Daemon) -> None:
    for image in ("web", "db"):
        register_version(daemon.state_dir, image, f"{image}\n")
    bmc = f"http://127.0.0.1:{_closed_port()}"
    daemon.admin("POST", "/api/v1/profiles", {"name": "compute", "image": "web", "transport": "bittorrent",
                                              "kernel_args": "quiet", "bmc_address": bmc, "bmc_username": "admin",
                                              "bmc_password": "pw"})
    # hosts add --profile, as the API takes it; a profile that does not exist: 404, nothing added
    status, body = _refused(daemon, "POST", "/api/v1/hosts", {"name": "node9", "mac": "52:54:00:f1:00:09",
                                                               "profile": "nope"})
    assert status == 404 and "no profile named 'nope'" in body["error"], body
    assert [h["name"] for h in daemon.admin("GET", "/api/v1/hosts")["hosts"]] == []
    added = daemon.admin("POST", "/api/v1/hosts", {"name": "node1", "mac": MACS["node1"], "ip": "127.0.0.1",
                                                   "profile": "compute"})
    assert (added["profile"], added["image"], added["state"]) == ("compute", None, "assigned")
    daemon.admin("POST", "/api/v1/hosts", {"name": "node2", "mac": MACS["node2"], "profile": "compute"})
    daemon.admin("POST", "/api/v1/hosts", {"name": "node3", "mac": MACS["node3"], "image": "db"})
    daemon.admin("POST", "/api/v1/hosts", {"name": "node4", "mac": MACS["node4"]})
    # the bulk equivalent: node3 (its own image and transport) and node4 onto the profile in one call
    answer = daemon.admin("POST", "/api/v1/bulk/set", {"range": "node[3-4]", "changes": {"profile": "compute"}})
    assert [r["ok"] for r in answer["results"]] == [True, True], answer
    daemon.admin("PATCH", "/api/v1/hosts/node3", {"transport": "rsync"})

    image = _effective(daemon, "image")
    assert image == {"node1": {"value": "web", "source": "profile compute"},
                     "node2": {"value": "web", "source": "profile compute"},
                     "node3": {"value": "db", "source": "host"},
                     "node4": {"value": "web", "source": "profile compute"}}

    # One change on the profile: every host inheriting it follows, the ones with their own value do not.
    daemon.admin("PATCH", "/api/v1/profiles/compute", {"image": "db", "transport": "multicast",
                                                       "kernel_args": "console=ttyS0"})
    daemon.admin("PUT", "/api/v1/profiles/compute/root-device", {"hints": "rotational=false,smallest"})
    daemon.admin("PUT", "/api/v1/hosts/node2/root-device", {"hints": "serial=VIRTIO-0002"})
    daemon.admin("PUT", "/api/v1/images/db/root-device", {"hints": "largest"})
    assert {n: v["value"] for n, v in _effective(daemon, "image").items()} == {n: "db" for n in MACS}
    assert _effective(daemon, "transport") == {
        "node1": {"value": "multicast", "source": "profile compute"},
        "node2": {"value": "multicast", "source": "profile compute"},
        "node3": {"value": "rsync", "source": "host"},
        "node4": {"value": "multicast", "source": "profile compute"}}
    assert {n: v["source"] for n, v in _effective(daemon, "kernel_args").items()} == {
        n: "profile compute" for n in MACS}
    assert _effective(daemon, "root_device") == {
        "node1": {"value": "rotational=false,smallest", "source": "profile compute"},
        "node2": {"value": "serial=VIRTIO-0002", "source": "host"},
        "node3": {"value": "rotational=false,smallest", "source": "profile compute"},
        "node4": {"value": "rotational=false,smallest", "source": "profile compute"}}
    hosts = {h["name"]: h for h in daemon.admin("GET", "/api/v1/hosts")["hosts"]}
    assert [hosts[n]["transport_effective"] for n in sorted(MACS)] == ["multicast", "multicast", "rsync", "multicast"]
    assert daemon.admin("GET", "/api/v1/profiles/compute")["host_names"] == sorted(MACS)
    assert daemon.admin("GET", "/api/v1/profiles/compute")["root_device"] == "rotational=false,smallest"
    # the profile's BMC default: node1's power status fails at the BMC that refuses (the host's error)
    power = daemon.admin("POST", "/api/v1/power", {"hosts": ["node1"], "action": "status"})
    assert power["results"][0]["ok"] is False and power["results"][0]["error"], power

    # node1's installer: its script (the profile's image), then its inventory, answered with the disk the
    # profile's hints choose
    assert daemon.call("GET", f"/boot/{MACS['node1']}.ipxe").startswith("#!ipxe")
    token = daemon.install_token("node1")
    answer = daemon.call("POST", f"/install/{MACS['node1']}/inventory", INVENTORY, token)
    assert (answer["root_device"], answer["hints_from"]) == ("/dev/nvme0n1", "profile"), answer

    # The machines list the dashboard polls: the inventory in a few numbers and the power state per machine.
    machines = {m["mac"]: m for m in daemon.admin("GET", "/api/v1/machines")["machines"]}
    one = machines[MACS["node1"]]
    assert one["host"] == "node1"
    assert {k: one["hardware"][k] for k in ("cpu", "memory_mb", "disks", "disk_bytes", "nics", "system")} == {
        "cpu": "2 x x86_64 QEMU Virtual CPU", "memory_mb": 512, "disks": 2, "disk_bytes": 352 << 20, "nics": 1,
        "system": "QEMU Standard PC"}
    assert one["hardware"]["text"] == "QEMU Standard PC, 2 x x86_64 QEMU Virtual CPU, 512 MiB, 2 disks, 1 NIC, bios"
    assert one["power"]["state"] is None and one["power"]["error"] == power["results"][0]["error"]
    assert daemon.admin("GET", f"/api/v1/machines/{MACS['node1']}")["hardware"]["disks"] == 2

    # The served page: the machines table has the two columns, which its script fills from those keys.
    page = daemon.call("GET", "/")
    assert "<th>boots</th><th>hardware</th><th>power</th>" in page
    script = daemon.call("GET", "/static/dashboard.js")
    assert "hardwareCell(m.hardware), powerCell(m.power)" in script


@pytest.mark.skipif(_missing() is not None, reason=_missing() or "")
def test_the_dashboard_shows_each_machines_inventory_and_power_in_chromium(daemon: Daemon,
                                                                           browser: Any) -> None:  # noqa: F811
    """The same in a real browser: the machines table's hardware and power cells, for a machine with an
    inventory and a BMC error, and for one without either."""
    register_version(daemon.state_dir, "web", "web\n")
    daemon.admin("POST", "/api/v1/hosts", {"name": "node1", "mac": MACS["node1"], "ip": "127.0.0.1", "image": "web"})
    daemon.admin("PUT", "/api/v1/hosts/node1/bmc", {"address": f"http://127.0.0.1:{_closed_port()}",
                                                   "username": "admin", "password": "pw"})
    error = daemon.admin("POST", "/api/v1/power", {"hosts": ["node1"], "action": "status"})["results"][0]["error"]
    assert daemon.call("GET", f"/boot/{MACS['node1']}.ipxe").startswith("#!ipxe")
    daemon.call("POST", f"/install/{MACS['node1']}/inventory", INVENTORY, daemon.install_token("node1"))
    assert daemon.call("GET", f"/boot/{MACS['node2']}.ipxe").startswith("#!ipxe")  # seen, no host

    from selenium.webdriver.common.by import By

    browser.get(daemon.base + "/")
    browser.find_element(By.ID, "token").send_keys(daemon.admin_token)
    browser.find_element(By.ID, "token-keep").click()
    rows = wait_for(browser, lambda: (r := {row[0]: row for row in table(browser, "machines")})
                    and MACS["node1"] in r and MACS["node2"] in r and r, "both machines")
    dot = " \u00b7 "
    assert rows[MACS["node1"]][7:] == [f"2 x x86_64 QEMU Virtual CPU{dot}512 MiB{dot}2 disks (352.0 MiB){dot}1 NIC",
                                       f"BMC error: {error}"]
    assert rows[MACS["node2"]][7:] == ["-", "-"]
    title = browser.execute_script(
        "return Array.from(document.querySelectorAll('#machines tbody tr'))"
        ".find(tr => tr.cells[0].textContent === arguments[0]).cells[7].title", MACS["node1"])
    assert title == "QEMU Standard PC, 2 x x86_64 QEMU Virtual CPU, 512 MiB, 2 disks, 1 NIC, bios"
    assert Console(browser).severe() == [], "console errors"
