"""[http] and [tftp] resource-limit keys (issue 14): defaults, range errors that name the key, and the
HTTP caps held under the process' descriptor limit."""

from __future__ import annotations

import resource
from pathlib import Path

import pytest

from appliance.config import ConfigError, parse_config
from appliance.daemon.wiring import http_limits
from services.tftp import TftpServer


def test_defaults() -> None:
    cfg = parse_config({})
    assert (cfg.http.max_connections, cfg.http.max_connections_per_client) == (1000, 32)
    assert (cfg.http.idle_timeout, cfg.http.header_timeout) == (15.0, 10.0)
    assert (cfg.tftp.max_transfers_per_client, cfg.tftp.max_timeout, cfg.tftp.stall_timeout) == (8, 5, 30.0)
    limits = TftpServer(root=Path("/nonexistent"), settings=cfg.tftp).settings  # the section is the settings
    assert (limits.max_transfers_per_client, limits.max_timeout, limits.stall_timeout) == (8, 5, 30.0)


@pytest.mark.parametrize(
    ("section", "key", "value", "words"),
    [
        ("http", "max_connections", 0, "out of range"),
        ("http", "max_connections_per_client", "many", "integer"),
        ("http", "idle_timeout", 0, "out of range"),
        ("http", "header_timeout", "10s", "seconds"),
        ("tftp", "max_transfers_per_client", 0, "out of range"),
        ("tftp", "max_timeout", 256, "out of range"),
        ("tftp", "stall_timeout", 0.5, "out of range"),
    ],
)
def test_bad_values_name_the_key(section: str, key: str, value: object, words: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config({section: {key: value}})
    assert err.value.key == f"{section}.{key}" and words in str(err.value)


def test_http_caps_stay_under_the_descriptor_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (1024, hard))
        limits = http_limits(parse_config({"http": {"max_connections": 100_000}}))
        # Half the descriptors, two a connection (a socket and the file it streams: issue 24).
        assert limits.max_connections == 256 and limits.backlog == 128
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_serve_raises_the_soft_nofile_limit_to_the_hard_one() -> None:
    from appliance.daemon.fdlimit import raise_nofile

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))
        result = raise_nofile(cap=4096)
        expected = 4096 if hard == resource.RLIM_INFINITY else min(hard, 4096)
        assert (result.before, result.soft) == (256, expected)
        assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] == expected
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
