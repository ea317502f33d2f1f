"""A TLS certificate's SHA-256 fingerprint: how it is computed, written and read (one spelling everywhere).

Written as OpenSSL prints it (`openssl x509 -noout -fingerprint -sha256`): 32 upper-case hex bytes joined
by colons. Read in any of the usual spellings: with or without colons, any case, an optional "sha256:" or
"SHA256 Fingerprint=" prefix, so a value pasted from `imageserver init`, openssl or a browser is taken.
"""

from __future__ import annotations

import hashlib
import re

_PREFIX = re.compile(r"^(?:sha-?256(?:\s+fingerprint)?\s*[:=]\s*)", re.I)
_HEX = re.compile(r"^[0-9a-f]{64}$")


def fingerprint(der: bytes) -> str:
    """The fingerprint of a certificate in DER form."""
    return spell(hashlib.sha256(der).digest())


def spell(digest: bytes) -> str:
    return ":".join(f"{b:02X}" for b in digest)


def parse(text: str) -> str:
    """The fingerprint `text` names, spelled as `fingerprint` spells it; ValueError if it names none."""
    raw = _PREFIX.sub("", text.strip())
    hexdigits = raw.replace(":", "").replace(" ", "").lower()
    if not _HEX.match(hexdigits):
        raise ValueError(f"{text!r} is not a SHA-256 fingerprint (64 hex digits, colons allowed)")
    return spell(bytes.fromhex(hexdigits))


def digest(text: str) -> bytes:
    """The 32 bytes a fingerprint names (aiohttp.Fingerprint takes them)."""
    return bytes.fromhex(parse(text).replace(":", ""))
