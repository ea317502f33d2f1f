"""udpcast command lines and udp-sender's log, as the multicast session reads them (protocols/udpcast.py)."""

from __future__ import annotations

import itertools

import pytest

from protocols import udpcast

PLAN = udpcast.SenderPlan(interface="br0", portbase=9300, min_receivers=3, min_wait=5, max_wait=30,
                          start_timeout=300, retries_until_drop=8, max_bitrate="600m")


def test_sender_argv_carries_the_start_window_and_the_slow_receiver_policy() -> None:
    argv = udpcast.sender_argv(PLAN)
    pairs = dict(itertools.pairwise(argv))
    assert argv[0] == "udp-sender" and "--nokbd" in argv
    assert pairs["--interface"] == "br0" and pairs["--portbase"] == "9300" and pairs["--ttl"] == "1"
    assert pairs["--min-receivers"] == "3" and pairs["--min-wait"] == "5" and pairs["--max-wait"] == "30"
    assert pairs["--retries-until-drop"] == "8" and pairs["--max-bitrate"] == "600m"


def test_nonsense_numbers_are_clamped_and_odd_ports_refused() -> None:
    argv = udpcast.sender_argv(udpcast.SenderPlan("br0", 9000, 0, 0, 0, 0, 0))
    pairs = dict(itertools.pairwise(argv))
    assert pairs["--min-receivers"] == "1" and pairs["--max-wait"] == "1" and pairs["--retries-until-drop"] == "1"
    assert "--max-bitrate" not in argv
    for bad in (9001, 80, 65535):
        with pytest.raises(ValueError, match="portbase"):
            udpcast.check_portbase(bad)


def test_tar_and_cipher_argv() -> None:
    create = udpcast.tar_create_argv("/srv/images/web/v1", ["/boot/efi/"])
    assert create[:3] == ["tar", "-C", "/srv/images/web/v1"] and create[-3:] == ["-cf", "-", "."]
    assert "--exclude=./boot/efi" in create and "--acls" in create and "--xattrs-include=*" in create
    assert "--numeric-owner" in create
    assert udpcast.encrypt_argv("/k")[:3] == ["openssl", "enc", "-aes-256-ctr"]
    assert "-d" in udpcast.decrypt_argv("/k") and "file:/k" in udpcast.decrypt_argv("/k")


@pytest.mark.parametrize(("line", "event"), [
    ("New connection from 10.77.0.2  (#0) 00000009", udpcast.SenderEvent("connected", 0, "10.77.0.2")),
    ("Starting transfer: 00000009", udpcast.SenderEvent("started")),
    ("Dropping client #1 because of timeout", udpcast.SenderEvent("dropped", 1)),
    ("Transfer complete.\a", udpcast.SenderEvent("complete")),
    ("Disconnecting #0 (10.77.0.2)", udpcast.SenderEvent("disconnected", 0, "10.77.0.2")),
    ("Udp-sender 20120424", None),
    ("", None),
    ("New connection from 999999 (#x)", None),
])
def test_sender_lines(line: str, event: udpcast.SenderEvent | None) -> None:
    assert udpcast.parse_sender_line(line) == event
