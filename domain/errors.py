"""What a use case refuses, as exception types; the front ends map them (HTTP status, CLI exit code)."""

from __future__ import annotations


class DomainError(Exception):
    """A refused request; the message says why, for people."""


class Invalid(DomainError, ValueError):
    """The request itself is malformed (a bad MAC, name, version, parameter)."""


class NotFound(DomainError, LookupError):
    """What the request names does not exist."""


class Conflict(DomainError):
    """The request contradicts what exists (a taken name, MAC or address)."""
