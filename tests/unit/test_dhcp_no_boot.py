"""respond(offer_boot=False), the hook for discovery policy "ignore": the same address, no boot at all."""

from __future__ import annotations

from protocols.dhcp.codec import decode
from protocols.dhcp.options import MessageType
from protocols.dhcp.reply import respond
from tests.unit.test_dhcp_book import MemoryLeaseBook
from tests.unit.test_dhcp_codec import IPXE_DISCOVER, PXE_ROM_DISCOVER
from tests.unit.test_dhcp_reply import PROXY, SERVER, SETTINGS, client, wire

BOOT_OPTIONS = {66, 67, 175, 210}


def test_without_boot_a_pxe_rom_gets_its_address_and_nothing_to_boot() -> None:
    for discover in (PXE_ROM_DISCOVER, IPXE_DISCOVER):
        booting = respond(decode(discover), MemoryLeaseBook(), SETTINGS, 0.0)
        plain = respond(decode(discover), MemoryLeaseBook(), SETTINGS, 0.0, offer_boot=False)
        assert booting is not None and plain is not None
        with_boot, without = wire(booting), wire(plain)
        assert with_boot.options.keys() & BOOT_OPTIONS  # what is left out below is really there normally
        assert without.yiaddr == with_boot.yiaddr and without.message_type == MessageType.OFFER
        assert not without.options.keys() & BOOT_OPTIONS
        assert without.file.rstrip(b"\x00") == b"" and str(without.siaddr) == "0.0.0.0"


def test_without_boot_the_ack_too_and_proxydhcp_stays_silent() -> None:
    book = MemoryLeaseBook()
    pxe = decode(PXE_ROM_DISCOVER)
    offer = respond(pxe, book, SETTINGS, 0.0, offer_boot=False)
    assert offer is not None
    request = client(MessageType.REQUEST, pxe.mac, options={**pxe.options, 53: bytes([MessageType.REQUEST]),
                                                             50: offer.packet.yiaddr.packed, 54: SERVER.packed})
    ack = respond(request, book, SETTINGS, 0.0, offer_boot=False)
    assert ack is not None and wire(ack).message_type == MessageType.ACK
    assert not wire(ack).options.keys() & BOOT_OPTIONS
    assert respond(pxe, MemoryLeaseBook(), PROXY, 0.0, offer_boot=False) is None
    assert respond(pxe, MemoryLeaseBook(), PROXY, 0.0) is not None
