"""protocols/lldp.py: an LLDP frame's TLVs and the neighbour they name (chassis id, port id, system name,
port description) by subtype, as ironic-inspector's lldp_basic reads them; and the installer's own reading
of a captured frame (lib/inventory.sh _iv_lldp, from a pcap file as tcpdump writes it) giving the same TLVs."""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from protocols.lldp import LldpNeighbor, neighbor, tlvs_of_frame
from tests.installer_sh import prelude

SWITCH_MAC = bytes.fromhex("d623b8eb8399")


def tlv(kind: int, value: bytes) -> bytes:
    return struct.pack("!H", kind << 9 | len(value)) + value


def frame(*tlvs: bytes, vlan: bool = False) -> bytes:
    tag = b"\x81\x00\x00\x07" if vlan else b""
    body = b"".join(tlvs) + tlv(0, b"")
    return bytes.fromhex("0180c200000e") + SWITCH_MAC + tag + b"\x88\xcc" + body + b"\x00" * 8  # padding


LLDPD = frame(tlv(1, b"\x04" + SWITCH_MAC), tlv(2, b"\x05swp7"), tlv(3, b"\x00\x78"), tlv(4, b"uplink to node7"),
              tlv(5, b"switch-7.lab"), tlv(127, b"\x00\x12\x0f\x01\x03\x6c\x03\x00\x10"))


def pairs(raw: bytes) -> list[list[object]]:
    return [[kind, value.hex()] for kind, value in tlvs_of_frame(raw)]


def test_the_neighbour_of_a_frame_as_lldpd_sends_it() -> None:
    assert [kind for kind, _ in tlvs_of_frame(LLDPD)] == [1, 2, 3, 4, 5, 127]
    assert neighbor(pairs(LLDPD)) == LldpNeighbor("d6:23:b8:eb:83:99", "swp7", "switch-7.lab", "uplink to node7")
    assert tlvs_of_frame(frame(tlv(1, b"\x04" + SWITCH_MAC), vlan=True)) == [(1, b"\x04" + SWITCH_MAC)]


def test_subtypes_network_addresses_and_text() -> None:
    got = neighbor([[1, (b"\x05\x01" + bytes([10, 0, 0, 254])).hex()], [2, (b"\x03" + SWITCH_MAC).hex()]])
    assert got == LldpNeighbor("10.0.0.254", "d6:23:b8:eb:83:99", None, None)
    got = neighbor([[1, b"\x07rack4-tor".hex()], [2, b"\x07Gi1/0/7\x00".hex()]])
    assert got == LldpNeighbor("rack4-tor", "Gi1/0/7?", None, None), "locally assigned: text, control characters shown"


def test_what_does_not_parse_is_skipped_never_an_error() -> None:
    assert neighbor([]) is None
    assert neighbor([[5, b"only a name".hex()]]) is None, "no chassis, no port: no neighbour"
    assert neighbor([[1, "zz"], [2, "05"], ["x", "00"], [2]]) is None
    assert neighbor([[1, (b"\x04" + b"\x01\x02").hex()], [2, b"\x05p1".hex()]]) == LldpNeighbor(None, "p1", None, None)
    assert tlvs_of_frame(bytes(12) + b"\x08\x00" + tlv(1, b"\x04" + SWITCH_MAC)) == [], "IPv4, not LLDP"
    assert tlvs_of_frame(LLDPD[:28]) == [(1, b"\x04" + SWITCH_MAC)], "a truncated TLV ends the list"


@pytest.mark.parametrize("shell", [s for s in ("dash", "busybox") if shutil.which(s)])
def test_the_installer_reads_a_captured_frame_into_the_same_tlvs(shell: str, tmp_path: Path) -> None:
    (tmp_path / "lldp").mkdir()
    for name, raw in (("eth0", LLDPD), ("eth1", frame(tlv(1, b"\x04" + SWITCH_MAC), vlan=True)),
                      ("eth2", bytes(12) + b"\x08\x00" + bytes(40))):
        pcap = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1)
        (tmp_path / "lldp" / f"{name}.pcap").write_bytes(pcap + struct.pack("<IIII", 0, 0, len(raw), len(raw)) + raw)
    script = prelude("common", "disks") + '. "$INSTALLER_LIB/lib/inventory.sh"\n' + "".join(
        f'_iv_lldp {n}; echo\n' for n in ("eth0", "eth1", "eth2", "eth3"))
    argv = [shell, "sh"] if shell == "busybox" else [shell]
    out = subprocess.run([*argv, "-c", script], env={"PATH": os.environ["PATH"], "TMPDIR": str(tmp_path)},
                         capture_output=True, text=True, check=True).stdout.splitlines()
    assert json.loads(out[0]) == pairs(LLDPD)
    assert json.loads(out[1]) == [[1, (b"\x04" + SWITCH_MAC).hex()]]
    assert out[2:] == ["null", "null"], "not LLDP; no capture"


def test_machines_show_names_the_switch_port() -> None:
    from appliance.cli.inventoryview import inventory_lines

    nic = {"name": "eno1", "mac_address": "3c:ec:ef:00:00:01", "driver": "ice", "speed_mbps": 25000,
           "has_carrier": True, "lldp_neighbor": {"chassis_id": "d6:23:b8:eb:83:99", "port_id": "swp7",
                                                  "system_name": "switch-7.lab", "port_description": None}}
    view = {"received": 0.0, "summary": "1 NIC", "inventory": {"interfaces": [nic, {**nic, "name": "eno2",
                                                                                    "lldp_neighbor": None}]}}
    lines = inventory_lines(view)
    assert "  switch   switch-7.lab port swp7 (chassis d6:23:b8:eb:83:99)" in lines
    assert sum(line.startswith("  switch") for line in lines) == 1
