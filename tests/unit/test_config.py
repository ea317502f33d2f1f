"""The config loader: defaults, the example file, and errors that name the key."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from ipaddress import IPv4Address
from pathlib import Path

import msgspec
import pytest

from appliance.config import ConfigError, Document, load_config, parse_config

ROOT = Path(__file__).resolve().parents[2]

GOOD = {
    "appliance": {"state_dir": "/tmp/x", "address": "10.0.0.1"},
    "dhcp": {"subnet": "10.0.0.0/24", "pool": "10.0.0.100-10.0.0.199", "router": "10.0.0.1"},
}


def test_example_config_is_valid_and_documented() -> None:
    cfg = load_config(ROOT / "appliance" / "data" / "imageserver.toml")
    assert cfg.dhcp.enabled and cfg.dhcp.mode == "authoritative"
    assert cfg.dhcp.subnets[0].pool_first == IPv4Address("10.0.0.100")
    assert cfg.appliance.interface == "eth1"


def test_empty_config_gives_defaults() -> None:
    cfg = parse_config({})
    assert not cfg.dhcp.enabled
    assert cfg.http.port == 80 and cfg.tftp.port == 69
    assert cfg.appliance.state_dir == Path("/var/lib/imageserver")


def test_inline_subnet_enables_dhcp() -> None:
    cfg = parse_config(GOOD)
    assert cfg.dhcp.enabled
    assert cfg.dhcp.subnets[0].lease_time == 3600


@pytest.mark.parametrize(
    ("patch", "key", "words"),
    [
        ({"dhcp": {**GOOD["dhcp"], "pool": "10.0.0.300-10.0.0.1"}}, "dhcp.pool", "not an IPv4 address"),
        ({"dhcp": {**GOOD["dhcp"], "pool": "10.0.0.200-10.0.0.100"}}, "dhcp.pool", "first address is after"),
        ({"dhcp": {**GOOD["dhcp"], "pool": "10.0.1.1-10.0.1.9"}}, "dhcp.pool", "outside subnet"),
        ({"dhcp": {**GOOD["dhcp"], "pool": "10.0.0.1-10.0.0.9"}}, "dhcp.pool", "own address"),
        ({"dhcp": {**GOOD["dhcp"], "mode": "fast"}}, "dhcp.mode", "not one of"),
        ({"dhcp": {**GOOD["dhcp"], "lease_time": "1h"}}, "dhcp.lease_time", "integer"),
        ({"dhcp": {**GOOD["dhcp"], "lease_tme": 60}}, "dhcp.lease_tme", "unknown key"),
        ({"http": {"port": 70000}}, "http.port", "out of range"),
        ({"tftp": {"enabled": "yes"}}, "tftp.enabled", "true or false"),
        ({"appliance": {"address": "10.0.0.1", "domain": "bad domain!"}}, "appliance.domain", "DNS name"),
        (
            {"dhcp": {**GOOD["dhcp"], "subnets": [{"subnet": "10.1.1.0/16", "pool": "10.1.5.1-10.1.5.9"}]}},
            "dhcp.subnets[0].subnet",
            "not an IPv4 network",
        ),
        (
            {"dhcp": {**GOOD["dhcp"], "subnets": [{"subnet": "10.0.0.0/23", "pool": "10.0.1.1-10.0.1.9"}]}},
            "dhcp.subnets",
            "overlap",
        ),
        ({"bogus": {}}, "bogus", "unknown key"),
    ],
)
def test_bad_values_name_the_key(patch: dict, key: str, words: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config({**GOOD, **patch})
    assert err.value.key == key
    assert words in str(err.value)
    assert str(err.value).startswith(key + ":")


def test_dhcp_needs_our_address() -> None:
    with pytest.raises(ConfigError) as err:
        parse_config({"dhcp": GOOD["dhcp"]})
    assert err.value.key == "appliance.address"


def test_toml_syntax_error_and_missing_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[dhcp\nsubnet=1")
    with pytest.raises(ConfigError, match="TOML syntax error"):
        load_config(bad)
    with pytest.raises(ConfigError, match="no such file"):
        load_config(tmp_path / "missing.toml")


def test_cli_exits_2_with_key_on_bad_config(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[http]\nport = "eighty"\n')
    proc = subprocess.run(
        [sys.executable, "-m", "appliance.cli", "serve", "--config", str(bad)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 2
    assert "http.port: expected an integer" in proc.stderr


@pytest.mark.parametrize(
    ("patch", "key", "words"),
    [
        ({"dhcp": {**GOOD["dhcp"], "decline_max_share": 1.5}}, "dhcp.decline_max_share", "share from 0 to 1"),
        ({"discovery": {"max_machines": 0}}, "discovery.max_machines", "out of range"),
        ({"discovery": {"machine_expiry": 5}}, "discovery.machine_expiry", "out of range"),
        ({"discovery": {"auto_max_hosts": -1}}, "discovery.auto_max_hosts", "out of range"),
        ({"discovery": {"auto_max_per_window": "many"}}, "discovery.auto_max_per_window", "integer"),
        ({"discovery": {"auto_window": 0}}, "discovery.auto_window", "out of range"),
    ],
)
def test_flood_caps_are_checked_and_name_the_key(patch: dict, key: str, words: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config({**GOOD, **patch})
    assert err.value.key == key and words in str(err.value)


def test_flood_caps_have_sane_defaults() -> None:
    cfg = parse_config(GOOD)
    assert cfg.dhcp.decline_max_share == 0.1
    d = cfg.discovery
    assert (d.max_machines, d.auto_max_hosts, d.auto_max_per_window) == (4096, 256, 64)
    assert d.machine_expiry == 7 * 86400 and d.auto_window == 3600


def _example_sections() -> dict[str, str]:
    """The example file's text under each [section] header (its [[section.list]] tables included; a section
    shown commented out counts too)."""
    text = (ROOT / "appliance" / "data" / "imageserver.toml").read_text()
    out: dict[str, str] = {}
    for block in re.split(r"^(?=(?:# )?\[[a-z])", text, flags=re.M):
        m = re.match(r"(?:# )?\[([a-z]+)\]", block)
        if m:
            out[m.group(1)] = block
    return out


def test_example_documents_every_key_with_its_default() -> None:
    """appliance/data/imageserver.toml is the reference: every key of every section (as declared in
    domain/settings.py) is there, and a value not marked "example" (nor explained as a default that
    depends on other keys) is the key's default."""
    sections = _example_sections()
    for section in msgspec.structs.fields(Document):
        text = sections.get(section.name)
        assert text is not None, f"[{section.name}] is missing from the example"
        for field in msgspec.structs.fields(section.default_factory):
            if field.name in ("subnets", "rules"):  # arrays of tables: shown as [[section.name]]
                assert f"[[{section.name}.{field.name}]]" in text
                continue
            m = re.search(rf"^#? ?{field.name} = (.*?)\s*(?:#\s*(.*))?$", text, flags=re.M)
            assert m is not None, f"{section.name}.{field.name} is not in the example"
            value, note = m.group(1), m.group(2) or ""
            if "example" in note or "default" in note or m.group(0).startswith("#"):
                continue
            parsed = parse_config({**GOOD, section.name: {**GOOD.get(section.name, {}), field.name: tomllib.loads(
                f"v = {value}")["v"]}})
            default = field.default if field.default is not msgspec.NODEFAULT else field.default_factory()
            assert getattr(getattr(parsed, section.name), field.name) == default, f"{section.name}.{field.name}"


def test_discovery_inspect_is_off_by_default_and_needs_a_holding_policy() -> None:
    assert parse_config(GOOD).discovery.inspect is False
    assert parse_config({**GOOD, "discovery": {"inspect": True}}).discovery.inspect is True
    with pytest.raises(ConfigError) as e:
        parse_config({**GOOD, "discovery": {"inspect": True, "policy": "ignore"}})
    assert e.value.key == "discovery.inspect"
    with pytest.raises(ConfigError) as e:
        parse_config({**GOOD, "discovery": {"inspect": True}, "boot": {"unknown": "local"}})
    assert e.value.key == "discovery.inspect" and 'unknown = "wait"' in str(e.value)


def test_a_rules_bmc_defaults_come_whole_with_a_private_password_file(tmp_path: Path) -> None:
    secret = tmp_path / "bmc.password"
    secret.write_text("pw\n")
    secret.chmod(0o600)
    rule = {"hostname": "node{n}", "image": "base", "bmc_scheme": "ipmi", "bmc_username": "ADMIN",
            "bmc_password_file": str(secret)}
    cfg = parse_config({**GOOD, "discovery": {"policy": "auto", "rules": [rule]}})
    assert cfg.discovery.rules[0].gives_bmc and cfg.discovery.rules[0].bmc_password_file == secret
    for patch, key, words in (({"bmc_password_file": None}, "discovery.rules[0].bmc_scheme", "need bmc_scheme"),
                              ({"bmc_scheme": "telnet"}, "discovery.rules[0].bmc_scheme", ""),
                              ({"bmc_password_file": str(tmp_path / "none")}, "discovery.rules[0].bmc_password_file",
                               "cannot read")):
        bad = {k: v for k, v in {**rule, **patch}.items() if v is not None}
        with pytest.raises(ConfigError) as e:
            parse_config({**GOOD, "discovery": {"policy": "auto", "rules": [bad]}})
        assert e.value.key == key and words in str(e.value), str(e.value)
    secret.chmod(0o644)
    with pytest.raises(ConfigError) as e:
        parse_config({**GOOD, "discovery": {"policy": "auto", "rules": [rule]}})
    assert "readable by others" in str(e.value)
