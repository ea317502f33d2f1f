"""Is another DHCP server on this segment? The probe's packets without I/O: the DHCPDISCOVER it sends and
the OFFERs it counts. The sending and the waiting live in services/dhcp_server_probe.py (used by
`imageserver init` and by the daemon's start-up rogue-server check)."""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address

from protocols.dhcp import options as o
from protocols.dhcp.codec import BOOTREPLY, DhcpError, DhcpPacket, decode, encode
from protocols.dhcp.options import MessageType, OptionCode
from protocols.dhcp.reply import FLAG_BROADCAST
from protocols.mac import normalize_mac


@dataclass(frozen=True, slots=True)
class Offer:
    server: IPv4Address  # the server id (option 54), else the sender
    address: IPv4Address  # yiaddr; 0.0.0.0 from a ProxyDHCP (PXE-only) server
    sender: IPv4Address

    @property
    def hands_out_addresses(self) -> bool:
        return int(self.address) != 0


def discover_packet(mac: str, xid: int) -> bytes:
    """A plain DHCPDISCOVER (no PXE vendor class: we are looking for address-giving servers) asking for a
    broadcast reply, since the probing socket has no address the offer could be unicast to."""
    chaddr = bytes.fromhex(normalize_mac(mac).replace(":", ""))
    packet = DhcpPacket(xid=xid, flags=FLAG_BROADCAST, chaddr=chaddr.ljust(16, b"\x00"), options={
        OptionCode.MESSAGE_TYPE: bytes([MessageType.DISCOVER]),
        OptionCode.PARAMETER_REQUEST_LIST: bytes([OptionCode.SUBNET_MASK, OptionCode.ROUTER,
                                                  OptionCode.DNS_SERVERS, OptionCode.SERVER_ID]),
    })
    return encode(packet)


def parse_offer(data: bytes, sender: str, xid: int) -> Offer | None:
    """An OFFER answering our xid, or None for anything else (other clients' traffic, junk)."""
    try:
        packet = decode(data)
        if packet.op != BOOTREPLY or packet.xid != xid or packet.message_type != MessageType.OFFER:
            return None
        server = o.server_id(packet)
    except DhcpError:
        return None
    return Offer(server=server or IPv4Address(sender), address=packet.yiaddr, sender=IPv4Address(sender))
