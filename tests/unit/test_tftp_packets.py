"""TFTP codec: every packet type round-trips; malformed input raises TftpError and nothing else."""

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocols.tftp import (
    Ack,
    Data,
    Error,
    ErrorCode,
    OptionAck,
    ReadRequest,
    TftpError,
    WriteRequest,
    decode_packet,
    encode_packet,
)


@pytest.mark.parametrize(
    "packet",
    [
        ReadRequest("pxelinux.0", "octet", {}),
        ReadRequest("boot/ipxe.efi", "netascii", {"blksize": "1468", "tsize": "0"}),
        WriteRequest("upload", "octet", {}),
        Data(1, b"hello"),
        Data(65535, b""),
        Ack(0),
        Ack(65535),
        Error(1, "file not found"),
        OptionAck({"blksize": "1468", "windowsize": "16"}),
    ],
)
def test_every_packet_type_round_trips(packet):
    assert decode_packet(encode_packet(packet)) == packet


def test_rrq_wire_format_is_rfc_1350():
    wire = b"\x00\x01pxelinux.0\x00octet\x00blksize\x001468\x00"
    assert decode_packet(wire) == ReadRequest("pxelinux.0", "octet", {"blksize": "1468"})


def test_mode_and_option_names_are_case_insensitive_values_kept():
    packet = decode_packet(b"\x00\x01f\x00OcTeT\x00BLKSIZE\x00512\x00TSize\x000\x00")
    assert packet == ReadRequest("f", "octet", {"blksize": "512", "tsize": "0"})


def test_nul_padding_after_options_is_dropped():
    assert decode_packet(b"\x00\x01f\x00octet\x00\x00\x00\x00") == ReadRequest("f", "octet", {})


def test_first_of_repeated_options_wins():
    packet = decode_packet(b"\x00\x01f\x00octet\x00blksize\x001024\x00blksize\x008\x00")
    assert packet.options == {"blksize": "1024"}


@pytest.mark.parametrize(
    "wire, reason",
    [
        (b"", "shorter than an opcode"),
        (b"\x00", "shorter than an opcode"),
        (b"\x00\x09junk", "unknown opcode 9"),
        (b"\xff\xff", "unknown opcode 65535"),
        (b"\x00\x01file\x00octet", "not NUL-terminated"),
        (b"\x00\x01file\x00", "lacks filename or mode"),
        (b"\x00\x01file\x00octet\x00blksize\x00", "odd number of option fields"),
        (b"\x00\x01file\x00octet\x00a\x001\x00b\x00", "odd number of option fields"),
        (b"\x00\x01\xff\xfe\x00octet\x00", "not UTF-8"),
        (b"\x00\x03\x00", "DATA shorter"),
        (b"\x00\x04\x00", "ACK shorter"),
        (b"\x00\x05\x00", "ERROR shorter"),
        (b"\x00\x06blksize", "OACK is not NUL-terminated"),
    ],
)
def test_malformed_datagrams_raise_tftp_error(wire, reason):
    with pytest.raises(TftpError, match=reason):
        decode_packet(wire)


def test_tftp_error_is_a_value_error_carrying_a_reply_code():
    with pytest.raises(ValueError) as caught:
        decode_packet(b"\x00\x01\xff\x00octet\x00")
    assert caught.value.code == ErrorCode.FILE_NOT_FOUND


def test_error_without_terminating_nul_is_accepted():
    assert decode_packet(b"\x00\x05\x00\x08aborted") == Error(8, "aborted")


def test_data_block_numbers_are_16_bit_on_the_wire():
    assert encode_packet(Data(65536, b"x")) == b"\x00\x03\x00\x00x"


@given(st.binary(max_size=600))
def test_any_bytes_decode_or_raise_tftp_error(wire):
    with contextlib.suppress(TftpError):
        decode_packet(wire)


@given(
    st.text(st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)), min_size=1, max_size=40),
    st.dictionaries(
        st.text("abcdefghijklmnopqrstuvwxyz", min_size=1, max_size=10),
        st.text("0123456789abc", min_size=1, max_size=6),
        max_size=5,
    ),
)
def test_requests_round_trip(filename, options):
    packet = ReadRequest(filename, "octet", options)
    assert decode_packet(encode_packet(packet)) == packet
