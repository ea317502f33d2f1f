"""`imageserver init` on a real segment: two namespaces joined by a veth, the wizard runs in the "box" one.

With busybox udhcpd answering on the other side, the DHCPDISCOVER probe sees its OFFER and init writes a
proxy-mode config; without it, an authoritative one whose pool avoids the box's and the router's
addresses. Every written file passes `imageserver check-config`. The probe only ever runs inside
the namespaces these tests create.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

from lab.netns import Lab, Namespace
from lab.servers import start_udhcpd

REPO = Path(__file__).resolve().parents[2]
BOX_HOST = 10  # the box's address on the segment: <subnet>.10; the router / other server is .1


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "PYTHONDONTWRITEBYTECODE": "1"}


def _segment(lab: Lab) -> tuple[Namespace, str, Namespace, str, IPv4Network]:
    box, other = lab.namespace("box"), lab.namespace("lan")
    box_if, other_if = lab.ifname("vb"), lab.ifname("vl")
    lab.veth(box, box_if, other, other_if)
    subnet = lab.random_subnet()
    box.add_address(box_if, f"{subnet.network_address + BOX_HOST}/24")
    other.add_address(other_if, f"{subnet.network_address + 1}/24")
    return box, box_if, other, other_if, subnet


def _init(box: Namespace, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return box.run([sys.executable, "-m", "appliance.cli", "init", *args], env=_env(), check=False, timeout=60,
                   input=stdin)


def _check_config(box: Namespace, path: Path) -> str:
    result = box.run([sys.executable, "-m", "appliance.cli", "check-config", "--config", str(path)], env=_env(),
                     check=False)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_init_proposes_proxy_mode_when_another_dhcp_server_answers(lab: Lab) -> None:
    box, box_if, other, other_if, subnet = _segment(lab)
    server = start_udhcpd(other, other_if, subnet.network_address + 1, subnet)
    out = lab.tmp_path("proxy.toml")
    result = _init(box, "--interface", box_if, "--yes", "--output", str(out), "--state-dir",
                   str(lab.tmp_path("state")), "--probe-timeout", "1.5")
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"another DHCP server answers here: {server.server_id}" in result.stdout
    cfg = tomllib.loads(out.read_text())
    assert cfg["dhcp"]["mode"] == "proxy"
    assert cfg["dhcp"]["enabled"] is True
    assert "pool" not in cfg["dhcp"] and "subnet" not in cfg["dhcp"]  # the other server owns the addresses
    assert cfg["appliance"] == {**cfg["appliance"], "interface": box_if,
                                "address": str(subnet.network_address + BOX_HOST)}
    assert f"found another DHCP server on this segment: {server.server_id}" in out.read_text()
    assert "dhcp        proxy" in _check_config(box, out)


def test_init_writes_an_authoritative_config_with_a_sane_pool_on_a_quiet_segment(lab: Lab) -> None:
    box, box_if, _other, _other_if, subnet = _segment(lab)
    out = lab.tmp_path("auth.toml")
    state = lab.tmp_path("state")
    result = _init(box, "--interface", box_if, "--yes", "--output", str(out), "--state-dir", str(state),
                   "--probe-timeout", "1")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "none answered -> authoritative" in result.stdout
    cfg = tomllib.loads(out.read_text())
    assert cfg["dhcp"]["mode"] == "authoritative"
    assert cfg["appliance"]["state_dir"] == str(state)
    assert IPv4Network(cfg["dhcp"]["subnet"]) == subnet
    first, last = (IPv4Address(x) for x in cfg["dhcp"]["pool"].split("-"))
    box_ip = subnet.network_address + BOX_HOST
    assert first in subnet and last in subnet and first <= last
    assert not first <= box_ip <= last
    assert not first <= subnet.network_address + 1 <= last  # .1, where a router usually is
    assert last < subnet.broadcast_address
    assert int(last) - int(first) >= 100  # room for a rack of machines, not a token range
    assert f"pool {first}-{last}" in _check_config(box, out)

    # A second run keeps the file unless told to overwrite it.
    again = _init(box, "--interface", box_if, "--yes", "--output", str(out), "--no-probe")
    assert again.returncode == 2 and "--force" in again.stderr
    forced = _init(box, "--interface", box_if, "--yes", "--output", str(out), "--no-probe", "--force",
                   "--pool", f"{subnet.network_address + 50}-{subnet.network_address + 60}")
    assert forced.returncode == 0, forced.stderr
    assert tomllib.loads(out.read_text())["dhcp"]["pool"] == \
        f"{subnet.network_address + 50}-{subnet.network_address + 60}"


def test_init_asks_and_takes_typed_answers(lab: Lab) -> None:
    """The interactive path: the interface, mode, pool and state dir typed on stdin; enter keeps a proposal."""
    box, box_if, _other, _other_if, subnet = _segment(lab)
    out = lab.tmp_path("typed.toml")
    state = lab.tmp_path("typed-state")
    pool = f"{subnet.network_address + 200}-{subnet.network_address + 220}"
    answers = f"{box_if}\n\n{pool}\n{state}\nyes\n"
    result = _init(box, "--output", str(out), "--no-probe", stdin=answers)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Provisioning interface" in result.stdout and "Dynamic pool" in result.stdout
    cfg = tomllib.loads(out.read_text())
    assert cfg["dhcp"]["pool"] == pool and cfg["dhcp"]["mode"] == "authoritative"
    assert cfg["appliance"]["state_dir"] == str(state)
    _check_config(box, out)
    # A pool holding the box's own address is refused before anything is written.
    bad = _init(box, "--output", str(lab.tmp_path("bad.toml")), "--no-probe", "--yes", "--interface", box_if,
                "--pool", f"{subnet.network_address + 5}-{subnet.network_address + 20}")
    assert bad.returncode == 2 and "own address" in bad.stderr
