"""What the lease book accepts from clients: LeaseError (a refusal, worded for people: overlapping pools), and a
client's own host name cleaned to one DNS label. What people may reserve is domain/leases.py's to decide."""

from __future__ import annotations

import re


class LeaseError(ValueError):
    """A change of the book's pools it refuses (they overlap); the message says why, for people."""


def client_hostname(raw: str | None) -> str | None:
    """A host name a client sent (option 12): untrusted, so cleaned to one DNS label or dropped."""
    if not raw:
        return None
    label = re.sub(r"[^a-z0-9-]", "-", raw.strip().split(".")[0].lower()).strip("-")[:63].strip("-")
    return label or None
