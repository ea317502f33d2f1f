"""DHCPv4 / BOOTP wire format: bytes <-> DhcpPacket (RFC 951, 2131, 2132, 3396, 3046).

Decoding is strict about structure and lenient about content: any structural fault raises DhcpError,
but option *values* are kept as raw bytes (text is only interpreted by the accessors in options.py),
so one junk option never stops a packet from being decoded.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from ipaddress import IPv4Address

BOOTREQUEST = 1
BOOTREPLY = 2

MAGIC_COOKIE = b"\x63\x82\x53\x63"
HEADER = struct.Struct("!BBBBIHH4s4s4s4s16s64s128s")  # 236 bytes, RFC 2131 figure 1
_HEADER_INTS = struct.Struct("!BBBBIHHIIII16s64s128s")  # the same, addresses as integers (decode)
_OPTION_HEAD = struct.Struct("BB")  # code, length
_END = bytes([255])
OPTIONS_OFFSET = HEADER.size + len(MAGIC_COOKIE)  # 240
BOOTP_MIN_SIZE = 300  # RFC 951 / RFC 1542: relays may drop anything shorter
CHADDR_SIZE, SNAME_SIZE, FILE_SIZE = 16, 64, 128

# max_size in encode() follows ISC dhcpd: it counts the IP and UDP headers too, so the RFC 2131
# minimum of 576 leaves 548 bytes for the DHCP message (236 fixed + 312 options incl. the cookie).
IP_UDP_OVERHEAD = 28
MIN_MAX_SIZE = 576

OPT_PAD = 0
OPT_END = 255
OPT_OVERLOAD = 52
OPT_MESSAGE_TYPE = 53
OPT_RELAY_AGENT_INFO = 82

# Codes the encoder's fast path writes as they come (53 goes first, 82 last, 52 is the encoder's own).
_PLAIN_CODES = frozenset(range(1, OPT_END)) - {OPT_OVERLOAD, OPT_MESSAGE_TYPE, OPT_RELAY_AGENT_INFO}

OVERLOAD_FILE = 1
OVERLOAD_SNAME = 2
OVERLOAD_BOTH = 3

_ZERO = IPv4Address(0)
_ZERO_PACKED = bytes(4)


class DhcpError(ValueError):
    """The one exception for a DHCP packet that cannot be decoded (or a packet that cannot be encoded)."""


@dataclass(slots=True)
class DhcpPacket:
    op: int = BOOTREQUEST
    htype: int = 1
    hlen: int = 6
    hops: int = 0
    xid: int = 0
    secs: int = 0
    flags: int = 0
    ciaddr: IPv4Address = _ZERO
    yiaddr: IPv4Address = _ZERO
    siaddr: IPv4Address = _ZERO
    giaddr: IPv4Address = _ZERO
    chaddr: bytes = bytes(CHADDR_SIZE)
    sname: bytes = bytes(SNAME_SIZE)
    file: bytes = bytes(FILE_SIZE)
    # Logical options: split instances already concatenated (RFC 3396), overloaded file/sname already
    # merged in (RFC 2132 9.3); option 52 itself never appears here, the encoder decides it.
    options: dict[int, bytes] = field(default_factory=dict)
    # mac, once computed: the server asks for it several times per packet (chaddr and hlen are not changed
    # after a packet is built).
    _mac: str | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def mac(self) -> str:
        mac = self._mac
        if mac is None:
            mac = self._mac = self.chaddr[: self.hlen].hex(":")
        return mac

    @property
    def message_type(self) -> int | None:
        value = self.options.get(OPT_MESSAGE_TYPE)
        if value is None:
            return None
        if len(value) != 1:
            raise DhcpError(f"option 53 has length {len(value)}, expected 1")
        return value[0]

    @property
    def broadcast(self) -> bool:
        return bool(self.flags & 0x8000)


def decode(data: bytes) -> DhcpPacket:
    """Parse one DHCP/BOOTP message; raises DhcpError for anything structurally wrong."""
    if len(data) < OPTIONS_OFFSET:
        raise DhcpError(f"packet of {len(data)} bytes is shorter than the {OPTIONS_OFFSET}-byte minimum")
    if data[HEADER.size : OPTIONS_OFFSET] != MAGIC_COOKIE:
        raise DhcpError("missing DHCP magic cookie")
    # Addresses come out as integers: most are 0.0.0.0, which shares one IPv4Address instead of building one.
    (op, htype, hlen, hops, xid, secs, flags, ciaddr, yiaddr, siaddr, giaddr, chaddr, sname, file) = (
        _HEADER_INTS.unpack_from(data)
    )
    if op not in (BOOTREQUEST, BOOTREPLY):
        raise DhcpError(f"op {op} is neither BOOTREQUEST nor BOOTREPLY")
    if hlen > CHADDR_SIZE:
        raise DhcpError(f"hlen {hlen} exceeds the {CHADDR_SIZE}-byte chaddr field")
    if htype == 0:
        raise DhcpError("htype 0 is reserved")

    # One pass straight into the dict: repeated instances are concatenated in arrival order (RFC 3396),
    # and a code keeps the position of its first instance.
    options: dict[int, bytes] = {}
    _parse_area(data, OPTIONS_OFFSET, len(data), options, "options")
    overload = _overload_value(options.pop(OPT_OVERLOAD, None))
    # RFC 3396: the aggregate buffer is options, then file, then sname, in that order.
    if overload & OVERLOAD_FILE:
        _parse_area(file, 0, FILE_SIZE, options, "file", nested=True)
        file = bytes(FILE_SIZE)
    if overload & OVERLOAD_SNAME:
        _parse_area(sname, 0, SNAME_SIZE, options, "sname", nested=True)
        sname = bytes(SNAME_SIZE)

    mt = options.get(OPT_MESSAGE_TYPE)
    if mt is not None and len(mt) != 1:
        raise DhcpError(f"option 53 has length {len(mt)}, expected 1")

    return DhcpPacket(
        op, htype, hlen, hops, xid, secs, flags,
        IPv4Address(ciaddr) if ciaddr else _ZERO, IPv4Address(yiaddr) if yiaddr else _ZERO,
        IPv4Address(siaddr) if siaddr else _ZERO, IPv4Address(giaddr) if giaddr else _ZERO,
        chaddr, sname, file, options,
    )  # fmt: skip


def _parse_area(
    buf: bytes, pos: int, end: int, out: dict[int, bytes], where: str, *, nested: bool = False
) -> None:
    # A missing End is tolerated when the last option ends exactly at the area's end.
    while pos < end:
        code = buf[pos]
        if code == OPT_END:
            return
        if code == OPT_PAD:
            pos += 1
            continue
        if pos + 1 >= end:
            raise DhcpError(f"option {code} in {where} is truncated before its length byte")
        stop = pos + 2 + buf[pos + 1]
        if stop > end:
            raise DhcpError(f"option {code} in {where} claims {buf[pos + 1]} bytes past the end of the area")
        if nested and code == OPT_OVERLOAD:
            raise DhcpError(f"option 52 may not appear inside the overloaded {where} field")
        value = buf[pos + 2 : stop]
        old = out.get(code)
        out[code] = value if old is None else old + value
        pos = stop


def _overload_value(joined: bytes | None) -> int:
    if joined is None:
        return 0
    if len(joined) != 1 or joined[0] not in (OVERLOAD_FILE, OVERLOAD_SNAME, OVERLOAD_BOTH):
        raise DhcpError(f"option 52 value {joined.hex()} is not 1, 2 or 3")
    return joined[0]


def encode(packet: DhcpPacket, max_size: int = MIN_MAX_SIZE) -> bytes:
    """Serialize a packet whose whole IP datagram fits in max_size bytes (raised to 576 if lower).

    Options over 255 bytes are split (RFC 3396); when options do not fit in the options field the empty
    file and then sname fields carry the rest (option 52). Option 53 goes first, option 82 last.
    Raises DhcpError if the packet cannot be represented or does not fit.
    """
    header = _pack_header(packet)
    limit = max(max_size, MIN_MAX_SIZE) - IP_UDP_OVERHEAD
    main_capacity = limit - OPTIONS_OFFSET - 1  # one byte for End

    # Fast path, the usual reply: every option is short and all fit in the options field. One buffer,
    # no per-option lists; anything else takes the general path below, which decides splitting and overload.
    first = last = b""
    body = bytearray()
    head = _OPTION_HEAD.pack
    for code, value in packet.options.items():
        # One set test stands for "an int code that is neither 0, 52, 53, 82 nor 255" (the type test first:
        # 1.0 == 1 would pass the set).
        if type(code) is int and code in _PLAIN_CODES and type(value) is bytes and len(value) <= 255:
            body += head(code, len(value))
            body += value
        elif code == OPT_MESSAGE_TYPE and type(code) is int and type(value) is bytes and len(value) == 1:
            first = head(code, 1) + value
        elif code == OPT_RELAY_AGENT_INFO and type(code) is int and type(value) is bytes and len(value) <= 255:
            last = head(code, len(value)) + value
        else:
            break
    else:
        if len(first) + len(body) + len(last) <= main_capacity:
            message = b"".join((header, MAGIC_COOKIE, first, body, last, _END))
            return message if len(message) >= BOOTP_MIN_SIZE else message.ljust(BOOTP_MIN_SIZE, b"\x00")
    return _encode_general(packet, header, main_capacity)


def _encode_general(packet: DhcpPacket, header: bytes, main_capacity: int) -> bytes:
    head: list[bytes] = []
    tail: list[bytes] = []
    body: list[tuple[int, bytes]] = []
    for code, value in packet.options.items():
        _check_option(code, value)
        if code == OPT_MESSAGE_TYPE:
            head = _chunks(code, value)
        elif code == OPT_RELAY_AGENT_INFO:
            tail = _chunks(code, value)
        else:
            body.append((code, value))

    fixed = sum(map(len, head)) + sum(map(len, tail))
    body_chunks = [chunk for code, value in body for chunk in _chunks(code, value)]
    if fixed + sum(map(len, body_chunks)) <= main_capacity:
        main = b"".join([*head, *body_chunks, *tail])
        return _finish(header, main, packet.sname, packet.file)

    areas = _overload_areas(packet, main_capacity - fixed - 3)
    # Whole (short) options first; long ones are split anyway, so their pieces can fill the gaps left.
    for code, value in sorted(body, key=lambda item: len(item[1]) > 255):
        _place(code, value, areas)
    overload = 0
    file_field, sname_field = packet.file, packet.sname
    for area in areas[1:]:
        if not area.chunks:
            continue
        content = b"".join(area.chunks) + bytes([OPT_END])
        if area.name == "file":
            overload |= OVERLOAD_FILE
            file_field = content.ljust(FILE_SIZE, b"\x00")
        else:
            overload |= OVERLOAD_SNAME
            sname_field = content.ljust(SNAME_SIZE, b"\x00")
    main = b"".join([*head, bytes([OPT_OVERLOAD, 1, overload]), *areas[0].chunks, *tail])
    return _finish(header, main, sname_field, file_field)


@dataclass(slots=True)
class _Area:
    name: str
    free: int
    chunks: list[bytes] = field(default_factory=list)

    def put(self, chunk: bytes) -> None:
        self.chunks.append(chunk)
        self.free -= len(chunk)


def _overload_areas(packet: DhcpPacket, main_free: int) -> list[_Area]:
    if main_free < 0:
        raise DhcpError("options 53, 52 and 82 alone do not fit in the options field")
    areas = [_Area("main", main_free)]
    # Only an empty field can carry options; one End byte is reserved in each.
    if not any(packet.file):
        areas.append(_Area("file", FILE_SIZE - 1))
    if not any(packet.sname):
        areas.append(_Area("sname", SNAME_SIZE - 1))
    if len(areas) == 1:
        raise DhcpError("options do not fit and file/sname are in use, so cannot be overloaded")
    return areas


def _place(code: int, value: bytes, areas: list[_Area]) -> None:
    if len(value) <= 255:
        # Short options are never split: clients without RFC 3396 would see two instances.
        for area in areas:
            if area.free >= len(value) + 2:
                area.put(bytes((code, len(value))) + value)
                return
        raise DhcpError(f"option {code} ({len(value)} bytes) does not fit in the message")
    # A long option must be split anyway, so split it at area boundaries too, in aggregate order.
    rest = value
    for area in areas:
        while rest and area.free >= 3:
            piece = rest[: min(255, area.free - 2)]
            area.put(bytes((code, len(piece))) + piece)
            rest = rest[len(piece) :]
    if rest:
        raise DhcpError(f"option {code} ({len(value)} bytes) does not fit in the message")


def _chunks(code: int, value: bytes) -> list[bytes]:
    if not value:
        return [bytes((code, 0))]
    return [bytes((code, len(value[i : i + 255]))) + value[i : i + 255] for i in range(0, len(value), 255)]


def _check_option(code: int, value: bytes) -> None:
    if not isinstance(code, int) or not 1 <= code <= 254 or code == OPT_OVERLOAD:
        raise DhcpError(f"option code {code!r} cannot be encoded (0, 52 and 255 belong to the encoder)")
    if not isinstance(value, bytes | bytearray):
        raise DhcpError(f"option {code} value must be bytes, not {type(value).__name__}")
    if code == OPT_MESSAGE_TYPE and len(value) != 1:
        raise DhcpError("option 53 must be exactly one byte")


def _pack_header(p: DhcpPacket) -> bytes:
    if p.hlen > CHADDR_SIZE:
        raise DhcpError(f"hlen {p.hlen} exceeds {CHADDR_SIZE}")
    if len(p.chaddr) > CHADDR_SIZE or len(p.sname) > SNAME_SIZE or len(p.file) > FILE_SIZE:
        for name, value, size in (("chaddr", p.chaddr, CHADDR_SIZE), ("sname", p.sname, SNAME_SIZE),
                                  ("file", p.file, FILE_SIZE)):  # fmt: skip
            if len(value) > size:
                raise DhcpError(f"{name} is {len(value)} bytes, the field holds {size}")
    try:
        # struct pads the short chaddr, sname and file with NULs.
        # Most addresses of a reply are 0.0.0.0: its packed form is a constant (.packed costs a call chain).
        ci, yi, si, gi = p.ciaddr, p.yiaddr, p.siaddr, p.giaddr
        return HEADER.pack(
            p.op, p.htype, p.hlen, p.hops, p.xid, p.secs, p.flags,
            _ZERO_PACKED if ci is _ZERO else ci.packed, _ZERO_PACKED if yi is _ZERO else yi.packed,
            _ZERO_PACKED if si is _ZERO else si.packed, _ZERO_PACKED if gi is _ZERO else gi.packed,
            p.chaddr if type(p.chaddr) is bytes else bytes(p.chaddr),
            p.sname if type(p.sname) is bytes else bytes(p.sname),
            p.file if type(p.file) is bytes else bytes(p.file),
        )  # fmt: skip
    except (struct.error, AttributeError, TypeError) as exc:
        raise DhcpError(f"header field out of range: {exc}") from exc


def _finish(header: bytes, main: bytes, sname: bytes, file: bytes) -> bytes:
    # struct pads short sname/file with NULs, so rebuild the header with the final fields.
    header = header[:44] + bytes(sname).ljust(SNAME_SIZE, b"\x00") + bytes(file).ljust(FILE_SIZE, b"\x00")
    message = header + MAGIC_COOKIE + main + bytes([OPT_END])
    return message.ljust(BOOTP_MIN_SIZE, b"\x00")
