"""The installed system's network is written for what the image uses, found from its tree: netplan,
NetworkManager, ifupdown or systemd-networkd (appliance/boot/installer/lib/network.sh's network_system and
write_*), for the NIC with the host's MAC, by DHCP or with the host's fixed address. The script's own
sh runs against image trees made for each; netplan's YAML is checked by `netplan generate --root-dir`
(Debian package netplan.io) where it is installed: the files netplan renders are the oracle."""

from __future__ import annotations

import configparser
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.installer_sh import prelude

MAC = "52:54:00:AB:CD:EF"
STATIC = {"IPADDR": "10.20.0.15", "NETMASK": "255.255.255.0", "GATEWAY": "10.20.0.1", "DNS": "10.20.0.2,10.20.0.3",
          "DOMAIN": "lab.example"}


def configure(target: Path, **env: str) -> str:
    script = prelude("common", "report", "network") + "configure_network\n"
    run = subprocess.run(["sh", "-euc", script], capture_output=True, text=True,
                         env={"PATH": os.environ["PATH"], "TARGET": str(target), "MAC": MAC,
                              "TARGET_IFACE": "ens2", **env})
    assert run.returncode == 0, run.stderr
    return run.stdout


def tree(tmp_path: Path, *files: str, enabled: tuple[str, ...] = ()) -> Path:
    root = tmp_path / "target"
    for rel in files:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text("")
    wants = root / "etc/systemd/system/multi-user.target.wants"
    wants.mkdir(parents=True, exist_ok=True)
    for unit in enabled:
        (wants / unit).symlink_to(f"/lib/systemd/system/{unit}")
    (root / "etc/systemd/network").mkdir(parents=True, exist_ok=True)  # every systemd image has it
    return root


def ini(path: Path) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(path.read_text())
    return parser


NETPLAN_MASTER = ("network:\n  version: 2\n  ethernets:\n    ens3:\n      dhcp4: false\n"
                  "      addresses: [192.0.2.9/24]\n")


def netplan_tree(tmp_path: Path, renderer: str | None = None) -> Path:
    root = tree(tmp_path, "usr/sbin/netplan", "sbin/ifup", enabled=("systemd-networkd.service",))
    (root / "etc/netplan").mkdir(parents=True)
    (root / "etc/netplan/50-cloud-init.yaml").write_text(NETPLAN_MASTER)
    if renderer:
        (root / "etc/netplan/01-renderer.yaml").write_text(f"network:\n  version: 2\n  renderer: {renderer}\n")
    (root / "etc/network").mkdir(parents=True)
    (root / "etc/network/interfaces").write_text("auto lo\niface lo inet loopback\n")
    return root


needs_netplan = pytest.mark.skipif(shutil.which("netplan") is None, reason="netplan is not installed (netplan.io)")


@needs_netplan
def test_netplan_dhcp_by_mac_renders_for_networkd(tmp_path: Path) -> None:
    root = netplan_tree(tmp_path)
    out = configure(root)
    assert "[network] dhcp, netplan (52:54:00:ab:cd:ef)" in out
    assert "50-cloud-init.yaml (its NICs) renamed to 50-cloud-init.yaml.master" in out
    ours = root / "etc/netplan/90-imageserver.yaml"
    assert oct(ours.stat().st_mode & 0o777) == "0o600"
    assert not (root / "etc/network/interfaces.d").exists(), "ifupdown written as well"
    subprocess.run(["netplan", "generate", "--root-dir", str(root)], check=True, capture_output=True, text=True)
    rendered = list((root / "run/systemd/network").glob("*.network"))
    assert [p.name for p in rendered] == ["10-netplan-imageserver.network"], rendered
    net = ini(rendered[0])
    assert net["Match"]["PermanentMACAddress"] == MAC.lower() and net["Network"]["DHCP"] == "ipv4"


@needs_netplan
def test_netplan_static_renders_address_route_dns_for_networkmanager(tmp_path: Path) -> None:
    root = netplan_tree(tmp_path, renderer="NetworkManager")
    configure(root, **STATIC)
    assert (root / "etc/netplan/01-renderer.yaml").exists(), "a file without ethernets was retired"
    subprocess.run(["netplan", "generate", "--root-dir", str(root)], check=True, capture_output=True, text=True)
    [conn] = (root / "run/NetworkManager/system-connections").glob("netplan-imageserver*.nmconnection")
    nm = ini(conn)
    assert nm["ethernet"]["mac-address"].lower() == MAC.lower()
    assert nm["ipv4"]["method"] == "manual" and nm["ipv4"]["address1"] == "10.20.0.15/24"
    assert nm["ipv4"]["dns"].strip(";").split(";") == ["10.20.0.2", "10.20.0.3"]
    assert nm["ipv4"]["dns-search"].strip(";") == "lab.example"
    assert nm["ipv4"]["route1"] == "0.0.0.0/0,10.20.0.1"


def test_networkmanager_enabled_wins_over_an_ifupdown_with_only_lo(tmp_path: Path) -> None:
    root = tree(tmp_path, "usr/sbin/NetworkManager", "sbin/ifup", enabled=("NetworkManager.service",))
    (root / "etc/network").mkdir(parents=True)
    (root / "etc/network/interfaces").write_text("auto lo\niface lo inet loopback\n")
    out = configure(root, **STATIC)
    assert "[network] static, NetworkManager keyfile" in out
    f = root / "etc/NetworkManager/system-connections/imageserver.nmconnection"
    assert oct(f.stat().st_mode & 0o777) == "0o600"
    nm = ini(f)
    assert nm["connection"]["type"] == "ethernet" and re.fullmatch(r"[0-9a-f-]{36}", nm["connection"]["uuid"])
    assert nm["ethernet"]["mac-address"] == MAC.lower()
    assert nm["ipv4"]["method"] == "manual" and nm["ipv4"]["address1"] == "10.20.0.15/24,10.20.0.1"
    assert nm["ipv4"]["dns"] == "10.20.0.2;10.20.0.3;" and nm["ipv4"]["dns-search"] == "lab.example;"
    assert (root / "etc/resolv.conf").read_text() == "nameserver 10.20.0.2\nnameserver 10.20.0.3\n"
    assert not (root / "etc/network/interfaces.d").exists()


def test_ifupdown_when_the_image_has_ifup_even_with_networkd_installed(tmp_path: Path) -> None:
    root = tree(tmp_path, "sbin/ifup", "lib/systemd/systemd-networkd")
    (root / "etc/network").mkdir(parents=True)
    (root / "etc/network/interfaces").write_text("auto lo\niface lo inet loopback\n\nallow-hotplug ens3\n"
                                                 "iface ens3 inet dhcp\n")
    assert "[network] dhcp, ifupdown on ens2" in configure(root)
    assert (root / "etc/network/interfaces.d/imageserver").read_text() == ("allow-hotplug ens2\n"
                                                                            "iface ens2 inet dhcp\n")
    assert "# (master) iface ens3 inet dhcp" in (root / "etc/network/interfaces").read_text()
    assert not list((root / "etc/systemd/network").iterdir())


def test_systemd_networkd_enabled_static(tmp_path: Path) -> None:
    root = tree(tmp_path, "lib/systemd/systemd-networkd", enabled=("systemd-networkd.service",))
    (root / "etc").mkdir(exist_ok=True)
    (root / "etc/resolv.conf").symlink_to("/run/systemd/resolve/stub-resolv.conf")
    assert "[network] static, systemd-networkd" in configure(root, **STATIC)
    text = (root / "etc/systemd/network/10-imageserver.network").read_text()
    assert text == ("[Match]\nMACAddress=52:54:00:ab:cd:ef\n\n[Network]\nAddress=10.20.0.15/24\nGateway=10.20.0.1\n"
                    "DNS=10.20.0.2\nDNS=10.20.0.3\nDomains=lab.example\n")
    assert (root / "etc/resolv.conf").is_symlink(), "resolved's link replaced"


def test_an_image_without_a_network_system_is_left_alone(tmp_path: Path) -> None:
    root = tree(tmp_path)
    assert "left as it is" in configure(root)
    assert not list((root / "etc/systemd/network").iterdir())
