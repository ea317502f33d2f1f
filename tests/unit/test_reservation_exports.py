"""`reservations export`: the reservation table as ISC dhcpd, dnsmasq and Kea configuration.

Each export is read by the real server's own config check when it is installed (`dhcpd -t`,
`dnsmasq --test`, `kea-dhcp4 -t`); Kea's reservations sit under the subnet that holds each address,
ISC host names are unique."""

from __future__ import annotations

import json
import shutil
import subprocess
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import pytest

from appliance.cli.exports import ExportRow, export, rows_from_dicts

ROWS = rows_from_dicts([
    {"mac": "52:54:00:00:00:02", "ip": "10.9.0.12", "hostname": "www2", "source": "addclients"},
    {"mac": "52:54:00:00:00:01", "ip": "10.9.0.11", "hostname": "www1"},
    {"mac": "52:54:00:00:00:03", "ip": "10.8.0.5", "hostname": None},
    {"mac": "52:54:00:00:00:04", "ip": "10.9.0.13", "hostname": "www1"},  # a clashing name stays unique
])
NETS = [IPv4Network("10.9.0.0/24"), IPv4Network("10.8.0.0/24")]


def test_isc_host_declarations() -> None:
    text = export("isc", ROWS)
    assert "host www1 {\n  hardware ethernet 52:54:00:00:00:01;\n  fixed-address 10.9.0.11;\n" \
           '  option host-name "www1";\n}' in text
    assert "host mac-525400000003 {\n  hardware ethernet 52:54:00:00:00:03;\n  fixed-address 10.8.0.5;\n}" in text
    assert "host www1-2 {" in text
    assert text.index("10.8.0.5") < text.index("10.9.0.11")  # address order


def peer(name: str) -> str:
    for path in (shutil.which(name), f"/usr/sbin/{name}"):
        if path and Path(path).exists():
            return path
    pytest.skip(f"{name} is not installed")


def test_isc_export_passes_dhcpds_own_config_check(tmp_path: Path) -> None:
    dhcpd = peer("dhcpd")
    (tmp_path / "reservations.conf").write_text(export("isc", ROWS))
    conf = tmp_path / "dhcpd.conf"
    conf.write_text(f'subnet 10.9.0.0 netmask 255.255.255.0 {{}}\nsubnet 10.8.0.0 netmask 255.255.255.0 {{}}\n'
                    f'include "{tmp_path / "reservations.conf"}";\n')
    result = subprocess.run([dhcpd, "-t", "-q", "-cf", str(conf)], capture_output=True, text=True, timeout=10)
    assert result.returncode == 0, result.stdout + result.stderr
    (tmp_path / "reservations.conf").write_text("host broken { hardware ethernet zz; }\n")  # the check does check
    assert subprocess.run([dhcpd, "-t", "-q", "-cf", str(conf)], capture_output=True, timeout=10).returncode != 0


def test_kea_export_passes_keas_own_config_check(tmp_path: Path) -> None:
    kea = peer("kea-dhcp4")
    doc = json.loads(export("kea", ROWS, NETS))
    conf = tmp_path / "kea-dhcp4.conf"
    conf.write_text(json.dumps({"Dhcp4": {"interfaces-config": {"interfaces": []},
                                          "lease-database": {"type": "memfile", "persist": False}, **doc}}))
    result = subprocess.run([kea, "-t", str(conf)], capture_output=True, text=True, timeout=20)
    assert result.returncode == 0, result.stdout + result.stderr


def test_dnsmasq_lines_pass_dnsmasqs_own_syntax_check(tmp_path: Path) -> None:
    text = export("dnsmasq", ROWS)
    assert text.splitlines()[1:] == ["dhcp-host=52:54:00:00:00:03,10.8.0.5",
                                     "dhcp-host=52:54:00:00:00:01,10.9.0.11,www1",
                                     "dhcp-host=52:54:00:00:00:02,10.9.0.12,www2",
                                     "dhcp-host=52:54:00:00:00:04,10.9.0.13,www1"]
    dnsmasq = peer("dnsmasq")
    conf = tmp_path / "reservations.conf"
    conf.write_text(text)
    result = subprocess.run([dnsmasq, "--test", f"--conf-file={conf}"], capture_output=True, text=True, timeout=10)
    assert result.returncode == 0, result.stderr
    assert "syntax check OK" in result.stderr + result.stdout


def test_kea_reservations_per_subnet() -> None:
    doc = json.loads(export("kea", ROWS, NETS))
    assert [(s["id"], s["subnet"], [r["ip-address"] for r in s["reservations"]]) for s in doc["subnet4"]] == [
        (1, "10.9.0.0/24", ["10.9.0.11", "10.9.0.12", "10.9.0.13"]), (2, "10.8.0.0/24", ["10.8.0.5"])]
    assert doc["subnet4"][1]["reservations"] == [{"hw-address": "52:54:00:00:00:03", "ip-address": "10.8.0.5"}]
    lonely = json.loads(export("kea", [ExportRow("52:54:00:00:00:09", IPv4Address("192.168.1.1"), None)], NETS))
    assert "192.168.1.1" in lonely["comment"]


def test_unknown_format() -> None:
    with pytest.raises(ValueError, match="not one of isc, dnsmasq, kea"):
        export("bind", ROWS)
