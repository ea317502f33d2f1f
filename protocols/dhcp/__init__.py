"""DHCPv4 without I/O: the wire codec, typed option access, and the server's reply decisions."""

from protocols.dhcp.codec import DhcpError, DhcpPacket, decode, encode
from protocols.dhcp.reply import (
    Binding,
    BootSettings,
    Bound,
    LeaseBook,
    Reply,
    ServerSettings,
    Subnet,
    respond,
    select_subnet,
)

__all__ = [
    "Binding",
    "BootSettings",
    "Bound",
    "DhcpError",
    "DhcpPacket",
    "LeaseBook",
    "Reply",
    "ServerSettings",
    "Subnet",
    "decode",
    "encode",
    "respond",
    "select_subnet",
]
