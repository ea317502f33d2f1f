"""What the lease book accepts from people and clients: LeaseError (a refusal, worded for people), MACs and
host names checked by protocols' one rule, and a client's own host name cleaned to one DNS label."""

from __future__ import annotations

import re

from protocols.mac import normalize_mac as _normalize_mac
from protocols.names import InvalidName, dns_name


class LeaseError(ValueError):
    """A reservation (or other change) the model refuses; the message says why, for people."""


# The lease book's callers (services/api_leases.py) take a malformed MAC or host name as a LeaseError: these
# two pass protocols' one rule on as that. New code uses protocols.mac / protocols.names (InvalidName).
def normalize_mac(text: str) -> str:
    """protocols.mac.normalize_mac, raising LeaseError."""
    try:
        return _normalize_mac(text)
    except InvalidName as e:
        raise LeaseError(str(e)) from None


def valid_hostname(text: str) -> str:
    """protocols.names.dns_name, raising LeaseError."""
    try:
        return dns_name(text)
    except InvalidName as e:
        raise LeaseError(str(e)) from None


def client_hostname(raw: str | None) -> str | None:
    """A host name a client sent (option 12): untrusted, so cleaned to one DNS label or dropped."""
    if not raw:
        return None
    label = re.sub(r"[^a-z0-9-]", "-", raw.strip().split(".")[0].lower()).strip("-")[:63].strip("-")
    return label or None
