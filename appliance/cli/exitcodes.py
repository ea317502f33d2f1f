"""The CLI's exit codes, decided in one place: `exit_code(error)` for whatever a command lets escape.

A command returns 0 (or its own 1 for "done, but something failed", e.g. `watch` with a failed host);
every refusal, from the daemon's API or from the same use case run offline, reaches main() as an
exception and is mapped here, so `hosts set`, `reservations rm` and the rest agree on what 3 or 4 means.
"""

from __future__ import annotations

from appliance.cli.apiclient import ApiError, ApiUnavailable, CertificateRefused, RemoteUnavailable
from appliance.config import ConfigError
from domain.errors import Conflict, Forbidden, Invalid, NotFound, Unauthorized
from protocols.names import InvalidName

OK = 0
FAILED = 1  # the operation failed (an I/O error, a failed capture, the daemon could not do it)
USAGE = 2  # bad usage or a malformed argument (argparse's own 2 too), or a bad configuration file
NOT_FOUND = 3  # what the command names does not exist: a host, a reservation, an image, a satellite
REFUSED = 4  # refused: it contradicts what exists (a taken name, MAC or address; a state change not allowed)
UNREACHABLE = 5  # the command needs the running daemon and it does not answer (not running, busy, API off)

# The table for --help and the README: code, meaning.
TABLE = (
    (OK, "success"),
    (FAILED, "the operation failed"),
    (USAGE, "bad usage, a malformed argument or a bad configuration file"),
    (NOT_FOUND, "what the command names does not exist (host, reservation, image)"),
    (REFUSED, "refused: it conflicts with what exists (a taken name, MAC or address) or is not allowed"),
    (UNREACHABLE, "the daemon is needed and does not answer (not running, busy)"),
)

# The daemon's answers, by HTTP status: the same kinds as the domain errors the API turned into them.
_BY_STATUS = {400: USAGE, 401: REFUSED, 403: REFUSED, 404: NOT_FOUND, 409: REFUSED, 413: USAGE, 422: USAGE,
              503: UNREACHABLE}


class CommandFailed(RuntimeError):
    """A command cannot go on: the message is for the user, `problems` its details, `code` the exit code
    (one of the above; FAILED unless the cause says otherwise)."""

    def __init__(self, message: str, problems: list[str] | None = None, *, code: int = FAILED) -> None:
        super().__init__(message)
        self.problems = problems or []
        self.code = code


def exit_code(error: BaseException) -> int:
    """The exit code for an error a command let escape."""
    if isinstance(error, CommandFailed):
        return error.code
    if isinstance(error, (Invalid, ConfigError, InvalidName)):
        return USAGE
    if isinstance(error, NotFound):
        return NOT_FOUND
    if isinstance(error, (Conflict, Forbidden, Unauthorized)):
        return REFUSED
    if isinstance(error, ApiError):
        return _BY_STATUS.get(error.status, FAILED)
    if isinstance(error, (ApiUnavailable, RemoteUnavailable)):
        return UNREACHABLE
    if isinstance(error, CertificateRefused):
        return REFUSED
    return FAILED


def message(error: BaseException) -> str:
    """What the user reads after `imageserver: `."""
    if isinstance(error, ApiError):
        return error.message
    if isinstance(error, ConfigError):
        return f"configuration error: {error}"
    return str(error)


def epilog() -> str:
    """The exit code table as `imageserver --help` prints it."""
    return "exit codes:\n" + "".join(f"  {code}  {meaning}\n" for code, meaning in TABLE)
