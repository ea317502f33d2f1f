"""RFC 2131 server decisions, PXE / iPXE / UEFI HTTP boot, ProxyDHCP and reply routing.

Requests go through encode/decode first and replies are checked as decoded wire bytes, so every case
also exercises the codec. Address bookkeeping is the reference MemoryLeaseBook (test_dhcp_book.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network

import pytest
from dhcppython import options as oracle_options
from dhcppython.packet import DHCPPacket as OraclePacket

from protocols.dhcp import options as o
from protocols.dhcp.codec import DhcpPacket, decode, encode
from protocols.dhcp.options import MessageType
from protocols.dhcp.reply import (
    BootSettings,
    Reply,
    ServerSettings,
    Subnet,
    boot_choice,
    respond,
    select_subnet,
)
from tests.unit.test_dhcp_book import MemoryLeaseBook
from tests.unit.test_dhcp_codec import DHCLIENT_DISCOVER, IPXE_DISCOVER, PXE_ROM_DISCOVER, wire_options

IP = IPv4Address
ZERO = IP(0)
SERVER = IP("10.99.0.1")
BROADCAST = IP("255.255.255.255")
LAN = Subnet(
    IPv4Network("10.99.0.0/24"),
    IP("10.99.0.100"),
    IP("10.99.0.199"),
    IP("10.99.0.254"),
    (IP("10.99.0.1"), IP("10.99.0.2")),
    "lab.example",
    3600,
)
REMOTE = Subnet(IPv4Network("10.98.5.0/24"), IP("10.98.5.10"), IP("10.98.5.11"), IP("10.98.5.1"), (), None, 600)
RELAY = IP("10.98.5.1")
SETTINGS = ServerSettings(SERVER, "authoritative", (LAN, REMOTE), BootSettings())
PROXY = ServerSettings(SERVER, "proxy", (), BootSettings())
A, B = "52:54:00:00:00:0a", "52:54:00:00:00:0b"


def client(
    mtype: int | None,
    mac: str = A,
    *,
    ciaddr: IPv4Address = ZERO,
    giaddr: IPv4Address = ZERO,
    flags: int = 0,
    options: dict[int, bytes] | None = None,
) -> DhcpPacket:
    """A client message as it arrives: built, encoded and decoded again."""
    opts = ({53: bytes([mtype])} if mtype is not None else {}) | (options or {})
    packet = DhcpPacket(
        op=1,
        xid=0x1234,
        flags=flags,
        ciaddr=ciaddr,
        giaddr=giaddr,
        chaddr=bytes.fromhex(mac.replace(":", "")).ljust(16, b"\x00"),
        options=opts,
    )
    return decode(encode(packet))


def wire(reply: Reply) -> DhcpPacket:
    return decode(reply.to_bytes())


def dora(book: MemoryLeaseBook, mac: str = A, now: float = 0.0, **kw) -> Reply:
    offer = respond(client(MessageType.DISCOVER, mac, **kw), book, SETTINGS, now)
    assert offer is not None
    request = client(MessageType.REQUEST, mac, **kw, options={50: offer.packet.yiaddr.packed, 54: SERVER.packed})
    ack = respond(request, book, SETTINGS, now)
    assert ack is not None and ack.packet.message_type == MessageType.ACK
    return ack


# --- DISCOVER -> OFFER ----------------------------------------------------------------------------------


def test_discover_gets_an_offer_from_the_pool_broadcast_to_the_client() -> None:
    book = MemoryLeaseBook()
    reply = respond(client(MessageType.DISCOVER), book, SETTINGS, 0.0)
    assert reply is not None
    p = wire(reply)
    assert (p.op, p.xid, p.mac, p.message_type) == (2, 0x1234, A, MessageType.OFFER)
    assert p.yiaddr == IP("10.99.0.100") and p.ciaddr == ZERO and p.siaddr == ZERO
    assert o.server_id(p) == SERVER and o.lease_time(p) == 3600
    assert p.options[1] == IP("255.255.255.0").packed
    assert o.ip_addresses(p, 3) == (LAN.router,) and o.ip_addresses(p, 6) == LAN.dns
    assert (reply.dest_ip, reply.dest_port, reply.broadcast, reply.durable) == (BROADCAST, 68, True, False)
    assert book.holds[IP("10.99.0.100")][0] == A


def test_discover_with_a_free_requested_address_is_offered_that_address() -> None:
    reply = respond(
        client(MessageType.DISCOVER, options={50: IP("10.99.0.150").packed}), MemoryLeaseBook(), SETTINGS, 0.0
    )
    assert reply is not None and reply.packet.yiaddr == IP("10.99.0.150")


def test_discover_is_unanswered_when_the_pool_is_exhausted_or_the_network_unknown() -> None:
    book = MemoryLeaseBook()
    for mac in ("52:54:00:00:01:01", "52:54:00:00:01:02"):
        dora(book, mac, giaddr=RELAY)
    assert respond(client(MessageType.DISCOVER, B, giaddr=RELAY), book, SETTINGS, 1.0) is None
    assert respond(client(MessageType.DISCOVER, giaddr=IP("172.16.0.1")), book, SETTINGS, 1.0) is None


@pytest.mark.parametrize(
    ("prl", "present", "absent"),
    [
        (None, {53, 54, 51, 1, 3, 6, 15}, {28, 58, 59, 12}),  # no list: the usual set
        (bytes([1, 3]), {53, 54, 51, 1, 3, 6}, {15, 28, 58, 59}),  # 6 is always sent
        (bytes([1, 15, 28, 58, 59]), {1, 3, 6, 15, 28, 58, 59}, {12}),
    ],
)
def test_parameter_request_list_is_honoured(prl: bytes | None, present: set[int], absent: set[int]) -> None:
    request = client(MessageType.DISCOVER, options={55: prl} if prl is not None else {})
    reply = respond(request, MemoryLeaseBook(), SETTINGS, 0.0)
    assert reply is not None
    p = wire(reply)
    assert present <= set(p.options) and not absent & set(p.options)
    if 58 in p.options:
        assert (o.u32(p, 58), o.u32(p, 59)) == (1800, 3150)
        assert p.options[28] == IP("10.99.0.255").packed and p.options[15] == b"lab.example"


# --- REQUEST in every RFC 2131 state ---------------------------------------------------------------------

LEASED = IP("10.99.0.100")  # A's address after the DORA in the fixture


@dataclass(frozen=True)
class Case:
    name: str
    request: DhcpPacket
    kind: MessageType | None  # ACK, NAK or None (silence)
    dest: tuple[IPv4Address, int, bool] | None = None  # (ip, port, broadcast)
    yiaddr: IPv4Address = ZERO


def sel(mac: str, ip: IPv4Address, sid: IPv4Address = SERVER, **kw) -> DhcpPacket:
    """A REQUEST in SELECTING state: requested address and server id."""
    return client(MessageType.REQUEST, mac, **kw, options={50: ip.packed, 54: sid.packed})


def reboot(mac: str, ip: IPv4Address) -> DhcpPacket:
    """A REQUEST in INIT-REBOOT state: requested address, no server id, no ciaddr."""
    return client(MessageType.REQUEST, mac, options={50: ip.packed})


def renew(mac: str, ip: IPv4Address, flags: int = 0) -> DhcpPacket:
    """A REQUEST in RENEWING (or, with the broadcast bit, REBINDING) state: ciaddr only."""
    return client(MessageType.REQUEST, mac, ciaddr=ip, flags=flags)


ACK, NAK = MessageType.ACK, MessageType.NAK
TO_ALL = (BROADCAST, 68, True)
TO_RELAY = (RELAY, 67, False)
OFFERED_B, FREE = IP("10.99.0.101"), IP("10.99.0.120")

# fmt: off
REQUEST_CASES = [
    Case("selecting, our offer", sel(B, OFFERED_B), ACK, TO_ALL, OFFERED_B),
    Case("selecting, another server's offer", sel(B, OFFERED_B, IP("10.99.0.9")), None),
    Case("selecting, address held by another client", sel(B, LEASED), NAK, TO_ALL),
    Case("selecting, address off this network", sel(B, IP("192.168.1.5")), NAK, TO_ALL),
    Case("selecting, no requested address", client(MessageType.REQUEST, B, options={54: SERVER.packed}), NAK, TO_ALL),
    Case("init-reboot, this client's address", reboot(A, LEASED), ACK, TO_ALL, LEASED),
    Case("init-reboot, client we have no record of", reboot(B, LEASED), None),
    Case("init-reboot, not this client's address", reboot(A, IP("10.99.0.150")), NAK, TO_ALL),
    Case("init-reboot, wrong network", reboot(A, IP("172.16.0.5")), NAK, TO_ALL),
    Case("renewing (unicast)", renew(A, LEASED), ACK, (LEASED, 68, False), LEASED),
    Case("rebinding (broadcast bit)", renew(A, LEASED, 0x8000), ACK, (LEASED, 68, False), LEASED),
    Case("renewing another client's address", renew(B, LEASED), NAK, TO_ALL),
    Case("renewing an address on no network of ours", renew(A, IP("172.16.0.5")), NAK, TO_ALL),
    Case("renewing a forgotten but free address", renew(B, FREE), ACK, (FREE, 68, False), FREE),
    Case("request naming no address", client(MessageType.REQUEST, A), None),
    Case("relayed selecting", sel(B, IP("10.98.5.11"), giaddr=RELAY, flags=0x8000), ACK, TO_RELAY, IP("10.98.5.11")),
    Case("relayed selecting of an address off the relay's network", sel(B, OFFERED_B, giaddr=RELAY), NAK, TO_RELAY),
]
# fmt: on


@pytest.mark.parametrize("case", REQUEST_CASES, ids=[c.name for c in REQUEST_CASES])
def test_request(case: Case) -> None:
    book = MemoryLeaseBook()
    dora(book, A, 0.0)
    dora(book, "52:54:00:00:01:01", 0.0, giaddr=RELAY)  # holds 10.98.5.10
    book.offer(B, LAN, IP("10.99.0.101"), 50.0)  # B was offered .101
    leases_before = dict(book.leases)
    reply = respond(case.request, book, SETTINGS, 100.0)
    if case.kind is None:
        assert reply is None
        assert book.leases == leases_before
        return
    assert reply is not None
    p = wire(reply)
    assert p.message_type == case.kind and p.xid == case.request.xid and p.mac == case.request.mac
    assert (reply.dest_ip, reply.dest_port, reply.broadcast) == case.dest
    assert p.yiaddr == case.yiaddr and o.server_id(p) == SERVER
    if case.kind == MessageType.ACK:
        assert reply.durable and book.leases[p.mac][0] == case.yiaddr
        assert o.lease_time(p) == book.leases[p.mac][1] - 100.0
        assert p.ciaddr == case.request.ciaddr  # RFC 2131 table 3: ciaddr from the REQUEST
        assert p.flags == case.request.flags
    else:
        assert not reply.durable and book.leases == leases_before
        assert set(p.options) <= {53, 54, 56, 61, 82} and p.ciaddr == ZERO and p.siaddr == ZERO
        assert p.flags & 0x8000 or case.request.giaddr == ZERO  # a relay must broadcast a NAK


def test_ack_for_a_reservation_carries_its_hostname_and_the_subnet_lease_time() -> None:
    book = MemoryLeaseBook()
    book.reserve(A, IP("10.99.0.20"), "node07")
    ack = respond(
        client(MessageType.REQUEST, options={50: IP("10.99.0.20").packed, 55: bytes([1, 3, 12])}), book, SETTINGS, 5.0
    )
    assert ack is not None and ack.durable
    p = wire(ack)
    assert p.yiaddr == IP("10.99.0.20") and o.hostname(p) == "node07" and o.lease_time(p) == 3600


def test_junk_hostname_does_not_stop_the_client_being_served() -> None:
    book = MemoryLeaseBook()
    offer = respond(client(MessageType.DISCOVER, options={12: b"\xff\xfe"}), book, SETTINGS, 0.0)
    assert offer is not None
    request = client(
        MessageType.REQUEST, options={50: offer.packet.yiaddr.packed, 54: SERVER.packed, 12: b"\xff\xfe\x00"}
    )
    ack = respond(request, book, SETTINGS, 0.0)
    assert ack is not None and ack.packet.message_type == MessageType.ACK
    assert book.leases[A][2] is None
    named = respond(
        client(MessageType.REQUEST, ciaddr=offer.packet.yiaddr, options={12: b"node-a"}), book, SETTINGS, 1.0
    )
    assert named is not None and book.leases[A][2] == "node-a"


def test_client_identifier_and_relay_agent_information_are_echoed_82_last() -> None:
    relay_info = bytes.fromhex("0106000400010203 0206aabbccddeeff")
    cid = b"\xff\x00\x00\x00\x01\x00\x01"
    request = client(MessageType.DISCOVER, giaddr=RELAY, flags=0x8000, options={61: cid, 82: relay_info})
    reply = respond(request, MemoryLeaseBook(), SETTINGS, 0.0)
    assert reply is not None
    assert (reply.dest_ip, reply.dest_port, reply.broadcast) == (RELAY, 67, False)
    data = reply.to_bytes()
    on_wire = wire_options(data[240:])
    assert on_wire[0] == (53, bytes([MessageType.OFFER])) and on_wire[-1] == (82, relay_info)
    p = decode(data)
    assert p.options[61] == cid and p.giaddr == RELAY and p.broadcast
    assert p.options[1] == IP("255.255.255.0").packed and p.yiaddr in REMOTE.network  # subnet by giaddr


# --- RELEASE, DECLINE, INFORM ------------------------------------------------------------------------------


def test_release_frees_the_address_and_is_not_answered() -> None:
    book = MemoryLeaseBook()
    dora(book)
    assert (
        respond(client(MessageType.RELEASE, ciaddr=LEASED, options={54: IP("10.99.0.9").packed}), book, SETTINGS, 10.0)
        is None
    )
    assert ("release", A) not in book.calls  # addressed to another server
    assert (
        respond(client(MessageType.RELEASE, ciaddr=LEASED, options={54: SERVER.packed}), book, SETTINGS, 10.0) is None
    )
    assert ("release", A) in book.calls
    offer = respond(client(MessageType.DISCOVER, B, options={50: LEASED.packed}), book, SETTINGS, 11.0)
    assert offer is not None and offer.packet.yiaddr == LEASED


def test_decline_quarantines_the_address() -> None:
    book = MemoryLeaseBook()
    dora(book)
    decline = client(MessageType.DECLINE, options={50: LEASED.packed, 54: IP("10.99.0.9").packed})
    assert respond(decline, book, SETTINGS, 10.0) is None and ("decline", A) not in book.calls
    decline = client(MessageType.DECLINE, options={50: LEASED.packed, 54: SERVER.packed})
    assert respond(decline, book, SETTINGS, 10.0) is None and ("decline", A) in book.calls
    offer = respond(client(MessageType.DISCOVER), book, SETTINGS, 11.0)
    assert offer is not None and offer.packet.yiaddr != LEASED


def test_inform_gets_configuration_without_an_address_or_lease() -> None:
    book = MemoryLeaseBook()
    reply = respond(client(MessageType.INFORM, ciaddr=IP("10.99.0.57")), book, SETTINGS, 0.0)
    assert reply is not None and not reply.durable
    p = wire(reply)
    assert p.message_type == MessageType.ACK and p.yiaddr == ZERO and p.ciaddr == IP("10.99.0.57")
    assert 51 not in p.options and 58 not in p.options and {1, 3, 6, 54} <= set(p.options)
    assert (reply.dest_ip, reply.dest_port, reply.broadcast) == (IP("10.99.0.57"), 68, False)
    assert book.calls == []
    relayed = respond(client(MessageType.INFORM, ciaddr=IP("10.98.5.30"), giaddr=RELAY), book, SETTINGS, 0.0)
    assert relayed is not None and o.ip_addresses(wire(relayed), 3) == (REMOTE.router,)
    assert (relayed.dest_ip, relayed.dest_port) == (RELAY, 67)


@pytest.mark.parametrize(
    "request_packet",
    [
        DhcpPacket(op=2, chaddr=bytes(16), options={53: b"\x01"}),  # a BOOTREPLY
        client(None),  # plain BOOTP, no message type
        client(13),  # LEASEQUERY and friends
        client(MessageType.OFFER),
        DhcpPacket(hlen=0, options={53: b"\x01"}),  # nothing to key a lease on
    ],
    ids=["bootreply", "no-type", "type-13", "offer-from-client", "hlen-0"],
)
def test_messages_we_do_not_answer(request_packet: DhcpPacket) -> None:
    book = MemoryLeaseBook()
    assert respond(request_packet, book, SETTINGS, 0.0) is None and book.calls == []


def test_authoritative_server_ignores_the_pxe_boot_server_port() -> None:
    assert respond(client(MessageType.DISCOVER), MemoryLeaseBook(), SETTINGS, 0.0, arrived_port=4011) is None


def test_select_subnet() -> None:
    assert select_subnet(SETTINGS, RELAY, None) is REMOTE
    assert select_subnet(SETTINGS, ZERO, IP("10.98.5.2")) is REMOTE
    assert select_subnet(SETTINGS, ZERO, None) is LAN  # falls back to server_id
    assert select_subnet(SETTINGS, IP("172.16.0.1"), IP("10.99.0.1")) is None  # a relay we do not serve


def test_server_settings_refuse_an_unknown_mode() -> None:
    with pytest.raises(ValueError):
        ServerSettings(SERVER, "authorative", (), BootSettings())


# --- PXE, iPXE and UEFI HTTP boot --------------------------------------------------------------------------

HTTP_URL = "http://10.99.0.1:80/boot/files/ipxe.efi"
ARM64_HTTP_URL = "http://10.99.0.1:80/boot/files/grubaa64.efi"


def pxe(arch: int | None, vendor: bytes = b"PXEClient:Arch:00000:UNDI:002001") -> DhcpPacket:
    opts = {60: vendor} | ({93: arch.to_bytes(2, "big")} if arch is not None else {})
    return client(MessageType.DISCOVER, options=opts)


@pytest.mark.parametrize(
    ("request_packet", "file", "tftp", "vendor_echo"),
    [
        (decode(PXE_ROM_DISCOVER), "undionly.kpxe", True, None),
        (pxe(0), "undionly.kpxe", True, None),
        (pxe(6, b"PXEClient:Arch:00006:UNDI:003016"), "ipxe.efi", True, None),
        (pxe(7, b"PXEClient:Arch:00007:UNDI:003016"), "ipxe.efi", True, None),
        (pxe(9, b"PXEClient:Arch:00009:UNDI:003016"), "ipxe.efi", True, None),
        (pxe(None, b"PXEClient:Arch:00007:UNDI:003016"), "ipxe.efi", True, None),  # arch from option 60 only
        (pxe(16, b"HTTPClient:Arch:00016:UNDI:003001"), HTTP_URL, False, b"HTTPClient"),
        (pxe(None, b"HTTPClient"), HTTP_URL, False, b"HTTPClient"),
        # arm64 UEFI (LAB.md: AAVMF sends option 93 = 11 over PXE, 19 over HTTP): Debian's network GRUB
        (pxe(11, b"PXEClient:Arch:00011:UNDI:003000"), "grubaa64.efi", True, None),
        (pxe(None, b"PXEClient:Arch:00011:UNDI:003000"), "grubaa64.efi", True, None),
        (pxe(19, b"HTTPClient:Arch:00019:UNDI:003000"), ARM64_HTTP_URL, False, b"HTTPClient"),
        (pxe(None, b"HTTPClient:Arch:00019:UNDI:003000"), ARM64_HTTP_URL, False, b"HTTPClient"),
        (decode(IPXE_DISCOVER), "http://10.99.0.1:80/boot/${mac}.ipxe", False, None),
    ],
    ids=["pxe-rom", "bios", "efi-ia32", "efi-x64", "efi-bc", "arch-in-vendor-class", "http-boot", "httpclient",
         "arm64", "arm64-arch-in-vendor-class", "arm64-http-boot", "arm64-httpclient", "ipxe"],
)
def test_boot_file_by_client_kind(request_packet: DhcpPacket, file: str, tftp: bool, vendor_echo: bytes | None) -> None:
    reply = respond(request_packet, MemoryLeaseBook(), SETTINGS, 0.0)
    assert reply is not None
    p = wire(reply)
    assert p.yiaddr in LAN.network and o.lease_time(p) == 3600  # a boot client still gets its lease
    assert o.text(p, 67) == file and p.file.rstrip(b"\x00") == file.encode()
    assert p.siaddr == SERVER
    assert (o.text(p, 66) == "10.99.0.1") if tftp else (66 not in p.options)
    assert p.options.get(60) == vendor_echo
    if o.is_ipxe(request_packet):
        assert o.suboptions(p.options[175]) == {176: b"\x01"}
    else:
        assert 175 not in p.options


def test_uefi_http_boot_ack_carries_the_url_and_httpclient_too() -> None:
    # OVMF REQUESTs the offered address with the same option 60; the ACK must name the URL again.
    book = MemoryLeaseBook()
    opts = {60: b"HTTPClient:Arch:00016:UNDI:003001", 93: b"\x00\x10"}
    offer = wire(respond(client(MessageType.DISCOVER, options=opts), book, SETTINGS, 0.0))
    request = client(MessageType.REQUEST, options=opts | {50: offer.yiaddr.packed, 54: SERVER.packed})
    reply = respond(request, book, SETTINGS, 0.0)
    assert reply is not None and reply.durable
    ack = wire(reply)
    assert ack.message_type == MessageType.ACK and ack.yiaddr == offer.yiaddr
    assert ack.options[60] == b"HTTPClient" and o.text(ack, 67) == HTTP_URL and 66 not in ack.options


def test_boot_urls_use_the_configured_port() -> None:
    settings = ServerSettings(SERVER, "authoritative", (LAN,), BootSettings(http_port=8080))
    assert boot_choice(decode(IPXE_DISCOVER), settings).file == "http://10.99.0.1:8080/boot/${mac}.ipxe"
    assert boot_choice(pxe(16, b"HTTPClient"), settings).file == "http://10.99.0.1:8080/boot/files/ipxe.efi"


def test_clients_that_do_not_network_boot_get_no_boot_options() -> None:
    for request in (decode(DHCLIENT_DISCOVER), pxe(10, b"PXEClient:Arch:00010:UNDI:003016")):  # 10: ARM32 UEFI
        reply = respond(request, MemoryLeaseBook(), SETTINGS, 0.0)
        assert reply is not None
        p = wire(reply)
        assert p.yiaddr != ZERO and p.siaddr == ZERO and not {60, 66, 67, 175} & set(p.options)
        assert p.file == bytes(128)


# --- ProxyDHCP ---------------------------------------------------------------------------------------------


def test_proxy_offer_carries_boot_information_only() -> None:
    book = MemoryLeaseBook()
    reply = respond(decode(PXE_ROM_DISCOVER), book, PROXY, 0.0)
    assert reply is not None and book.calls == []
    p = wire(reply)
    assert p.message_type == MessageType.OFFER and p.yiaddr == ZERO and p.siaddr == SERVER
    assert not {1, 3, 6, 51, 58, 59} & set(p.options)
    assert p.options[60] == b"PXEClient" and o.suboptions(p.options[43]) == {6: b"\x08"}
    assert p.options[97] == decode(PXE_ROM_DISCOVER).options[97]
    assert o.text(p, 67) == "undionly.kpxe" and p.file.rstrip(b"\x00") == b"undionly.kpxe"
    assert (reply.dest_ip, reply.dest_port, reply.broadcast, reply.durable) == (BROADCAST, 68, True, False)


def test_arm64_boot_file_and_url_are_the_configured_ones() -> None:
    boot = BootSettings(http_port=8080, arm64_file="shimaa64.efi",
                        arm64_http_boot_url="http://{server}:{port}/boot/files/shimaa64.efi")
    settings = ServerSettings(SERVER, "authoritative", (LAN,), boot)
    assert boot_choice(pxe(11, b"PXEClient:Arch:00011:UNDI:003000"), settings).file == "shimaa64.efi"
    assert boot_choice(pxe(19, b"HTTPClient"), settings).file == "http://10.99.0.1:8080/boot/files/shimaa64.efi"
    # x64 keeps its own files: one arch never gets the other's loader
    assert boot_choice(pxe(16, b"HTTPClient"), settings).file == "http://10.99.0.1:8080/boot/files/ipxe.efi"
    assert boot_choice(pxe(7, b"PXEClient:Arch:00007:UNDI:003016"), settings).file == "ipxe.efi"


def test_proxy_answers_arm64_pxe_with_grub() -> None:
    reply = respond(pxe(11, b"PXEClient:Arch:00011:UNDI:003000"), MemoryLeaseBook(), PROXY, 0.0)
    assert reply is not None
    p = wire(reply)
    assert p.message_type == MessageType.OFFER and p.yiaddr == ZERO and p.siaddr == SERVER
    assert o.text(p, 67) == "grubaa64.efi" and p.options[60] == b"PXEClient"


def test_proxy_answers_ipxe_with_its_script() -> None:
    reply = respond(decode(IPXE_DISCOVER), MemoryLeaseBook(), PROXY, 0.0)
    assert reply is not None
    p = wire(reply)
    assert o.text(p, 67) == "http://10.99.0.1:80/boot/${mac}.ipxe" and 175 in p.options and p.yiaddr == ZERO


def test_proxy_boot_server_request_on_4011_is_acked_to_the_client() -> None:
    book = MemoryLeaseBook()
    opts = {60: b"PXEClient:Arch:00007:UNDI:003016", 93: b"\x00\x07", 54: SERVER.packed}
    request = client(MessageType.REQUEST, ciaddr=IP("192.168.7.40"), options=opts)
    reply = respond(request, book, PROXY, 0.0, arrived_port=4011)
    assert reply is not None and book.calls == []
    p = wire(reply)
    assert p.message_type == MessageType.ACK and p.yiaddr == ZERO and o.text(p, 67) == "ipxe.efi"
    assert (reply.dest_ip, reply.dest_port, reply.broadcast, reply.durable) == (IP("192.168.7.40"), 68, False, False)
    unconfigured = respond(client(MessageType.REQUEST, options=opts), book, PROXY, 0.0, arrived_port=4011)
    assert unconfigured is not None and (unconfigured.dest_ip, unconfigured.broadcast) == (BROADCAST, True)


def test_proxy_offers_uefi_http_boot_its_url_with_httpclient_echoed() -> None:
    # edk2 takes an OFFER with option 60 HTTPClient, a URL and no yiaddr as a proxy offer beside the LAN
    # server's address offer; PXE's option 43 does not belong in it.
    book = MemoryLeaseBook()
    reply = respond(pxe(16, b"HTTPClient:Arch:00016:UNDI:003001"), book, PROXY, 0.0)
    assert reply is not None and book.calls == []
    p = wire(reply)
    assert p.message_type == MessageType.OFFER and p.yiaddr == ZERO and p.siaddr == SERVER
    assert p.options[60] == b"HTTPClient" and 43 not in p.options and 66 not in p.options
    assert o.text(p, 67) == HTTP_URL and p.file.rstrip(b"\x00") == HTTP_URL.encode()
    assert not {1, 3, 6, 51} & set(p.options)
    assert (reply.dest_ip, reply.dest_port, reply.broadcast) == (BROADCAST, 68, True)
    assert respond(pxe(16, b"HTTPClient:Arch:00016:UNDI:003001"), book, PROXY, 0.0, offer_boot=False) is None


@pytest.mark.parametrize(
    ("request_packet", "port"),
    [
        (decode(DHCLIENT_DISCOVER), 67),  # not a PXE client
        (client(MessageType.REQUEST, options={60: b"HTTPClient", 93: b"\x00\x10"}), 4011),  # HTTP boot: no 4011
        (client(MessageType.REQUEST, options={60: b"PXEClient", 50: IP("10.0.0.5").packed}), 67),  # the DHCP server's
        (pxe(10, b"PXEClient:Arch:00010:UNDI:003016"), 67),  # no boot file for this arch (ARM32 UEFI)
        (client(MessageType.INFORM, ciaddr=IP("10.0.0.5"), options={60: b"PXEClient"}), 67),
    ],
    ids=["dhclient", "httpclient-on-4011", "request-on-67", "unknown-arch", "inform"],
)
def test_proxy_stays_silent(request_packet: DhcpPacket, port: int) -> None:
    book = MemoryLeaseBook()
    assert respond(request_packet, book, PROXY, 0.0, arrived_port=port) is None and book.calls == []


# --- message size: overload and splitting in real replies ----------------------------------------------------

MANY_DNS = tuple(IP(f"10.99.1.{n}") for n in range(1, 71))  # 280 bytes: more than one option instance
BIG = Subnet(
    IPv4Network("10.99.0.0/24"),
    IP("10.99.0.100"),
    IP("10.99.0.199"),
    IP("10.99.0.254"),
    MANY_DNS,
    "a-rather-long-domain-name." * 6 + "example",
    3600,
)


@pytest.mark.parametrize("mms", [None, 576, 1500])
def test_reply_respects_the_client_maximum_message_size(mms: int | None) -> None:
    settings = ServerSettings(SERVER, "authoritative", (BIG,), BootSettings())
    opts = {55: bytes([1, 3, 6, 15])} | ({57: mms.to_bytes(2, "big")} if mms else {})
    reply = respond(client(MessageType.DISCOVER, options=opts), MemoryLeaseBook(), settings, 0.0)
    assert reply is not None
    data = reply.to_bytes()
    assert len(data) <= (mms or 576) - 28
    main = wire_options(data[240:])
    assert [c for c, _ in main].count(52) == (0 if mms == 1500 else 1)
    assert o.ip_addresses(decode(data), 6) == MANY_DNS and decode(data).options[15] == BIG.domain.encode()
    if mms == 1500:
        assert [c for c, _ in main].count(6) == 2  # RFC 3396 split of the 280-byte list


def test_client_maximum_message_size_is_clamped() -> None:
    for mms, expected in ((100, 576), (9000, 1500), (1472, 1472)):
        reply = respond(
            client(MessageType.DISCOVER, options={57: mms.to_bytes(2, "big")}), MemoryLeaseBook(), SETTINGS, 0.0
        )
        assert reply is not None and reply.max_size == expected


# --- a whole exchange with dhcppython as the client -----------------------------------------------------------


def oracle_value(packet: OraclePacket, code: int) -> object:
    return next(iter(packet.options.by_code(code).value.values()))


def test_dora_with_dhcppython_as_the_client() -> None:
    book = MemoryLeaseBook()
    mac = "52:54:00:AB:CD:EF"
    prl = oracle_options.options.short_value_to_object(55, [1, 3, 6, 15, 51, 54])
    discover = OraclePacket.Discover(mac, tx_id=0xCAFE, option_list=oracle_options.OptionList([prl]))
    offer_reply = respond(decode(discover.asbytes), book, SETTINGS, 0.0)
    assert offer_reply is not None
    offer = OraclePacket.from_bytes(offer_reply.to_bytes())
    assert offer.msg_type == "DHCPOFFER" and offer.xid == 0xCAFE and offer.chaddr == mac
    assert oracle_value(offer, 54) == "10.99.0.1" and oracle_value(offer, 51) == 3600

    opts = oracle_options.OptionList(
        [
            oracle_options.options.short_value_to_object(50, str(offer.yiaddr)),
            oracle_options.options.short_value_to_object(54, "10.99.0.1"),
        ]
    )
    request = OraclePacket.Request(mac, 0, 0xCAFE, option_list=opts)
    ack_reply = respond(decode(request.asbytes), book, SETTINGS, 1.0)
    assert ack_reply is not None and ack_reply.durable
    ack = OraclePacket.from_bytes(ack_reply.to_bytes())
    assert ack.msg_type == "DHCPACK" and ack.yiaddr == offer.yiaddr
    assert oracle_value(ack, 1) == "255.255.255.0" and oracle_value(ack, 15) == "lab.example"
    assert oracle_value(ack, 6) == ["10.99.0.1", "10.99.0.2"]


def _oracle_boot_discover(mac: str, arch: int, vendor: str) -> OraclePacket:
    """A firmware's DISCOVER as dhcppython builds it: option 60 by name, option 93 as raw bytes."""
    opts = oracle_options.OptionList([
        oracle_options.options.short_value_to_object(60, vendor),
        oracle_options.options.bytes_to_object(bytes([93, 2]) + arch.to_bytes(2, "big")),
    ])  # fmt: skip
    return OraclePacket.Discover(mac, tx_id=0xA64, option_list=opts)


@pytest.mark.parametrize(
    ("arch", "vendor", "file", "echo"),
    [
        (11, "PXEClient:Arch:00011:UNDI:003000", "grubaa64.efi", None),
        (19, "HTTPClient:Arch:00019:UNDI:003000", ARM64_HTTP_URL, "HTTPClient"),
    ],
    ids=["arm64-pxe", "arm64-http"],
)
def test_arm64_offer_read_by_dhcppython(arch: int, vendor: str, file: str, echo: str | None) -> None:
    mac = "52:54:00:A6:40:01"  # dhcppython spells MACs upper case
    offer_reply = respond(decode(_oracle_boot_discover(mac, arch, vendor).asbytes), MemoryLeaseBook(), SETTINGS, 0.0)
    assert offer_reply is not None
    offer = OraclePacket.from_bytes(offer_reply.to_bytes())
    assert offer.msg_type == "DHCPOFFER" and offer.xid == 0xA64 and offer.chaddr == mac
    assert oracle_value(offer, 67) == file and offer.file.rstrip(b"\x00") == file.encode()
    assert str(offer.siaddr) == "10.99.0.1"
    assert (oracle_value(offer, 66) == "10.99.0.1") if echo is None else (offer.options.by_code(66) is None)
    assert (oracle_value(offer, 60) == echo) if echo else (offer.options.by_code(60) is None)
