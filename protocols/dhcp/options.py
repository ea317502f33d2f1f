"""Option codes, typed accessors for request options and value builders for replies.

Accessors take a decoded DhcpPacket and return None when the option is absent. A present but malformed
option raises DhcpError *only when asked for*: decode() keeps raw bytes, so a client whose hostname is
not UTF-8 is still served by code that never reads the hostname. Text is decoded as strict UTF-8.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from ipaddress import IPv4Address
from typing import Final

from protocols.dhcp.codec import DhcpError, DhcpPacket


# Plain int constants, not IntEnum: every packet uses dozens of these, and an IntEnum member costs a
# slow class-attribute lookup plus a Python-level __hash__ on each dict access (about 10x an int's).
class MessageType:
    DISCOVER: Final = 1
    OFFER: Final = 2
    REQUEST: Final = 3
    DECLINE: Final = 4
    ACK: Final = 5
    NAK: Final = 6
    RELEASE: Final = 7
    INFORM: Final = 8


class OptionCode:
    SUBNET_MASK: Final = 1
    ROUTER: Final = 3
    DNS_SERVERS: Final = 6
    HOSTNAME: Final = 12
    DOMAIN_NAME: Final = 15
    BROADCAST_ADDRESS: Final = 28
    VENDOR_SPECIFIC: Final = 43
    REQUESTED_IP: Final = 50
    LEASE_TIME: Final = 51
    OVERLOAD: Final = 52
    MESSAGE_TYPE: Final = 53
    SERVER_ID: Final = 54
    PARAMETER_REQUEST_LIST: Final = 55
    MESSAGE: Final = 56
    MAX_MESSAGE_SIZE: Final = 57
    RENEWAL_TIME: Final = 58
    REBINDING_TIME: Final = 59
    VENDOR_CLASS: Final = 60
    CLIENT_ID: Final = 61
    TFTP_SERVER_NAME: Final = 66
    BOOTFILE_NAME: Final = 67
    USER_CLASS: Final = 77
    CLIENT_FQDN: Final = 81
    RELAY_AGENT_INFO: Final = 82
    CLIENT_ARCH: Final = 93
    CLIENT_NDI: Final = 94
    CLIENT_UUID: Final = 97
    DOMAIN_SEARCH: Final = 119
    IPXE_ENCAPSULATED: Final = 175  # iPXE's feature/settings space
    IPXE_NO_PXEDHCP: Final = 176  # sub-option of 175: 1 = do not wait for ProxyDHCP offers


# Message type -> its lower-case name (counters, logs).
MESSAGE_TYPE_NAMES: Final = {value: name.lower() for name, value in vars(MessageType).items() if name.isupper()}

# RFC 4578 section 2.1 (client system architecture, option 93) values we act on.
ARCH_BIOS = 0
ARCH_EFI_IA32 = 6
ARCH_EFI_X64 = 7
ARCH_EFI_BC = 9
ARCH_EFI_ARM64 = 11
ARCH_EFI_X64_HTTP = 16
ARCH_EFI_ARM64_HTTP = 19

# PXE spec 2.1 option 43 sub-option 6 (PXE_DISCOVERY_CONTROL): bit 3 = boot from the offered file name,
# skip boot server discovery.
PXE_DISCOVERY_CONTROL = 6
PXE_DISCOVERY_USE_BOOTFILE = 0x08


# --- accessors -----------------------------------------------------------------------------------


def _fixed(packet: DhcpPacket, code: int, size: int) -> bytes | None:
    value = packet.options.get(code)
    if value is not None and len(value) != size:
        raise DhcpError(f"option {code} has length {len(value)}, expected {size}")
    return value


def ip_address(packet: DhcpPacket, code: int) -> IPv4Address | None:
    value = _fixed(packet, code, 4)
    return None if value is None else IPv4Address(value)


def ip_addresses(packet: DhcpPacket, code: int) -> tuple[IPv4Address, ...] | None:
    value = packet.options.get(code)
    if value is None:
        return None
    if not value or len(value) % 4:
        raise DhcpError(f"option {code} has length {len(value)}, not a non-empty multiple of 4")
    return tuple(IPv4Address(value[i : i + 4]) for i in range(0, len(value), 4))


def u32(packet: DhcpPacket, code: int) -> int | None:
    value = _fixed(packet, code, 4)
    return None if value is None else int.from_bytes(value, "big")


def u16(packet: DhcpPacket, code: int) -> int | None:
    value = _fixed(packet, code, 2)
    return None if value is None else int.from_bytes(value, "big")


def text(packet: DhcpPacket, code: int) -> str | None:
    value = packet.options.get(code)
    if value is None:
        return None
    # Some clients (Windows among them) NUL-terminate their strings.
    value = value.rstrip(b"\x00")
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DhcpError(f"option {code} is not valid UTF-8") from exc


def requested_ip(packet: DhcpPacket) -> IPv4Address | None:
    return ip_address(packet, OptionCode.REQUESTED_IP)


def server_id(packet: DhcpPacket) -> IPv4Address | None:
    return ip_address(packet, OptionCode.SERVER_ID)


def client_id(packet: DhcpPacket) -> bytes | None:
    value = packet.options.get(OptionCode.CLIENT_ID)
    if value is not None and len(value) < 2:
        raise DhcpError(f"option 61 has length {len(value)}, minimum is 2")
    return value


def hostname(packet: DhcpPacket) -> str | None:
    return text(packet, OptionCode.HOSTNAME)


def vendor_class(packet: DhcpPacket) -> str | None:
    return text(packet, OptionCode.VENDOR_CLASS)


def user_class_raw(packet: DhcpPacket) -> tuple[bytes, ...] | None:
    """The user class instances: RFC 3004 length-prefixed, or iPXE's plain unprefixed string."""
    value = packet.options.get(OptionCode.USER_CLASS)
    if value is None:
        return None
    instances: list[bytes] = []
    pos = 0
    while pos < len(value):
        length = value[pos]
        if length == 0 or pos + 1 + length > len(value):
            # Not RFC 3004 framing: iPXE sends the bare string "iPXE".
            return (value,)
        instances.append(value[pos + 1 : pos + 1 + length])
        pos += 1 + length
    return tuple(instances) if instances else (value,)


def user_class(packet: DhcpPacket) -> tuple[str, ...] | None:
    raw = user_class_raw(packet)
    if raw is None:
        return None
    try:
        return tuple(item.decode("utf-8") for item in raw)
    except UnicodeDecodeError as exc:
        raise DhcpError("option 77 is not valid UTF-8") from exc


def is_ipxe(packet: DhcpPacket) -> bool:
    """True when the user class says iPXE (no text decoding, so junk never raises)."""
    return b"iPXE" in (user_class_raw(packet) or ())


def client_arch(packet: DhcpPacket) -> tuple[int, ...] | None:
    value = packet.options.get(OptionCode.CLIENT_ARCH)
    if value is None:
        return None
    if not value or len(value) % 2:
        raise DhcpError(f"option 93 has length {len(value)}, not a non-empty multiple of 2")
    return struct.unpack(f"!{len(value) // 2}H", value)


def client_ndi(packet: DhcpPacket) -> tuple[int, int, int] | None:
    """Option 94 as (interface type, major, minor); UNDI 2.1 is (1, 2, 1)."""
    value = _fixed(packet, OptionCode.CLIENT_NDI, 3)
    return None if value is None else (value[0], value[1], value[2])


def client_uuid(packet: DhcpPacket) -> bytes | None:
    """The 16-byte machine identifier of option 97 (type byte 0 + 16 bytes, RFC 4578 2.3), as sent."""
    value = _fixed(packet, OptionCode.CLIENT_UUID, 17)
    if value is None:
        return None
    if value[0] != 0:
        raise DhcpError(f"option 97 identifier type {value[0]} is not 0 (UUID)")
    return value[1:]


def max_message_size(packet: DhcpPacket) -> int | None:
    return u16(packet, OptionCode.MAX_MESSAGE_SIZE)


def param_request_list(packet: DhcpPacket) -> tuple[int, ...] | None:
    value = packet.options.get(OptionCode.PARAMETER_REQUEST_LIST)
    return None if value is None else tuple(value)


def relay_agent_info(packet: DhcpPacket) -> bytes | None:
    """Option 82 exactly as the relay sent it: it is echoed back unchanged, never rebuilt."""
    return packet.options.get(OptionCode.RELAY_AGENT_INFO)


def lease_time(packet: DhcpPacket) -> int | None:
    return u32(packet, OptionCode.LEASE_TIME)


def suboptions(value: bytes) -> dict[int, bytes]:
    """Parse an encapsulated code/length/value space (options 43, 82, 175); pad and end honoured."""
    out: dict[int, bytes] = {}
    pos = 0
    while pos < len(value):
        code = value[pos]
        if code == 255:
            break
        if code == 0:
            pos += 1
            continue
        if pos + 1 >= len(value) or pos + 2 + value[pos + 1] > len(value):
            raise DhcpError(f"sub-option {code} overruns its encapsulating option")
        out[code] = out.get(code, b"") + value[pos + 2 : pos + 2 + value[pos + 1]]
        pos += 2 + value[pos + 1]
    return out


# --- builders for reply values -------------------------------------------------------------------


def pack_ip(address: IPv4Address) -> bytes:
    return address.packed


def pack_ip_list(addresses: Iterable[IPv4Address]) -> bytes:
    return b"".join(address.packed for address in addresses)


def pack_u8(value: int) -> bytes:
    return struct.pack("!B", value)


def pack_u16(value: int) -> bytes:
    return struct.pack("!H", value)


def pack_u32(value: int) -> bytes:
    return struct.pack("!I", value)


def pack_text(value: str) -> bytes:
    return value.encode("utf-8")


def pack_suboptions(items: Iterable[tuple[int, bytes]]) -> bytes:
    return b"".join(bytes((code, len(data))) + data for code, data in items)


def pack_ipxe_encapsulated(no_proxydhcp_wait: bool = True) -> bytes:
    """Option 175 for iPXE; sub-option 176 = 1 stops its ~3 s wait for ProxyDHCP offers."""
    return pack_suboptions([(OptionCode.IPXE_NO_PXEDHCP, pack_u8(1 if no_proxydhcp_wait else 0))])


def pack_pxe_vendor_options() -> bytes:
    """Option 43 telling a PXE ROM to boot the offered file without boot server discovery."""
    return pack_suboptions([(PXE_DISCOVERY_CONTROL, pack_u8(PXE_DISCOVERY_USE_BOOTFILE))]) + b"\xff"
