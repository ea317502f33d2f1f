"""What the host rules (domain/hostbook.py, domain/host_states.py) refuse, as domain errors by kind.

`HostError` is the common base (a ValueError too, as it always was, so a caller may catch every refused host
change at once); each raise uses the subclass that says which kind it is, so the HTTP status and the CLI exit
code follow from domain/errors.py alone.
"""

from __future__ import annotations

from domain.errors import Conflict, DomainError, Invalid, NotFound


class HostError(DomainError, ValueError):
    """A host change that is refused; the message says why, for people."""


class HostConflict(HostError, Conflict):
    """The change contradicts what exists (a taken name, MAC or address, a state it cannot go to)."""


class HostNotFound(HostError, NotFound):
    """The change names a host that does not exist."""


class HostFieldError(HostError, Invalid):
    """The change itself is malformed (a field that cannot be set, a bad version or transport)."""
