"""TFTP packet codec (RFC 1350, RFC 2347 OACK): bytes <-> typed packets.

Decoding is strict about structure (it raises TftpError, the one error for malformed input)
and liberal where real clients differ: mode and option names are case-insensitive, an ERROR
without its terminating NUL is accepted, and NUL padding after a request's options is dropped.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import IntEnum

_HEADER = struct.Struct("!HH")


class Opcode(IntEnum):
    RRQ = 1
    WRQ = 2
    DATA = 3
    ACK = 4
    ERROR = 5
    OACK = 6


class ErrorCode(IntEnum):
    NOT_DEFINED = 0
    FILE_NOT_FOUND = 1
    ACCESS_VIOLATION = 2
    DISK_FULL = 3
    ILLEGAL_OPERATION = 4
    UNKNOWN_TID = 5
    FILE_EXISTS = 6
    NO_SUCH_USER = 7
    OPTION_REFUSED = 8  # RFC 2347: the client ends negotiation (PXE ROMs do after a tsize probe)


class TftpError(ValueError):
    """Malformed or refused TFTP input; `code` is what an ERROR reply to the peer should carry."""

    def __init__(self, message: str, code: ErrorCode = ErrorCode.ILLEGAL_OPERATION) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, slots=True)
class ReadRequest:
    filename: str
    mode: str = "octet"
    options: Mapping[str, str] = field(default_factory=dict)  # names lower-cased, request order


@dataclass(frozen=True, slots=True)
class WriteRequest:
    filename: str
    mode: str = "octet"
    options: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Data:
    block: int
    payload: bytes


@dataclass(frozen=True, slots=True)
class Ack:
    block: int


@dataclass(frozen=True, slots=True)
class Error:
    code: int
    message: str


@dataclass(frozen=True, slots=True)
class OptionAck:
    options: Mapping[str, str]


Packet = ReadRequest | WriteRequest | Data | Ack | Error | OptionAck


def decode_packet(datagram: bytes) -> Packet:
    """Parse one datagram; raises TftpError if it is not a well-formed TFTP packet."""
    if len(datagram) < 2:
        raise TftpError(f"datagram of {len(datagram)} byte(s) is shorter than an opcode")
    opcode = int.from_bytes(datagram[:2], "big")
    if opcode in (Opcode.RRQ, Opcode.WRQ):
        return _decode_request(opcode, datagram)
    if opcode == Opcode.DATA:
        if len(datagram) < 4:
            raise TftpError("DATA shorter than its header")
        return Data(int.from_bytes(datagram[2:4], "big"), bytes(datagram[4:]))
    if opcode == Opcode.ACK:
        if len(datagram) < 4:
            raise TftpError("ACK shorter than its header")
        return Ack(int.from_bytes(datagram[2:4], "big"))
    if opcode == Opcode.ERROR:
        if len(datagram) < 4:
            raise TftpError("ERROR shorter than its header")
        message = bytes(datagram[4:]).split(b"\0", 1)[0]
        return Error(int.from_bytes(datagram[2:4], "big"), message.decode("utf-8", "replace"))
    if opcode == Opcode.OACK:
        return OptionAck(_decode_options(_nul_fields(datagram[2:], "OACK")))
    raise TftpError(f"unknown opcode {opcode}")


def _nul_fields(body: bytes, what: str) -> list[bytes]:
    if not body.endswith(b"\0"):
        raise TftpError(f"{what} is not NUL-terminated")
    fields = bytes(body).split(b"\0")
    fields.pop()  # the empty string after the terminating NUL
    while fields and fields[-1] == b"":  # NUL padding some clients append
        fields.pop()
    return fields


def _decode_request(opcode: int, datagram: bytes) -> ReadRequest | WriteRequest:
    fields = _nul_fields(datagram[2:], "request")
    if len(fields) < 2:
        raise TftpError("request lacks filename or mode")
    try:
        filename = fields[0].decode("utf-8")
    except UnicodeDecodeError as exc:
        raise TftpError("filename is not UTF-8", ErrorCode.FILE_NOT_FOUND) from exc
    mode = fields[1].decode("latin-1").lower()
    options = _decode_options(fields[2:])
    cls = ReadRequest if opcode == Opcode.RRQ else WriteRequest
    return cls(filename, mode, options)


def _decode_options(fields: list[bytes]) -> dict[str, str]:
    if len(fields) % 2:
        raise TftpError(f"odd number of option fields ({len(fields)})")
    options: dict[str, str] = {}
    for i in range(0, len(fields), 2):
        name = fields[i].decode("latin-1").lower()
        # The first occurrence wins: a repeated option cannot change an earlier decision.
        options.setdefault(name, fields[i + 1].decode("latin-1"))
    return options


def encode_request(request: ReadRequest | WriteRequest) -> bytes:
    opcode = Opcode.RRQ if isinstance(request, ReadRequest) else Opcode.WRQ
    parts = [request.filename.encode("utf-8"), request.mode.encode("latin-1")]
    for name, value in request.options.items():
        parts += [name.encode("latin-1"), value.encode("latin-1")]
    return opcode.to_bytes(2, "big") + b"\0".join(parts) + b"\0"


def encode_data(block: int, payload: bytes | memoryview) -> bytes:
    return _HEADER.pack(Opcode.DATA, block & 0xFFFF) + payload


def encode_ack(block: int) -> bytes:
    return _HEADER.pack(Opcode.ACK, block & 0xFFFF)


def encode_error(code: int, message: str) -> bytes:
    return _HEADER.pack(Opcode.ERROR, int(code)) + message.encode("utf-8", "replace") + b"\0"


def encode_oack(options: Mapping[str, str]) -> bytes:
    body = b"".join(n.encode("latin-1") + b"\0" + v.encode("latin-1") + b"\0" for n, v in options.items())
    return Opcode.OACK.to_bytes(2, "big") + body


def encode_packet(packet: Packet) -> bytes:
    match packet:
        case ReadRequest() | WriteRequest():
            return encode_request(packet)
        case Data(block, payload):
            return encode_data(block, payload)
        case Ack(block):
            return encode_ack(block)
        case Error(code, message):
            return encode_error(code, message)
        case OptionAck(options):
            return encode_oack(options)
    raise TypeError(f"not a TFTP packet: {packet!r}")
