"""Discovery: rule matching, the next free name of a pattern, the policy decisions for DHCP and the
boot path, and the [discovery] config section with errors that name the key."""

from __future__ import annotations

import pytest

from appliance.config import ConfigError, parse_config
from domain.discovery import (
    DiscoveryError,
    DiscoveryRule,
    check_pattern,
    decide_unknown,
    dhcp_offers_boot,
    first_match,
    next_name,
    unknown_boot,
)

QEMU = DiscoveryRule(hostname="vm{n:02}", image="demo", mac_prefix="52:54:00")
UEFI = DiscoveryRule(hostname="efi{n}", image="efi", arch=7)
PXE = DiscoveryRule(hostname="node{n:03}", image="base", vendor_class="PXEClient")


@pytest.mark.parametrize(("mac", "arch", "vendor", "expected"), [
    ("52:54:00:12:34:56", 7, "PXEClient:Arch:00007", QEMU),  # first matching rule wins
    ("aa:bb:cc:00:00:01", 7, None, UEFI),
    ("aa:bb:cc:00:00:01", 0, "PXEClient:Arch:00000:UNDI:002001", PXE),
    ("aa:bb:cc:00:00:01", 0, "HTTPClient", None),
    ("aa:bb:cc:00:00:01", None, None, None),
])
def test_first_matching_rule(mac: str, arch: int | None, vendor: str | None, expected: DiscoveryRule | None) -> None:
    assert first_match([QEMU, UEFI, PXE], mac, arch, vendor) == expected


def test_next_free_name_fills_gaps() -> None:
    assert next_name("node{n:03}", set()) == "node001"
    assert next_name("node{n:03}", {"node001", "node002", "node004"}) == "node003"
    assert next_name("vm{n}", lambda name: name in {"vm1"}) == "vm2"


@pytest.mark.parametrize("pattern", ["node", "node{m}", "Node_{n}", "{n:x>70}"])
def test_bad_patterns_are_refused(pattern: str) -> None:
    with pytest.raises(DiscoveryError):
        check_pattern(pattern)


def test_policy_decisions() -> None:
    facts = {"mac": "52:54:00:00:00:01", "arch": 0, "vendor_class": "PXEClient"}
    assert decide_unknown("auto", [QEMU], **facts, is_host=True, taken=()).kind == "known"
    auto = decide_unknown("auto", [UEFI, QEMU], **facts, is_host=False, taken={"vm01"})
    assert (auto.kind, auto.name, auto.rule) == ("create", "vm02", QEMU)
    assert decide_unknown("auto", [UEFI], **facts, is_host=False, taken=()).kind == "hold"
    assert decide_unknown("hold", [QEMU], **facts, is_host=False, taken=()).kind == "hold"
    assert decide_unknown("ignore", [QEMU], **facts, is_host=False, taken=()).kind == "ignore"
    # The boot path: ignore never boots an unknown machine; hold and auto let it wait for its host.
    assert [unknown_boot(p) for p in ("hold", "auto", "ignore")] == ["wait", "wait", "local"]
    assert unknown_boot("hold", "local") == "local"
    # DHCP: boot options for hosts always, for unknown machines unless ignore.
    assert dhcp_offers_boot("ignore", is_host=True) and not dhcp_offers_boot("ignore", is_host=False)
    assert dhcp_offers_boot("hold", is_host=False) and dhcp_offers_boot("auto", is_host=False)


def test_discovery_config_section() -> None:
    cfg = parse_config({"discovery": {"policy": "auto", "rules": [
        {"hostname": "node{n:03}", "image": "demo", "mac_prefix": "52-54-00", "arch": 7, "version": 2,
         "vendor_class": "PXEClient"}]}})
    assert cfg.discovery.policy == "auto"
    assert cfg.discovery.rules == (DiscoveryRule("node{n:03}", "demo", 2, "52:54:00", 7, "PXEClient"),)
    assert parse_config({}).discovery.policy == "hold"


@pytest.mark.parametrize(("section", "message"), [
    ({"policy": "maybe"}, "discovery.policy: 'maybe' is not one of 'hold', 'auto', 'ignore'"),
    ({"policy": "auto"}, "discovery.rules: policy \"auto\" needs at least one"),
    ({"rules": {"hostname": "n{n}"}}, "discovery.rules: expected an array of tables"),
    ({"rules": [{"image": "x"}]}, "discovery.rules[0].hostname: is required"),
    ({"rules": [{"hostname": "n{n}"}]}, "discovery.rules[0].image: is required"),
    ({"rules": [{"hostname": "node", "image": "x"}]}, "discovery.rules[0].hostname: 'node' has no {n}"),
    ({"rules": [{"hostname": "n{n}", "image": "x", "mac_prefix": "52:5"}]}, "discovery.rules[0].mac_prefix:"),
    ({"rules": [{"hostname": "n{n}", "image": "x", "arch": "bios"}]}, "discovery.rules[0].arch: expected an integer"),
    ({"rules": [{"hostname": "n{n}", "image": "x", "colour": 1}]}, "discovery.rules[0].colour: unknown key"),
])
def test_discovery_config_errors_name_the_key(section: dict, message: str) -> None:
    with pytest.raises(ConfigError) as e:
        parse_config({"discovery": section})
    assert str(e.value).startswith(message)


def test_auto_create_limit_caps_per_window_and_in_all() -> None:
    from domain.discovery import AutoCreateLimit

    lim = AutoCreateLimit(max_hosts=5, per_window=2, window=60.0)
    hosts = [0]
    made = 0
    logged = []
    for t in range(10):
        refusal = lim.refusal(float(t), lambda: hosts[0])
        if refusal is None:
            lim.created(float(t))
            hosts[0] += 1
            made += 1
        elif refusal[1]:
            logged.append(refusal[0])
    assert made == 2 and len(logged) == 1 and "auto_max_per_window=2" in logged[0]
    for t in range(60, 400, 10):  # later windows, until the total cap
        if lim.refusal(float(t), lambda: hosts[0]) is None:
            lim.created(float(t))
            hosts[0] += 1
    assert hosts[0] == 5
    refusal = lim.refusal(1000.0, lambda: hosts[0])
    assert refusal is not None and "auto_max_hosts=5" in refusal[0] and refusal[1]
    assert lim.refusal(1001.0, lambda: hosts[0]) == (refusal[0], False)  # once per window
