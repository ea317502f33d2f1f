"""The CLI's exit codes come from one function (appliance/cli/exitcodes.py): each kind of refusal, from the
daemon's API or from a use case run offline, has its own documented code."""

from __future__ import annotations

from pathlib import Path

import pytest

from appliance.cli import exitcodes
from appliance.cli.apiclient import ApiError, ApiUnavailable
from appliance.cli.exitcodes import exit_code
from appliance.cli.main import build_parser
from appliance.config import ConfigError
from domain.errors import Conflict, Forbidden, Invalid, NotFound, Unauthorized
from domain.hostadmin import Clashes

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("error, code", [
    (Invalid("not a MAC address"), 2),
    (ConfigError("dhcp.subnet", "expected a network"), 2),
    (NotFound("no host named 'x'"), 3),
    (Conflict("MAC is host node1's"), 4),
    (Clashes("2 problems", ["a", "b"]), 4),
    (Forbidden("not from its own address"), 4),
    (Unauthorized("no token"), 4),
    (ApiError(400, "malformed"), 2),
    (ApiError(404, "no such host"), 3),
    (ApiError(409, "taken"), 4),
    (ApiError(401, "token"), 4),
    (ApiError(500, "bug"), 1),
    (ApiError(503, "store full"), 5),
    (ApiUnavailable("nothing answers"), 5),
    (exitcodes.CommandFailed("state database: disk I/O error"), 1),
    (exitcodes.CommandFailed("the daemon holds the state dir", code=exitcodes.UNREACHABLE), 5),
    (RuntimeError("anything else"), 1),
])
def test_each_kind_of_error_has_its_code(error: BaseException, code: int) -> None:
    assert exit_code(error) == code


def test_the_codes_are_distinct_and_documented_in_help_and_readme() -> None:
    codes = [code for code, _ in exitcodes.TABLE]
    assert codes == [0, 1, 2, 3, 4, 5]
    help_text = build_parser().format_help()
    readme = (ROOT / "README.md").read_text()
    for code, meaning in exitcodes.TABLE:
        assert f"  {code}  {meaning}" in help_text
        assert f"| {code} | {meaning} |" in readme
