"""TFTP, sans-IO: packet codec, option negotiation, filename policy and the read-transfer machine."""

from protocols.tftp.blocks import Reader, netascii_encode
from protocols.tftp.filenames import MAX_FILENAME_BYTES, safe_path_parts
from protocols.tftp.options import Negotiated, negotiate
from protocols.tftp.packets import (
    Ack,
    Data,
    Error,
    ErrorCode,
    Opcode,
    OptionAck,
    Packet,
    ReadRequest,
    TftpError,
    WriteRequest,
    decode_packet,
    encode_ack,
    encode_data,
    encode_error,
    encode_oack,
    encode_packet,
    encode_request,
)
from protocols.tftp.requests import Admitted, Refused, admit
from protocols.tftp.transfer import SUPPORTED_MODES, Outcome, ReadTransfer

__all__ = [
    "MAX_FILENAME_BYTES",
    "SUPPORTED_MODES",
    "Ack",
    "Admitted",
    "Data",
    "Error",
    "ErrorCode",
    "Negotiated",
    "Opcode",
    "OptionAck",
    "Outcome",
    "Packet",
    "ReadRequest",
    "ReadTransfer",
    "Reader",
    "Refused",
    "TftpError",
    "WriteRequest",
    "admit",
    "decode_packet",
    "encode_ack",
    "encode_data",
    "encode_error",
    "encode_oack",
    "encode_packet",
    "encode_request",
    "negotiate",
    "netascii_encode",
    "safe_path_parts",
]
