"""An ACK answered from the store while commits fail is re-encoded with the time the stored row has left."""

from __future__ import annotations

from ipaddress import IPv4Address

from protocols.dhcp import options as o
from protocols.dhcp.codec import DhcpPacket, decode
from protocols.dhcp.options import MessageType, OptionCode
from protocols.dhcp.reply import Reply
from services.dhcp import _with_lease_time


def ack() -> Reply:
    packet = DhcpPacket(op=2, xid=7, chaddr=bytes.fromhex("525400aabb01").ljust(16, b"\x00"),
                        yiaddr=IPv4Address("10.0.0.100"),
                        options={OptionCode.MESSAGE_TYPE: bytes([MessageType.ACK]),
                                 OptionCode.SERVER_ID: IPv4Address("10.0.0.1").packed,
                                 OptionCode.LEASE_TIME: o.pack_u32(600)})
    return Reply(packet, IPv4Address("255.255.255.255"), 68, True, True)


def test_lease_time_and_the_renewal_times_the_client_asked_for_shrink_together() -> None:
    reply = ack()
    packet = reply.packet
    packet.options[OptionCode.RENEWAL_TIME] = o.pack_u32(300)
    packet.options[OptionCode.REBINDING_TIME] = o.pack_u32(525)
    out = decode(_with_lease_time(reply, 200))
    assert out.options[OptionCode.LEASE_TIME] == o.pack_u32(200)
    assert out.options[OptionCode.RENEWAL_TIME] == o.pack_u32(100)
    assert out.options[OptionCode.REBINDING_TIME] == o.pack_u32(175)
    assert out.yiaddr == IPv4Address("10.0.0.100") and out.xid == 7
    assert reply.packet.options[OptionCode.LEASE_TIME] == o.pack_u32(600)  # the original is left alone


def test_times_the_client_did_not_get_are_not_added() -> None:
    out = decode(_with_lease_time(ack(), 42))
    assert out.options[OptionCode.LEASE_TIME] == o.pack_u32(42)
    assert OptionCode.RENEWAL_TIME not in out.options and OptionCode.REBINDING_TIME not in out.options
