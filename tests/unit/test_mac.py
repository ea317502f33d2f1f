"""protocols.mac: every usual MAC spelling -> 'aa:bb:cc:dd:ee:ff'; anything else refused."""

from __future__ import annotations

import pytest

from protocols.mac import normalize_mac, pxelinux_mac_name
from protocols.names import InvalidName as MacError

CANON = "52:54:00:ab:cd:ef"


@pytest.mark.parametrize("text", [
    "52:54:00:ab:cd:ef", "52:54:00:AB:CD:EF", "52-54-00-ab-cd-ef", "525400abcdef", "525400ABCDEF",
    "5254.00ab.cdef", "01-52-54-00-ab-cd-ef", " 52:54:00:ab:cd:ef ",
])
def test_accepted_spellings(text: str) -> None:
    assert normalize_mac(text) == CANON


@pytest.mark.parametrize("text", [
    "", "52:54:00:ab:cd", "52:54:00:ab:cd:ef:00", "52:54:00:ab:cd:eg", "5:54:00:ab:cd:ef0",
    "52-54-00:ab:cd:ef", "02-52-54-00-ab-cd-ef", "../../etc/passwd", "52:54:00:ab:cd:e\x00",
    "525400abcdef" * 3,
])
def test_refused_spellings(text: str) -> None:
    with pytest.raises(MacError):
        normalize_mac(text)


def test_pxelinux_name() -> None:
    assert pxelinux_mac_name("52:54:00:AB:CD:EF") == "01-52-54-00-ab-cd-ef"
