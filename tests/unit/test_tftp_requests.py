"""What the request port does with each kind of datagram."""

import pytest

from protocols.tftp import (
    Admitted,
    Error,
    ErrorCode,
    ReadRequest,
    Refused,
    WriteRequest,
    admit,
    decode_packet,
    encode_ack,
    encode_data,
    encode_error,
    encode_request,
)


def _error_code(decision: Refused) -> int:
    assert decision.reply is not None
    reply = decode_packet(decision.reply)
    assert isinstance(reply, Error)
    return reply.code


def test_read_request_is_admitted_with_normalized_path():
    decision = admit(encode_request(ReadRequest("/pxelinux.cfg//default", "octet", {"tsize": "0"})))
    assert isinstance(decision, Admitted)
    assert decision.path == ("pxelinux.cfg", "default")
    assert decision.name == "pxelinux.cfg/default"
    assert decision.request.options == {"tsize": "0"}


def test_write_request_is_refused_with_access_violation():
    decision = admit(encode_request(WriteRequest("upload.bin", "octet", {})))
    assert isinstance(decision, Refused)
    assert _error_code(decision) == ErrorCode.ACCESS_VIOLATION


@pytest.mark.parametrize("name", ["../etc/passwd", "a/../../x", "..\\x", "//etc/shadow", ""])
def test_traversal_is_refused_with_access_violation(name):
    decision = admit(encode_request(ReadRequest(name, "octet", {})))
    assert isinstance(decision, Refused)
    assert _error_code(decision) == ErrorCode.ACCESS_VIOLATION


def test_unsupported_mode_is_refused():
    decision = admit(encode_request(ReadRequest("f", "mail", {})))
    assert isinstance(decision, Refused)
    assert _error_code(decision) == ErrorCode.ILLEGAL_OPERATION


@pytest.mark.parametrize(
    "wire",
    [b"", b"\x01", b"\x00\x07", b"\x00\x01f\x00octet\x00blksize\x00", encode_ack(1), encode_data(1, b"x")],
)
def test_malformed_or_misplaced_packets_get_illegal_operation(wire):
    decision = admit(wire)
    assert isinstance(decision, Refused)
    assert _error_code(decision) == ErrorCode.ILLEGAL_OPERATION


def test_error_on_the_request_port_is_never_answered():
    decision = admit(encode_error(ErrorCode.UNKNOWN_TID, "who are you"))
    assert decision == Refused("ERROR sent to the request port", None)
