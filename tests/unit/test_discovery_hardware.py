"""Discovery rules that match on a machine's hardware inventory (domain/discovery.py): DMI vendor and product
prefixes, memory, disk count and NIC speed (at least); never without an inventory; the inventory is read
once, and only when a rule's other fields match; the config keys, with errors that name the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from appliance.config import ConfigError, parse_config
from domain.discovery import DiscoveryRule, Hardware, decide_unknown, first_match
from domain.errors import Invalid
from domain.inventory import Disk, Interface, Inventory, Memory, SystemVendor
from domain.power import discovered_bmc_op

MAC = "3c:ec:ef:00:00:01"
BIG = DiscoveryRule(hostname="gpu{n:02}", image="cuda", vendor="supermicro", product="SYS-4029",
                    min_memory_mb=256 * 1024, min_disks=2, min_nic_speed=25000)
DELL = DiscoveryRule(hostname="dell{n}", image="base", vendor="Dell")
ANY = DiscoveryRule(hostname="node{n:03}", image="base", mac_prefix="3c:ec:ef")
SERVER = Hardware(vendor="Supermicro", product="SYS-4029GP-TRT", memory_mb=384 * 1024, disks=2,
                  nic_speed_mbps=100000)


@pytest.mark.parametrize(("hardware", "expected"), [
    (SERVER, BIG),
    (Hardware("Supermicro", "SYS-4029GP-TRT", 128 * 1024, 2, 100000), ANY),  # too little memory
    (Hardware("Supermicro", "SYS-4029GP-TRT", 384 * 1024, 1, 100000), ANY),  # one disk
    (Hardware("Supermicro", "SYS-4029GP-TRT", 384 * 1024, 2, 10000), ANY),  # a 10G NIC
    (Hardware("Supermicro", "SYS-4029GP-TRT", 384 * 1024, 2, None), ANY),  # speed not known
    (Hardware("Supermicro", "SYS-1029U", 384 * 1024, 2, 100000), ANY),  # another product
    (Hardware("Dell Inc.", "PowerEdge R650", 64 * 1024, 4, 25000), DELL),
    (None, ANY),  # no inventory: the hardware rules do not match
])
def test_rules_match_on_the_inventory(hardware: Hardware | None, expected: DiscoveryRule) -> None:
    assert first_match([BIG, DELL, ANY], MAC, 0, "PXEClient", lambda: hardware) == expected


def test_the_inventory_is_read_once_and_only_when_needed() -> None:
    asked: list[int] = []

    def hardware() -> Hardware | None:
        asked.append(1)
        return SERVER

    assert first_match([ANY], MAC, 0, None, hardware) == ANY and asked == [], "no rule needs it"
    other = DiscoveryRule(hostname="x{n}", image="x", mac_prefix="52:54:00", vendor="Supermicro")
    assert first_match([other, ANY], MAC, 0, None, hardware) == ANY and asked == [], "its MAC prefix failed first"
    assert first_match([DELL, BIG], MAC, 0, None, hardware) == BIG and asked == [1], "two rules, one read"
    decision = decide_unknown("auto", [BIG], mac=MAC, arch=0, vendor_class=None, is_host=False, taken=(),
                              hardware=lambda: SERVER)
    assert (decision.kind, decision.name) == ("create", "gpu01")
    held = decide_unknown("auto", [BIG], mac=MAC, arch=0, vendor_class=None, is_host=False, taken=())
    assert held.kind == "hold", "a machine with no inventory waits"


def test_an_inventory_gives_the_facts_rules_match() -> None:
    inv = Inventory(memory=Memory(total=(384 << 30) - (1 << 28), physical_mb=384 * 1024),
                    disks=[Disk("/dev/nvme0n1", 1 << 40), Disk("/dev/nvme1n1", 1 << 40)],
                    interfaces=[Interface("eno1", MAC, speed_mbps=1000), Interface("ens1f0", "x", speed_mbps=100000),
                                Interface("ens1f1", "y")],
                    system_vendor=SystemVendor("Supermicro", "SYS-4029GP-TRT"))
    assert inv.hardware() == SERVER
    assert Inventory(memory=Memory(total=2 << 30)).hardware() == Hardware(None, None, 2048, 0, None)


def test_the_config_keys_and_their_errors() -> None:
    rule = {"hostname": "gpu{n:02}", "image": "cuda", "vendor": "supermicro", "product": "SYS-4029",
            "min_memory_mb": 262144, "min_disks": 2, "min_nic_speed": 25000}
    assert parse_config({"discovery": {"policy": "auto", "rules": [rule]}}).discovery.rules == (BIG,)
    for key, value, said in (("min_memory_mb", -1, "discovery.rules[0].min_memory_mb:"),
                             ("min_disks", "two", "discovery.rules[0].min_disks: expected an integer"),
                             ("vendor", 5, "discovery.rules[0].vendor:")):
        with pytest.raises(ConfigError) as e:
            parse_config({"discovery": {"rules": [{**rule, key: value}]}})
        assert str(e.value).startswith(said), str(e.value)


def test_a_discovered_bmc_is_the_inventorys_address_under_the_rules_scheme() -> None:
    assert Inventory(bmc_address="10.20.0.7").hardware().bmc_address == "10.20.0.7"
    assert discovered_bmc_op("n1", "ipmi", "10.20.0.7", "ADMIN", "pw")[0] == "ipmi://10.20.0.7"
    assert discovered_bmc_op("n1", "redfish", " fd00::7 ", "ADMIN", "pw")[0] == "redfish://[fd00::7]"
    for reported, user, password, words in (("bmc.example; rm -rf /", "ADMIN", "pw", "not an IP address"),
                                            ("10.20.0.7", "", "pw", "user name"),
                                            ("10.20.0.7", "ADMIN", "", "empty"),
                                            ("10.20.0.7", "ADMIN", "pw\nmore", "more than one line")):
        with pytest.raises(Invalid) as e:
            discovered_bmc_op("n1", "ipmi", reported, user, password)
        assert words in str(e.value) and (not password or password not in str(e.value))


def test_a_rule_gives_a_bmc_only_with_scheme_user_and_password_file() -> None:
    assert not ANY.gives_bmc
    rule = DiscoveryRule(hostname="n{n}", image="base", bmc_scheme="ipmi", bmc_username="ADMIN",
                         bmc_password_file=Path("/etc/imageserver/bmc.password"))
    assert rule.gives_bmc and not rule.needs_hardware
