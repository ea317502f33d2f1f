"""[boot] keys the boot path reads: loader and the unknown-machine policy."""

from __future__ import annotations

import pytest

from appliance.config import ConfigError, parse_config
from appliance.wiring import boot_settings


def test_loader_defaults_to_ipxe_and_accepts_pxelinux() -> None:
    assert parse_config({}).boot.loader == "ipxe"
    assert boot_settings(parse_config({})).via_pxelinux is False
    cfg = parse_config({"boot": {"loader": "pxelinux", "unknown": "local", "poll_seconds": 9}})
    settings = boot_settings(cfg)
    assert settings.via_pxelinux is True
    assert (settings.policy.unknown, settings.policy.poll_seconds) == ("local", 9)


def test_unknown_loader_names_the_key() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({"boot": {"loader": "grub"}})
    assert str(info.value).startswith("boot.loader:")
