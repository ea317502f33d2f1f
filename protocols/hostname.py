"""The one rule for host names: a DNS label (RFC 1123: letters, digits and '-', not at either end, at most
63 characters), lower-case as stored. A host name, a discovery rule's name, a lease's hostname and the DNS
zone's names all follow it; a DNS name is such labels joined by dots (at most 253 characters)."""

from __future__ import annotations

import re

DNS_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")


def is_label(text: str) -> bool:
    """`text` (already lower-cased) is one DNS label."""
    return bool(DNS_LABEL.match(text))


def is_dns_name(text: str) -> bool:
    """`text` (lower-cased, no trailing dot) is a DNS name of one or more labels."""
    return 0 < len(text) <= 253 and all(DNS_LABEL.match(label) for label in text.split("."))
