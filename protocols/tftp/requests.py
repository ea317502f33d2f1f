"""What to do with a datagram that arrives on the request port (69): a pure decision."""

from __future__ import annotations

from dataclasses import dataclass

from protocols.tftp.filenames import safe_path_parts
from protocols.tftp.packets import (
    Error,
    ErrorCode,
    ReadRequest,
    TftpError,
    WriteRequest,
    decode_packet,
    encode_error,
)
from protocols.tftp.transfer import SUPPORTED_MODES


@dataclass(frozen=True, slots=True)
class Admitted:
    request: ReadRequest
    path: tuple[str, ...]  # components relative to the TFTP root, already policy-checked

    @property
    def name(self) -> str:
        """The normalized name ("/pxelinux.cfg//x" -> "pxelinux.cfg/x")."""
        return "/".join(self.path)


@dataclass(frozen=True, slots=True)
class Refused:
    reason: str
    reply: bytes | None  # ERROR datagram for the peer, or None to stay silent


def admit(datagram: bytes) -> Admitted | Refused:
    """Accept a well-formed RRQ for an acceptable name; everything else gets an ERROR or silence."""
    try:
        packet = decode_packet(datagram)
    except TftpError as exc:
        return Refused(f"malformed: {exc}", encode_error(exc.code, str(exc)))
    if isinstance(packet, Error):
        return Refused("ERROR sent to the request port", None)  # never answer an ERROR
    if isinstance(packet, WriteRequest):
        return Refused("write request", encode_error(ErrorCode.ACCESS_VIOLATION, "write requests are refused"))
    if not isinstance(packet, ReadRequest):
        kind = type(packet).__name__
        return Refused(f"{kind} on the request port", encode_error(ErrorCode.ILLEGAL_OPERATION, "not a request"))
    if packet.mode not in SUPPORTED_MODES:
        message = f"transfer mode {packet.mode!r} not supported"
        return Refused(message, encode_error(ErrorCode.ILLEGAL_OPERATION, message))
    try:
        path = safe_path_parts(packet.filename)
    except TftpError as exc:
        return Refused(f"filename refused: {exc}", encode_error(exc.code, str(exc)))
    return Admitted(packet, path)
