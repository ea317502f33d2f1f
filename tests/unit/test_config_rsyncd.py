"""The [rsyncd] config section: defaults, validation, and the key named in errors."""

from __future__ import annotations

from ipaddress import IPv4Network

import pytest

from appliance.config import ConfigError, parse_config


def test_rsyncd_defaults_enabled_on_873_with_no_explicit_allow_list() -> None:
    cfg = parse_config({})
    assert cfg.rsyncd.enabled is True
    assert cfg.rsyncd.port == 873
    assert cfg.rsyncd.hosts_allow == ()


def test_rsyncd_section_is_read() -> None:
    cfg = parse_config({"rsyncd": {"enabled": False, "port": 8873, "hosts_allow": ["10.0.0.0/24", "192.0.2.7"]}})
    assert cfg.rsyncd.enabled is False
    assert cfg.rsyncd.port == 8873
    assert cfg.rsyncd.hosts_allow == (IPv4Network("10.0.0.0/24"), IPv4Network("192.0.2.7/32"))


@pytest.mark.parametrize(("section", "key"), [
    ({"port": 0}, "rsyncd.port"),
    ({"port": "873"}, "rsyncd.port"),
    ({"enabled": "yes"}, "rsyncd.enabled"),
    ({"hosts_allow": ["10.0.0.0/33"]}, "rsyncd.hosts_allow[0]"),
    ({"hosts_allow": 5}, "rsyncd.hosts_allow"),
    ({"prot": 873}, "rsyncd.prot"),
])
def test_rsyncd_errors_name_the_key(section: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({"rsyncd": section})
    assert info.value.key == key
