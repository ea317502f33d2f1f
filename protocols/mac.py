"""Ethernet MAC addresses as people and firmware write them -> one canonical form.

Canonical is lowercase, colon-separated: 'aa:bb:cc:dd:ee:ff' (what the state database stores).
Accepted spellings: colons or hyphens between octets (any case), bare 12 hex digits, Cisco dotted
('aabb.ccdd.eeff'), and pxelinux's ARP-type prefix '01-aa-bb-cc-dd-ee-ff'. Nothing else: a boot URL
with a malformed MAC is refused rather than guessed at.
"""

from __future__ import annotations

from protocols.names import InvalidName

_HEX = frozenset("0123456789abcdef")


def _refused(text: str) -> InvalidName:
    return InvalidName(f"{text!r} is not a MAC address (expected six hex pairs, e.g. 52:54:00:12:34:56)")


def _from_hex12(digits: str, text: str) -> str:
    if len(digits) != 12 or not set(digits) <= _HEX:
        raise _refused(text)
    return ":".join(digits[i:i + 2] for i in range(0, 12, 2))


def normalize_mac(text: str) -> str:
    """'AA-BB-CC-DD-EE-FF', 'aabbccddeeff', 'aabb.ccdd.eeff', '01-aa-bb-..' -> 'aa:bb:cc:dd:ee:ff';
    InvalidName (protocols.names) for anything else."""
    s = text.strip().lower()
    if len(s) > 20:  # longest accepted form is 20 characters ('01-' + 17)
        raise _refused(text)
    for sep in (":", "-"):
        parts = s.split(sep)
        if len(parts) == 7 and parts[0] == "01" and sep == "-":  # pxelinux: ARP hardware type 1 (Ethernet)
            parts = parts[1:]
        if len(parts) == 6:
            if any(len(p) != 2 for p in parts):
                raise _refused(text)
            return _from_hex12("".join(parts), text)
    dotted = s.split(".")
    if len(dotted) == 3 and all(len(p) == 4 for p in dotted):
        return _from_hex12("".join(dotted), text)
    return _from_hex12(s, text)


def pxelinux_mac_name(mac: str) -> str:
    """The pxelinux.cfg file name pxelinux asks for first: '01-aa-bb-cc-dd-ee-ff'."""
    return "01-" + normalize_mac(mac).replace(":", "-")
