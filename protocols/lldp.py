"""LLDP (IEEE 802.1AB) TLVs -> the neighbour a NIC sees: the switch's chassis id, port id and system name.

The installer captures one LLDP frame per NIC and posts its TLVs as Ironic's inventory does, a list of
[type, "hex of the value"] (appliance/boot/installer/lib/inventory.sh); this reads them as ironic-inspector's
lldp_basic plugin does. Pure: bytes in, strings out. A TLV that does not parse is skipped, never an error
(the frame came from whatever is on the wire).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

END, CHASSIS_ID, PORT_ID, TTL, PORT_DESCRIPTION, SYSTEM_NAME = 0, 1, 2, 3, 4, 5
# The subtypes whose value is a MAC address, and a network address (family byte, then the address).
_CHASSIS_MAC, _CHASSIS_NETWORK = 4, 5
_PORT_MAC, _PORT_NETWORK = 3, 4
_MAX_TEXT = 255


@dataclass(frozen=True, slots=True)
class LldpNeighbor:
    chassis_id: str | None = None
    port_id: str | None = None
    system_name: str | None = None
    port_description: str | None = None


def _text(value: bytes) -> str | None:
    text = "".join(c if c.isprintable() else "?" for c in value.decode("utf-8", "replace")).strip()
    return text[:_MAX_TEXT] or None


def _mac(value: bytes) -> str | None:
    return ":".join(f"{b:02x}" for b in value) if len(value) == 6 else None


def _network(value: bytes) -> str | None:
    """A management-address-style value: IANA family 1 (IPv4) or 2 (IPv6), then the address."""
    family, address = (value[0], value[1:]) if value else (0, b"")
    if (family, len(address)) in ((1, 4), (2, 16)):
        return str(ipaddress.ip_address(address))
    return None


def _id(value: bytes, mac_subtype: int, network_subtype: int) -> str | None:
    if len(value) < 2:
        return None
    subtype, rest = value[0], value[1:]
    if subtype == mac_subtype:
        return _mac(rest)
    if subtype == network_subtype:
        return _network(rest)
    return _text(rest)


def tlvs_of_frame(frame: bytes) -> list[tuple[int, bytes]]:
    """An Ethernet frame's LLDP TLVs (an 802.1Q tag allowed); [] when it is no LLDP frame."""
    kind, at = frame[12:14], 14
    if kind == b"\x81\x00":
        kind, at = frame[16:18], 18
    if kind != b"\x88\xcc":
        return []
    out: list[tuple[int, bytes]] = []
    while at + 2 <= len(frame):
        header = int.from_bytes(frame[at:at + 2], "big")
        kind_, length = header >> 9, header & 0x1FF
        value = frame[at + 2:at + 2 + length]
        if kind_ == END or len(value) < length:
            break
        out.append((kind_, value))
        at += 2 + length
    return out


def neighbor(tlvs: Iterable[Sequence[object]]) -> LldpNeighbor | None:
    """The neighbour in [type, hex] pairs (Ironic's shape); None when they name no chassis or port."""
    found: dict[int, bytes] = {}
    for pair in tlvs:
        if len(pair) != 2 or not isinstance(pair[0], int) or not isinstance(pair[1], str):
            continue
        try:
            value = bytes.fromhex(pair[1])
        except ValueError:
            continue
        found.setdefault(pair[0], value)  # the first of each type (a frame has one of each)
    chassis = _id(found[CHASSIS_ID], _CHASSIS_MAC, _CHASSIS_NETWORK) if CHASSIS_ID in found else None
    port = _id(found[PORT_ID], _PORT_MAC, _PORT_NETWORK) if PORT_ID in found else None
    if chassis is None and port is None:
        return None
    return LldpNeighbor(chassis, port, _text(found[SYSTEM_NAME]) if SYSTEM_NAME in found else None,
                        _text(found[PORT_DESCRIPTION]) if PORT_DESCRIPTION in found else None)
