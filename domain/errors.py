"""What a use case refuses, as exception types; the front ends map them (HTTP status, CLI exit code)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from protocols.names import InvalidName


class DomainError(Exception):
    """A refused request; the message says why, for people."""


class Invalid(DomainError, ValueError):
    """The request itself is malformed (a bad MAC, name, version, parameter)."""


class NotFound(DomainError, LookupError):
    """What the request names does not exist."""


class Conflict(DomainError):
    """The request contradicts what exists (a taken name, MAC or address)."""


class Forbidden(DomainError):
    """The request comes from where it may not (an install script asked from another address)."""


class Unauthorized(DomainError):
    """The request lacks the credential it needs; `challenge` is the WWW-Authenticate value to answer with."""

    def __init__(self, message: str, *, challenge: str = 'Bearer realm="imageserver"') -> None:
        super().__init__(message)
        self.challenge = challenge


@contextmanager
def valid_names() -> Iterator[None]:
    """The one place a refused name (protocols.names.InvalidName: a MAC address, host, DNS or image name)
    becomes the domain's Invalid."""
    try:
        yield
    except InvalidName as e:
        raise Invalid(str(e)) from None
