"""[rsyncd] max_connections: rendered as a daemon-wide cap (one lock file for all modules), refusals parsed."""

from __future__ import annotations

import tomllib

import pytest

from appliance.config import Config, ConfigError, parse_config
from protocols.rsyncd import Module, RsyncdConfigError, TransferLog, render_config

MOD = [Module("web_v1", "/srv/images/web/v1", "web version 1", "web", 1)]


def test_max_connections_goes_into_the_global_section_with_one_lock_file() -> None:
    text = render_config(MOD, ["10.0.0.0/24"], max_connections=2, lock_file="/var/lib/is/rsyncd.lock")
    glob = text.split("[web_v1]")[0]
    assert "max connections = 2\n" in glob and "lock file = /var/lib/is/rsyncd.lock\n" in glob


def test_no_limit_writes_no_limit_and_a_bad_lock_file_is_refused() -> None:
    assert "max connections" not in render_config(MOD, ["10.0.0.0/24"])
    with pytest.raises(RsyncdConfigError, match="lock file"):
        render_config(MOD, ["10.0.0.0/24"], max_connections=2, lock_file="relative.lock")
    with pytest.raises(RsyncdConfigError, match="max connections"):
        render_config(MOD, ["10.0.0.0/24"], max_connections=-1, lock_file="/x.lock")


def test_a_refused_client_is_a_busy_event_and_running_transfers_are_counted() -> None:
    log = TransferLog()
    feed = [
        "2026/12/02 15:27:26 [100] connect from localhost (10.0.0.20)",
        "2026/12/02 15:27:26 [100] rsync on web_v1/ from node1 (10.0.0.20)",
        "2026/12/02 15:27:27 [101] connect from localhost (10.0.0.21)",
        "2026/12/02 15:27:27 [101] rsync allowed access on module web_v1 from localhost (10.0.0.21)",
    ]
    for line in feed:
        assert log.feed(line, 1.0) == []
    assert log.active() == 1
    assert log.feed("2026/12/02 15:27:27 [101] max connections (1) reached", 1.0) == [
        {"event": "busy", "limit": 1, "client": "10.0.0.21"}]
    assert log.active() == 1 and 101 not in log.sessions


def load_text(text: str) -> Config:
    return parse_config(tomllib.loads(text))


def test_config_key_default_range_and_error() -> None:
    assert load_text("").rsyncd.max_connections == 32
    assert load_text("[rsyncd]\nmax_connections = 0\n").rsyncd.max_connections == 0
    with pytest.raises(ConfigError, match="max_connections"):
        load_text("[rsyncd]\nmax_connections = -3\n")
