"""Pure DHCP server decisions (RFC 2131 section 4.3, PXE 2.1, RFC 4578, UEFI HTTP boot).

respond() turns one decoded request into at most one reply plus where to send it. Address bookkeeping
is delegated to a LeaseBook (implemented in state/); everything else is decided here from the request,
the settings and the time passed in.

Text the server does not need is read leniently: a junk (non-UTF-8) hostname is passed to the book as
None instead of dropping the client. Everything that changes the answer (server id, requested address,
client architecture, message type) is read strictly: malformed -> DhcpError, the packet is dropped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network
from typing import Protocol

from protocols.dhcp import options as o
from protocols.dhcp.codec import BOOTREPLY, BOOTREQUEST, DhcpError, DhcpPacket, encode
from protocols.dhcp.options import MessageType, OptionCode

SERVER_PORT = 67
CLIENT_PORT = 68
PXE_BOOT_SERVER_PORT = 4011
BROADCAST = IPv4Address("255.255.255.255")
ZERO = IPv4Address(0)

MIN_MESSAGE_SIZE = 576
# Cap on a client's option 57: larger replies would be IP-fragmented on Ethernet, which PXE ROMs mishandle.
MAX_REPLY_SIZE = 1500

FLAG_BROADCAST = 0x8000

UEFI_ARCHES = frozenset({o.ARCH_EFI_IA32, o.ARCH_EFI_X64, o.ARCH_EFI_BC})
ARM64_ARCHES = frozenset({o.ARCH_EFI_ARM64})
HTTP_ARCHES = frozenset({o.ARCH_EFI_X64_HTTP, o.ARCH_EFI_ARM64_HTTP})
ARM64_HTTP_ARCHES = frozenset({o.ARCH_EFI_ARM64_HTTP})

# Sent whether requested or not (when they apply); everything else only if in the client's option 55.
ALWAYS_SENT = frozenset({
    OptionCode.MESSAGE_TYPE, OptionCode.SERVER_ID, OptionCode.LEASE_TIME, OptionCode.SUBNET_MASK,
    OptionCode.ROUTER, OptionCode.DNS_SERVERS, OptionCode.CLIENT_ID, OptionCode.RELAY_AGENT_INFO,
})  # fmt: skip
# Sent to a client without option 55 in addition to ALWAYS_SENT.
SENT_WITHOUT_REQUEST_LIST = frozenset({OptionCode.DOMAIN_NAME})
_MESSAGE_TYPE_VALUES = {kind: bytes([kind]) for kind in o.MESSAGE_TYPE_NAMES}  # option 53 values, built once


@dataclass(frozen=True, slots=True)
class Subnet:
    network: IPv4Network
    pool_first: IPv4Address
    pool_last: IPv4Address
    router: IPv4Address | None
    dns: tuple[IPv4Address, ...]
    domain: str | None
    lease_time: int  # seconds
    # Derived once (not constructor arguments, not compared): the network as integers for the per-packet
    # "is this address on the subnet" tests, and the option values every reply on this subnet carries.
    net_int: int = field(init=False, repr=False, compare=False)
    mask_int: int = field(init=False, repr=False, compare=False)
    mask_packed: bytes = field(init=False, repr=False, compare=False)
    broadcast_packed: bytes = field(init=False, repr=False, compare=False)
    router_packed: bytes | None = field(init=False, repr=False, compare=False)
    dns_packed: bytes = field(init=False, repr=False, compare=False)
    domain_packed: bytes | None = field(init=False, repr=False, compare=False)
    text: str = field(init=False, repr=False, compare=False)  # str(network), e.g. for sightings

    def __post_init__(self) -> None:
        derived = {
            "text": str(self.network),
            "net_int": int(self.network.network_address),
            "mask_int": int(self.network.netmask),
            "mask_packed": o.pack_ip(self.network.netmask),
            "broadcast_packed": o.pack_ip(self.network.broadcast_address),
            "router_packed": o.pack_ip(self.router) if self.router is not None else None,
            "dns_packed": o.pack_ip_list(self.dns),
            "domain_packed": o.pack_text(self.domain) if self.domain else None,
        }
        for name, value in derived.items():
            object.__setattr__(self, name, value)

    def contains(self, address: IPv4Address) -> bool:
        """address in self.network, without ipaddress's generic (and per-packet costly) comparison."""
        return int(address) & self.mask_int == self.net_int


@dataclass(frozen=True, slots=True)
class BootSettings:
    http_port: int = 80
    bios_file: str = "undionly.kpxe"  # arch 0
    uefi_file: str = "ipxe.efi"  # arch 6/7/9 (x86/x64 UEFI)
    ipxe_script: str = "http://{server}:{port}/boot/${{mac}}.ipxe"  # given to clients whose user class is iPXE
    http_boot_url: str = "http://{server}:{port}/boot/files/ipxe.efi"  # arch 16 / vendor class HTTPClient
    # arm64 UEFI: there is no arm64 iPXE, so the firmware starts Debian's network GRUB (or shim before it),
    # which reads grub/grub.cfg-01-<mac> as x64 GRUB machines do.
    arm64_file: str = "grubaa64.efi"  # arch 11
    arm64_http_boot_url: str = "http://{server}:{port}/boot/files/grubaa64.efi"  # arch 19 (HTTPClient:Arch:00019)


@dataclass(frozen=True, slots=True)
class ServerSettings:
    server_id: IPv4Address  # our address on the provisioning interface; also next-server (siaddr)
    mode: str  # "authoritative" | "proxy"
    subnets: tuple[Subnet, ...]
    boot: BootSettings
    offer_hold: float = 30.0  # seconds an OFFERed address is held for the client (used by the book)
    # The only relays whose giaddr is believed (empty: none; see protocols/dhcp/relay.py).
    trusted_relays: tuple[IPv4Network, ...] = ()
    server_id_packed: bytes = field(init=False, repr=False, compare=False)  # option 54 of every reply

    def __post_init__(self) -> None:
        if self.mode not in ("authoritative", "proxy"):
            raise ValueError(f"DHCP mode {self.mode!r} is neither 'authoritative' nor 'proxy'")
        object.__setattr__(self, "server_id_packed", o.pack_ip(self.server_id))


class Bound(Protocol):
    """What the reply logic reads of a MAC's address: read-only, so state's Lease (expires: float) and
    Reservation (expires: None) both are one without converting."""

    @property
    def mac(self) -> str: ...

    @property
    def ip(self) -> IPv4Address: ...

    @property
    def expires(self) -> float | None: ...  # None = reservation (static)

    @property
    def hostname(self) -> str | None: ...


@dataclass(frozen=True, slots=True)
class Binding:
    """A plain Bound, for books that keep no richer record (the test book)."""

    mac: str
    ip: IPv4Address
    expires: float | None  # None = reservation (static)
    hostname: str | None = None


class LeaseBook(Protocol):
    """Address bookkeeping; implemented in state/ (structurally: protocols/ imports nothing of ours)."""

    def current(self, mac: str) -> Bound | None: ...  # the MAC's reservation, else its lease (may have expired)

    def offer(self, mac: str, subnet: Subnet, requested: IPv4Address | None, now: float) -> IPv4Address | None: ...

    def commit(
        self, mac: str, ip: IPv4Address, subnet: Subnet, now: float, client_id: bytes | None, hostname: str | None
    ) -> Bound | None: ...  # None -> NAK

    def release(self, mac: str, ip: IPv4Address, now: float) -> None: ...

    def decline(self, mac: str, ip: IPv4Address, now: float) -> None: ...


# Not frozen (but hashable, and never changed after construction): a frozen dataclass's __init__ sets each
# field through object.__setattr__, 5x the cost of a plain one, and one of these is built for every packet.
@dataclass(slots=True, unsafe_hash=True)
class Reply:
    packet: DhcpPacket
    dest_ip: IPv4Address
    dest_port: int
    broadcast: bool  # send to 255.255.255.255 out of the provisioning interface
    durable: bool  # an ACK that binds a lease: the server must make the lease durable before sending
    max_size: int = MIN_MESSAGE_SIZE  # from the client's option 57, clamped to [576, 1500]

    def to_bytes(self) -> bytes:
        return encode(self.packet, self.max_size)


@dataclass(frozen=True, slots=True)
class BootChoice:
    """What a network-booting client is told to load."""

    file: str  # option 67 (and the legacy file field when it fits): a TFTP file name or a URL
    vendor_class: bytes | None  # option 60 to echo (b"HTTPClient" for UEFI HTTP boot)
    ipxe: bool  # the client is iPXE: add option 175 with sub-option 176 = 1
    tftp: bool  # fetched over TFTP from siaddr: add option 66


def select_subnet(settings: ServerSettings, giaddr: IPv4Address, local_address: IPv4Address | None) -> Subnet | None:
    """The subnet a request comes from: the relay's address, else the receiving interface's address."""
    anchor = giaddr if giaddr != ZERO else (local_address or settings.server_id)
    return _subnet_containing(settings, anchor)


def _subnet_containing(settings: ServerSettings, address: IPv4Address) -> Subnet | None:
    n = int(address)
    for subnet in settings.subnets:
        if n & subnet.mask_int == subnet.net_int:
            return subnet
    return None


def boot_choice(request: DhcpPacket, settings: ServerSettings) -> BootChoice | None:
    """Boot file for a PXE ROM, iPXE or UEFI HTTP client; None for anything else (or an unknown arch)."""
    opts = request.options
    if OptionCode.VENDOR_CLASS not in opts and OptionCode.USER_CLASS not in opts:
        return None  # the usual client (an installed OS): neither a firmware nor iPXE
    vendor = opts.get(OptionCode.VENDOR_CLASS, b"")
    pxe = vendor.startswith(b"PXEClient")
    http = vendor.startswith(b"HTTPClient")
    ipxe = o.is_ipxe(request)
    if not (pxe or http or ipxe):
        return None
    boot = settings.boot
    server = str(settings.server_id)
    if ipxe:
        return BootChoice(boot.ipxe_script.format(server=server, port=boot.http_port), None, True, False)
    arch = _arch(request, vendor)
    if http or arch in HTTP_ARCHES:
        template = boot.arm64_http_boot_url if arch in ARM64_HTTP_ARCHES else boot.http_boot_url
        return BootChoice(template.format(server=server, port=boot.http_port), b"HTTPClient", False, False)
    if arch == o.ARCH_BIOS:
        return BootChoice(boot.bios_file, None, False, True)
    if arch in UEFI_ARCHES:
        return BootChoice(boot.uefi_file, None, False, True)
    if arch in ARM64_ARCHES:
        return BootChoice(boot.arm64_file, None, False, True)
    return None


def _arch(request: DhcpPacket, vendor: bytes) -> int:
    arches = o.client_arch(request)
    if arches:
        return arches[0]
    # Without option 93, PXE ROMs still name the arch in "PXEClient:Arch:00007:UNDI:003016".
    parts = vendor.split(b":")
    if len(parts) >= 3 and parts[1] == b"Arch" and parts[2].isdigit():
        return int(parts[2])
    return o.ARCH_BIOS


def respond(
    request: DhcpPacket,
    book: LeaseBook,
    settings: ServerSettings,
    now: float,
    *,
    local_address: IPv4Address | None = None,
    arrived_port: int = 67,
    offer_boot: bool = True,
    source: IPv4Address | None = None,
) -> Reply | None:
    """The reply to one client message, or None when RFC 2131 (or PXE) says to stay silent.

    offer_boot=False leaves every boot option out (discovery policy "ignore" for a machine that is no
    host): the client gets an address, never a boot; a ProxyDHCP server, which only gives boots, stays silent.

    local_address is our address on the interface the request arrived on (picks the subnet of an
    unrelayed request; defaults to server_id). arrived_port 4011 marks a PXE boot server request.
    source is the request's IP source address (None: not known, e.g. a direct call).
    Raises DhcpError when an option the decision depends on is malformed.
    """
    if request.op != BOOTREQUEST or request.hlen == 0:
        return None  # replies are not for us; without a hardware address there is nothing to key a lease on
    mtype = request.message_type
    if settings.mode == "proxy":
        return _respond_proxy(request, mtype, settings, arrived_port) if offer_boot else None
    if arrived_port == PXE_BOOT_SERVER_PORT:
        return None
    match mtype:
        case MessageType.DISCOVER:
            return _discover(request, book, settings, now, local_address, offer_boot)
        case MessageType.REQUEST:
            return _request(request, book, settings, now, local_address, offer_boot)
        case MessageType.DECLINE:
            if _for_us(request, settings) and (ip := o.requested_ip(request)) is not None:
                book.decline(request.mac, ip, now)
            return None
        case MessageType.RELEASE:
            if _for_us(request, settings) and request.ciaddr != ZERO and _from_ciaddr(request, source):
                book.release(request.mac, request.ciaddr, now)  # the book ends it only if the MAC holds ciaddr
            return None
        case MessageType.INFORM:
            return _inform(request, settings, local_address)
    return None


def _from_ciaddr(request: DhcpPacket, source: IPv4Address | None) -> bool:
    """A client sends its RELEASE from the address it gives up (RFC 2131 4.4.6: unicast, ciaddr set): one
    sent from another address is someone ending another machine's lease. A relayed one comes from the relay."""
    return request.giaddr != ZERO or source is None or source == request.ciaddr


def _for_us(request: DhcpPacket, settings: ServerSettings) -> bool:
    sid = o.server_id(request)
    return sid is None or sid == settings.server_id


# --- authoritative --------------------------------------------------------------------------------


def _discover(
    request: DhcpPacket, book: LeaseBook, settings: ServerSettings, now: float, local: IPv4Address | None,
    offer_boot: bool = True,
) -> Reply | None:
    subnet = select_subnet(settings, request.giaddr, local)
    if subnet is None:
        return None
    requested = o.requested_ip(request)
    if requested is not None and not subnet.contains(requested):
        requested = None
    ip = book.offer(request.mac, subnet, requested, now)
    if ip is None:
        return None  # pool exhausted: stay silent, another server may answer
    reply = _base(request, settings, MessageType.OFFER, yiaddr=ip)
    _add_lease_options(reply, request, subnet, subnet.lease_time, hostname=None)
    if offer_boot:
        _add_boot(reply, request, settings, proxy=False)
    return _route(request, reply, durable=False)


def _request(
    request: DhcpPacket, book: LeaseBook, settings: ServerSettings, now: float, local: IPv4Address | None,
    offer_boot: bool = True,
) -> Reply | None:
    sid = request.options.get(OptionCode.SERVER_ID)  # raw: compared as bytes, parsed only if not ours
    requested = o.requested_ip(request)
    mac = request.mac
    if sid is not None:
        # SELECTING: the client answers one OFFER; a different server id means it chose someone else
        # (our held offer simply expires in the book).
        if sid != settings.server_id_packed:
            o.server_id(request)  # a malformed one raises DhcpError, as any strictly read option does
            return None
        ip = requested or (request.ciaddr if request.ciaddr != ZERO else None)
        subnet = select_subnet(settings, request.giaddr, local)
        if ip is None or subnet is None or not subnet.contains(ip):
            return _nak(request, settings, "requested address is not on this network")
    elif requested is not None:
        # INIT-REBOOT: NAK a wrong network or someone else's address; silent if the client is unknown.
        subnet = select_subnet(settings, request.giaddr, local)
        if subnet is None:
            return None
        if not subnet.contains(requested):
            return _nak(request, settings, "requested address is not on this network")
        current = book.current(mac)
        if current is None:
            return None
        if current.ip != requested:
            return _nak(request, settings, "requested address is not this client's")
        ip = requested
    elif request.ciaddr != ZERO:
        # RENEWING (unicast) / REBINDING (broadcast): trust ciaddr (RFC 2131 4.3.2), but only on one of
        # our networks and never another client's address.
        ip = request.ciaddr
        if request.giaddr != ZERO:
            subnet = select_subnet(settings, request.giaddr, local)
            if subnet is not None and not subnet.contains(ip):
                subnet = None
        else:
            subnet = _subnet_containing(settings, ip)
        if subnet is None:
            return _nak(request, settings, "address is not on this network")
        current = book.current(mac)
        if current is not None and current.ip != ip:
            return _nak(request, settings, "address is not this client's")
    else:
        return None  # a REQUEST naming no address at all is not answerable

    binding = book.commit(mac, ip, subnet, now, request.options.get(OptionCode.CLIENT_ID), _lenient_hostname(request))
    if binding is None:
        return _nak(request, settings, "address is not available")
    lease = subnet.lease_time if binding.expires is None else max(1, int(binding.expires - now))
    reply = _base(request, settings, MessageType.ACK, yiaddr=binding.ip, ciaddr=request.ciaddr)
    _add_lease_options(reply, request, subnet, lease, hostname=binding.hostname)
    if offer_boot:
        _add_boot(reply, request, settings, proxy=False)
    return _route(request, reply, durable=True)


def _inform(request: DhcpPacket, settings: ServerSettings, local: IPv4Address | None) -> Reply | None:
    if not _for_us(request, settings):
        return None
    subnet = _subnet_containing(settings, request.ciaddr) if request.ciaddr != ZERO else None
    subnet = subnet or select_subnet(settings, request.giaddr, local)
    if subnet is None:
        return None
    # RFC 2131 4.3.5: configuration only, no address and no lease time.
    reply = _base(request, settings, MessageType.ACK, ciaddr=request.ciaddr)
    _add_lease_options(reply, request, subnet, None, hostname=None)
    return _route(request, reply, durable=False)


def _nak(request: DhcpPacket, settings: ServerSettings, why: str) -> Reply:
    reply = _base(request, settings, MessageType.NAK)
    reply.options[OptionCode.MESSAGE] = o.pack_text(why)
    _add_echoes(reply, request)
    if request.giaddr != ZERO:
        reply.flags |= FLAG_BROADCAST  # RFC 2131 4.3.2: the relay must broadcast a NAK
    return _route(request, reply, durable=False)


# --- ProxyDHCP ------------------------------------------------------------------------------------


def _respond_proxy(request: DhcpPacket, mtype: int | None, settings: ServerSettings, arrived_port: int) -> Reply | None:
    # ProxyDHCP (PXE 2.1): boot information only, to PXE and UEFI HTTP boot clients only, never an address,
    # no book calls. A UEFI HTTP client takes the URL from our OFFER beside the LAN server's address offer
    # (edk2: a "proxy offer" is one with option 60 HTTPClient and no yiaddr); it never asks on port 4011.
    vendor = request.options.get(OptionCode.VENDOR_CLASS, b"")
    pxe = vendor.startswith(b"PXEClient")
    if not (pxe or vendor.startswith(b"HTTPClient")):
        return None
    if mtype == MessageType.DISCOVER and arrived_port != PXE_BOOT_SERVER_PORT:
        kind = MessageType.OFFER
    elif mtype == MessageType.REQUEST and arrived_port == PXE_BOOT_SERVER_PORT and pxe:
        kind = MessageType.ACK
    else:
        return None
    reply = _base(request, settings, kind, ciaddr=request.ciaddr if kind == MessageType.ACK else ZERO)
    if not _add_boot(reply, request, settings, proxy=True):
        return None
    _add_echoes(reply, request)
    if kind == MessageType.ACK:
        # The boot server request (port 4011) comes from a configured client: answer its ciaddr on port
        # 68, where PXE ROMs and iPXE listen. Without ciaddr, fall back to a broadcast.
        if request.ciaddr != ZERO:
            return Reply(reply, request.ciaddr, CLIENT_PORT, False, False, _max_size(request))
        return Reply(reply, BROADCAST, CLIENT_PORT, True, False, _max_size(request))
    return _route(request, reply, durable=False)


# --- building blocks ------------------------------------------------------------------------------


def _base(
    request: DhcpPacket, settings: ServerSettings, kind: int, *, yiaddr: IPv4Address = ZERO,
    ciaddr: IPv4Address = ZERO,
) -> DhcpPacket:  # fmt: skip
    return DhcpPacket(
        op=BOOTREPLY, htype=request.htype, hlen=request.hlen, hops=0, xid=request.xid, secs=0,
        flags=request.flags, ciaddr=ciaddr, yiaddr=yiaddr, giaddr=request.giaddr, chaddr=request.chaddr,
        options={OptionCode.MESSAGE_TYPE: _MESSAGE_TYPE_VALUES[kind], OptionCode.SERVER_ID: settings.server_id_packed},
    )  # fmt: skip


def _wanted(request: DhcpPacket) -> frozenset[int] | bytes:
    """The optional codes this client gets; `code in` the result, for codes outside ALWAYS_SENT.

    The raw option 55 bytes serve as the set themselves (a bytes object answers `int in` directly).
    """
    prl = request.options.get(OptionCode.PARAMETER_REQUEST_LIST)
    return SENT_WITHOUT_REQUEST_LIST if prl is None else prl


def _add_lease_options(
    reply: DhcpPacket, request: DhcpPacket, subnet: Subnet, lease: int | None, hostname: str | None
) -> None:
    wanted = _wanted(request)
    opts = reply.options
    if lease is not None:
        opts[OptionCode.LEASE_TIME] = o.pack_u32(lease)
        if OptionCode.RENEWAL_TIME in wanted:
            opts[OptionCode.RENEWAL_TIME] = o.pack_u32(lease // 2)
        if OptionCode.REBINDING_TIME in wanted:
            opts[OptionCode.REBINDING_TIME] = o.pack_u32(lease * 7 // 8)
    opts[OptionCode.SUBNET_MASK] = subnet.mask_packed
    if OptionCode.BROADCAST_ADDRESS in wanted:
        opts[OptionCode.BROADCAST_ADDRESS] = subnet.broadcast_packed
    if subnet.router_packed is not None:
        opts[OptionCode.ROUTER] = subnet.router_packed
    if subnet.dns:
        opts[OptionCode.DNS_SERVERS] = subnet.dns_packed
    if subnet.domain_packed is not None and OptionCode.DOMAIN_NAME in wanted:
        opts[OptionCode.DOMAIN_NAME] = subnet.domain_packed
    if hostname and OptionCode.HOSTNAME in wanted:
        opts[OptionCode.HOSTNAME] = o.pack_text(hostname)
    _add_echoes(reply, request)


def _add_echoes(reply: DhcpPacket, request: DhcpPacket) -> None:
    # RFC 6842: return the client identifier unaltered. RFC 3046: echo option 82 (the encoder puts it last).
    for code in (OptionCode.CLIENT_ID, OptionCode.RELAY_AGENT_INFO):
        value = request.options.get(code)
        if value is not None:
            reply.options[code] = value


def _add_boot(reply: DhcpPacket, request: DhcpPacket, settings: ServerSettings, *, proxy: bool) -> bool:
    choice = boot_choice(request, settings)
    if choice is None:
        return False
    opts = reply.options
    reply.siaddr = settings.server_id
    if choice.vendor_class is not None:
        opts[OptionCode.VENDOR_CLASS] = choice.vendor_class  # HTTPClient: without the echo it never REQUESTs
    elif proxy:
        # A ProxyDHCP offer is recognised by option 60; option 43 says "boot this file, no discovery".
        opts[OptionCode.VENDOR_CLASS] = b"PXEClient"
        opts[OptionCode.VENDOR_SPECIFIC] = o.pack_pxe_vendor_options()
    if proxy:
        uuid = request.options.get(OptionCode.CLIENT_UUID)
        if uuid is not None:
            opts[OptionCode.CLIENT_UUID] = uuid
    if choice.tftp:
        opts[OptionCode.TFTP_SERVER_NAME] = o.pack_text(str(settings.server_id))
    name = o.pack_text(choice.file)
    opts[OptionCode.BOOTFILE_NAME] = name
    if len(name) < len(reply.file):  # the legacy field needs room for its terminating NUL
        reply.file = name.ljust(len(reply.file), b"\x00")
    if choice.ipxe:
        opts[OptionCode.IPXE_ENCAPSULATED] = o.pack_ipxe_encapsulated()
    return True


def _lenient_hostname(request: DhcpPacket) -> str | None:
    try:
        return o.hostname(request) or None
    except DhcpError:
        return None


def _max_size(request: DhcpPacket) -> int:
    if OptionCode.MAX_MESSAGE_SIZE not in request.options:
        return MIN_MESSAGE_SIZE
    try:
        size = o.max_message_size(request)
    except DhcpError:
        size = None  # a malformed size only costs the client the RFC minimum
    return min(max(size or MIN_MESSAGE_SIZE, MIN_MESSAGE_SIZE), MAX_REPLY_SIZE)


def _route(request: DhcpPacket, reply: DhcpPacket, *, durable: bool) -> Reply:
    # RFC 2131 4.1, without ARP-less unicast to yiaddr.
    size = _max_size(request)
    if request.giaddr != ZERO:
        return Reply(reply, request.giaddr, SERVER_PORT, False, durable, size)
    if reply.message_type == MessageType.NAK or request.ciaddr == ZERO:
        return Reply(reply, BROADCAST, CLIENT_PORT, True, durable, size)
    return Reply(reply, request.ciaddr, CLIENT_PORT, False, durable, size)
