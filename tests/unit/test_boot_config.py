"""[boot] keys the boot path reads: loader and the unknown-machine policy."""

from __future__ import annotations

import pytest

from appliance.config import ConfigError, parse_config
from appliance.daemon.wiring import boot_settings


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


DHCP = {"appliance": {"address": "10.0.0.1"},
        "dhcp": {"enabled": True, "subnet": "10.0.0.0/24", "pool": "10.0.0.100-10.0.0.150"}}


def _uefi_file(boot: dict[str, object], dhcp: dict[str, object] | None = None) -> str:
    from appliance.daemon.dhcp_setup import server_settings

    cfg = parse_config({**DHCP, "boot": boot, "dhcp": {**DHCP["dhcp"], **(dhcp or {})}})
    return server_settings(cfg).boot.uefi_file


def test_uefi_loader_defaults_to_ipxe_and_shim_makes_dhcp_name_shim() -> None:
    assert parse_config({}).boot.uefi_loader == "ipxe"
    assert _uefi_file({}) == "ipxe.efi"
    assert _uefi_file({"uefi_loader": "shim"}) == "shimx64.efi"
    # An explicit [dhcp] uefi_file still wins (e.g. snponly.efi), whatever the loader.
    assert _uefi_file({"uefi_loader": "shim"}, {"uefi_file": "snponly.efi"}) == "snponly.efi"


def test_unknown_uefi_loader_names_the_key() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({"boot": {"uefi_loader": "grub"}})
    assert str(info.value).startswith("boot.uefi_loader:")


def _arm64_boot(boot: dict[str, object], dhcp: dict[str, object] | None = None) -> tuple[str, str]:
    from appliance.daemon.dhcp_setup import server_settings

    cfg = parse_config({**DHCP, "boot": boot, "dhcp": {**DHCP["dhcp"], **(dhcp or {})}})
    settings = server_settings(cfg).boot
    return settings.arm64_file, settings.arm64_http_boot_url


def test_arm64_loader_defaults_to_grub_and_shim_and_arm64_file_name_the_dhcp_file() -> None:
    assert parse_config({}).boot.arm64_loader == "grub"
    assert _arm64_boot({}) == ("grubaa64.efi", "http://{server}:{port}/boot/files/grubaa64.efi")
    assert _arm64_boot({"arm64_loader": "shim"}) == ("shimaa64.efi", "http://{server}:{port}/boot/files/shimaa64.efi")
    assert _arm64_boot({"arm64_loader": "shim"}, {"arm64_file": "grubaa64.efi"})[0] == "grubaa64.efi"
    # the x64 loader choice does not touch arm64's
    assert _arm64_boot({"uefi_loader": "shim"})[0] == "grubaa64.efi"


def test_unknown_arm64_loader_names_the_key() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({"boot": {"arm64_loader": "ipxe"}})
    assert str(info.value).startswith("boot.arm64_loader:")
