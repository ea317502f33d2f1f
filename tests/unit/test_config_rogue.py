"""[dhcp] rogue_probe and allow_rogue: defaults, values, and errors naming the key."""

from __future__ import annotations

import tomllib

import pytest

from appliance.config import Config, ConfigError, parse_config

BASE = """
[appliance]
address = "10.0.0.1"
[dhcp]
subnet = "10.0.0.0/24"
pool = "10.0.0.100-10.0.0.199"
"""


def parse(text: str) -> Config:
    return parse_config(tomllib.loads(text))


def test_defaults_probe_for_three_seconds_and_refuse_the_pool_next_to_another_server() -> None:
    cfg = parse(BASE)
    assert cfg.dhcp.rogue_probe == 3.0
    assert cfg.dhcp.allow_rogue is False


def test_values_are_read() -> None:
    cfg = parse(BASE + "allow_rogue = true\nrogue_probe = 0\n")
    assert cfg.dhcp.allow_rogue is True
    assert cfg.dhcp.rogue_probe == 0.0


@pytest.mark.parametrize(("line", "key"), [("allow_rogue = \"yes\"", "dhcp.allow_rogue"),
                                           ("rogue_probe = -1", "dhcp.rogue_probe"),
                                           ("rogue_probe = 60", "dhcp.rogue_probe")])
def test_bad_values_name_the_key(line: str, key: str) -> None:
    with pytest.raises(ConfigError) as e:
        parse(BASE + line + "\n")
    assert e.value.key == key
