"""Whether a request with giaddr set really comes from a relay agent (RFC 1542, RFC 2131 4.1).

giaddr picks the subnet a request is served from, so a client on the provisioning link that writes a
relay subnet's address into giaddr would otherwise get an address (and a boot) from that subnet. A
request is taken as relayed only when it comes from a relay named in `dhcp.trusted_relays` (an address or
network; the empty default names none, so no request is relayed): a machine on the link can send from
port 67 and write any option 82 it likes, so neither proves a relay. From a named relay, it must also
look like what a relay agent sends:

- from UDP port 67: a relay talks to the server from the server port (RFC 1542 4.1, RFC 2131 4.1; RFC 8357
  allows another port only with the Relay Source Port sub-option 19 of option 82, accepted here too).
  A DHCP client sends from port 68; using port 67 takes root on the sending machine.
- from a real address (not 0.0.0.0): a relay has an address; a client in INIT has none.
- unicast to the server: a relay sends to the server's configured address (RFC 1542 4.1.1); a packet
  that arrived broadcast was sent by a machine on this link, not relayed to us.
- with hops >= 1: relays increment hops (RFC 1542 4.1.1); a client sends 0 (RFC 2131 4.1).

A request that fails is dropped (not answered from the local subnet either: a client does not set giaddr).
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network

from protocols.dhcp import options as o
from protocols.dhcp.codec import DhcpError, DhcpPacket

RELAY_PORT = 67
RELAY_SOURCE_PORT_SUBOPTION = 19  # RFC 8357, in option 82
_ZERO = IPv4Address(0)


def relay_problem(request: DhcpPacket, source: IPv4Address, source_port: int, *, broadcast: bool,
                  trusted: tuple[IPv4Network, ...] = ()) -> str | None:
    """Why a request with giaddr set is not taken as relayed, or None when it is (giaddr 0: None)."""
    if request.giaddr == _ZERO:
        return None
    if not any(source in net for net in trusted):
        return f"relay {source} is not in dhcp.trusted_relays"
    if source_port != RELAY_PORT and not _has_relay_source_port(request):
        return f"giaddr set but sent from port {source_port}, not a relay's port 67"
    if source == _ZERO:
        return "giaddr set but sent from 0.0.0.0"
    if broadcast:
        return "giaddr set but broadcast on the local link (a relay unicasts to the server)"
    if request.hops < 1:
        return "giaddr set but hops is 0 (a relay increments hops)"
    return None


def _has_relay_source_port(request: DhcpPacket) -> bool:
    try:
        info = o.relay_agent_info(request)
        return info is not None and RELAY_SOURCE_PORT_SUBOPTION in o.suboptions(info)
    except DhcpError:
        return False
