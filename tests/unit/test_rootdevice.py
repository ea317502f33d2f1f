"""Root-device hints (domain/rootdevice.py): how they are written, and the one rule that picks a disk from a
machine's inventory; never a guess (no match, or several without smallest/largest, is a failure naming the
candidates). And the inventory body's shape (domain/inventory.py): its bounds, what it ignores, its summary."""

from __future__ import annotations

import pytest

from domain.bodies import parse_body
from domain.errors import Invalid
from domain.inventory import Disk, Inventory
from domain.rootdevice import (
    DiskHints,
    DisksChoice,
    RootDeviceHints,
    choose,
    choose_disks,
    parse_disk_hints,
    parse_hints,
    parse_size,
)

GiB = 1 << 30
DISKS = [
    Disk("/dev/nvme0n1", 480 * GiB, "Samsung SSD 980", "S5GXNF0R1", "eui.0025385b01", False, "pci-0000:01:00.0-nvme-1"),
    Disk("/dev/nvme1n1", 960 * GiB, "Samsung SSD 980", "S5GXNF0R2", "eui.0025385b02", False, "pci-0000:02:00.0-nvme-1"),
    Disk("/dev/sda", 4000 * GiB, "WDC WD40EFRX", "WD-WCC4N1", "naa.50014ee2b5f3c0de", True,
         "pci-0000:00:1f.2-scsi-0:0:0:0"),
]


@pytest.mark.parametrize(("text", "disk"), [
    ("serial=S5GXNF0R2", "/dev/nvme1n1"),
    (" serial = WD-WCC4N1 ", "/dev/sda"),
    ("wwn=EUI.0025385B01", "/dev/nvme0n1"),  # wwn ignores case
    ("by_path=/dev/disk/by-path/pci-0000:02:00.0-nvme-1", "/dev/nvme1n1"),
    ("by_path=pci-0000:00:1f.2-scsi-0:0:0:0", "/dev/sda"),
    ("model=wdc wd40efrx", "/dev/sda"),
    ("rotational=true", "/dev/sda"),
    ("rotational=false,smallest", "/dev/nvme0n1"),
    ("rotational=false,largest", "/dev/nvme1n1"),
    ("size>=500", "/dev/nvme1n1,/dev/sda"),  # plain numbers are GiB: two match, no pick
    ("size>=500,size<=1T", "/dev/nvme1n1"),
    ("size=480G", "/dev/nvme0n1"),
    ("size=3T", "/dev/sda"),  # whole units: 4000 GiB is 3.9 TiB
    ("size=4294967296000B", "/dev/sda"),
    ("size<=515396075520B", "/dev/nvme0n1"),  # 480 GiB in bytes
    ("size>=1000GB,smallest", "/dev/nvme1n1"),  # decimal units: 960 GiB is 1031 GB, 480 GiB is not 1000 GB
    ("largest", "/dev/sda"),
    ("smallest", "/dev/nvme0n1"),
    ("model=Samsung SSD 980,serial=S5GXNF0R1", "/dev/nvme0n1"),
])
def test_hints_choose_the_disk(text: str, disk: str) -> None:
    chosen = choose(parse_hints(text), DISKS)
    if "," in disk:
        assert chosen.disk is None and chosen.failure is not None
        said = f"2 disks match the root-device hints {parse_hints(text).text()} ({disk.replace(',', ', ')})"
        assert chosen.failure.startswith(said)
        assert "add a term, or smallest or largest" in chosen.failure
    else:
        assert chosen == choose(parse_hints(text), DISKS) and chosen.disk == disk and chosen.failure is None


def test_no_match_fails_naming_every_candidate() -> None:
    chosen = choose(parse_hints("serial=NOPE"), DISKS)
    assert chosen.disk is None
    assert chosen.failure == (
        "no disk matches the root-device hints serial=NOPE; candidates: "
        "/dev/nvme0n1 (480.0 GiB, serial S5GXNF0R1, wwn eui.0025385b01, model Samsung SSD 980, "
        "by_path pci-0000:01:00.0-nvme-1, non-rotational); "
        "/dev/nvme1n1 (960.0 GiB, serial S5GXNF0R2, wwn eui.0025385b02, model Samsung SSD 980, "
        "by_path pci-0000:02:00.0-nvme-1, non-rotational); "
        "/dev/sda (3.9 TiB, serial WD-WCC4N1, wwn naa.50014ee2b5f3c0de, model WDC WD40EFRX, "
        "by_path pci-0000:00:1f.2-scsi-0:0:0:0, rotational)")
    assert choose(parse_hints("serial=S5GXNF0R1,rotational=true"), DISKS).disk is None, "every term must match"
    assert choose(parse_hints("largest"), []).failure == ("no disk matches the root-device hints largest; "
                                                          "candidates: none")
    assert choose(parse_hints("serial=x"), [Disk("/dev/vda", GiB)]).failure.endswith("/dev/vda (1.0 GiB)")  # type: ignore[union-attr]


def test_no_hints_leave_the_installer_its_own_order() -> None:
    assert choose(None, DISKS).disk is None and choose(None, DISKS).failure is None
    assert choose(RootDeviceHints(), DISKS).failure is None


def test_a_disk_without_the_value_does_not_match_it() -> None:
    bare = [Disk("/dev/vda", 10 * GiB)]
    for text in ("serial=X", "wwn=X", "model=X", "by_path=X", "rotational=false"):
        assert choose(parse_hints(text), bare).disk is None, text


@pytest.mark.parametrize(("text", "said"), [
    ("colour=red", "unknown key 'colour'"),
    ("serial>=5", "only size takes >= or <="),
    ("serial=", "no value"),
    ("size>=lots", "a number with K, M, G, T"),
    ("size>=10Q", "a number with K, M, G, T"),
    ("rotational=maybe", "rotational is true or false"),
    ("smallest,largest", "smallest and largest together"),
    ("size>=2T,size<=1T", "size>= is larger than size<="),
    ("just words", "not KEY=VALUE"),
    ("serial=" + "x" * 2000, "longer than 1024 characters"),
])
def test_wrong_hints_are_refused_naming_the_term(text: str, said: str) -> None:
    with pytest.raises(Invalid, match=said):
        parse_hints(text)


def test_hints_are_stored_and_shown_in_the_operators_spelling() -> None:
    hints = parse_hints("largest, size>=1.5T , rotational=0, serial=AB C,by_path=pci-1")
    assert hints.text() == "serial=AB C,by_path=pci-1,size>=1536G,rotational=false,largest"
    assert RootDeviceHints.from_json(hints.json()) == hints
    assert parse_hints(hints.text()) == hints
    assert parse_hints("size=100").text() == "size=100G"
    assert parse_hints("size=500GB").text() == "size=500GB" and parse_hints("size>=500GB").text() == "size>=500GB"
    assert parse_hints("size=1024M") == RootDeviceHints(size_min=GiB, size_max=GiB + (1 << 20) - 1)
    assert parse_size("512M") == (512 << 20, 1 << 20) and parse_size("1TB") == (10**12, 10**12)
    assert parse_size("7") == (7 * GiB, GiB)
    with pytest.raises(Invalid, match="whole number of units"):
        parse_hints("size=1.5T")


def test_inventory_body_bounds_and_unknown_keys() -> None:
    body = {"disks": [{"name": "/dev/vda", "size": GiB, "serial": "A", "colour": "red"}], "lldp": {}}
    inv = parse_body(Inventory, body, unknown="ignore")
    assert inv.disks == [Disk("/dev/vda", GiB, serial="A")] and inv.summary() == "1 disk, 0 NICs"
    assert Inventory.from_json(inv.json()) == inv
    with pytest.raises(Invalid, match=r'"disks\[0\].size" must be an integer, not a string'):
        parse_body(Inventory, {"disks": [{"name": "/dev/vda", "size": "1G"}]}, unknown="ignore")
    with pytest.raises(Invalid, match=r"disks\[0\].size"):
        parse_body(Inventory, {"disks": [{"name": "/dev/vda", "size": -1}]}, unknown="ignore")
    with pytest.raises(Invalid, match="disks"):
        parse_body(Inventory, {"disks": [{"name": f"/dev/d{i}", "size": 1} for i in range(257)]}, unknown="ignore")
    with pytest.raises(Invalid, match=r"cpu.flags\[0\]"):
        parse_body(Inventory, {"cpu": {"flags": ["x" * 65]}}, unknown="ignore")


# --------------------------------------------------------------------------- several disks: RAID and LVM members


def test_disk_hints_name_each_disk_of_a_layout_in_its_order() -> None:
    hints = parse_disk_hints(" serial=WD-WCC4N1 ; rotational=false,largest")
    assert hints.text() == "serial=WD-WCC4N1;rotational=false,largest"
    assert choose_disks(hints, DISKS) == DisksChoice(("/dev/sda", "/dev/nvme1n1"))
    # whatever order the kernel found them in
    assert choose_disks(hints, list(reversed(DISKS))) == DisksChoice(("/dev/sda", "/dev/nvme1n1"))
    # each set chooses among the disks the earlier sets left: the two smallest, smallest first
    assert choose_disks(parse_disk_hints("smallest;smallest"), DISKS).disks == ("/dev/nvme0n1", "/dev/nvme1n1")
    assert choose_disks(parse_disk_hints("rotational=false,smallest;rotational=false,smallest"),
                        DISKS).disks == ("/dev/nvme0n1", "/dev/nvme1n1")
    # one set: the root device alone, as before
    assert choose_disks(parse_disk_hints("serial=S5GXNF0R1"), DISKS) == DisksChoice(("/dev/nvme0n1",))
    assert choose_disks(None, DISKS) == DisksChoice()


def test_a_member_no_disk_matches_fails_naming_the_layouts_disk_and_the_candidates() -> None:
    chosen = choose_disks(parse_disk_hints("serial=S5GXNF0R1;serial=NOPE"), DISKS)
    assert chosen.disks == () and chosen.failure is not None
    assert chosen.failure.startswith("disk 1 of the image's layout (disks /dev/nvme0n1 went to the disks before it): "
                                     "no disk matches the root-device hints serial=NOPE; candidates: /dev/nvme1n1 ")
    assert "/dev/sda (3.9 TiB" in chosen.failure and "serial S5GXNF0R1" not in chosen.failure
    # two sets wanting the one disk: the second finds none left, never the same disk twice
    chosen = choose_disks(parse_disk_hints("rotational=true;rotational=true"), DISKS)
    assert chosen.disks == () and chosen.failure is not None and chosen.failure.startswith("disk 1 of the image's")
    # ambiguous for one member: a failure too
    chosen = choose_disks(parse_disk_hints("rotational=true;rotational=false"), DISKS)
    assert chosen.failure is not None and "2 disks match" in chosen.failure


def test_disk_hints_are_stored_as_before_for_one_disk_and_as_a_list_for_several() -> None:
    one = parse_disk_hints("serial=A,smallest")
    assert one.json() == parse_hints("serial=A,smallest").json()  # what a host's hints always were
    assert DiskHints.from_json(parse_hints("serial=A").json()) == parse_disk_hints("serial=A")
    two = parse_disk_hints("serial=A;size>=100G,smallest")
    assert two.json().startswith("[") and DiskHints.from_json(two.json()) == two
    with pytest.raises(Invalid, match="disk 1: root-device hint 'colour=red'"):
        parse_disk_hints("serial=A;colour=red")
    with pytest.raises(Invalid, match="no root-device hints for disk 1"):
        parse_disk_hints("serial=A; ;")
    with pytest.raises(Invalid, match="at most 32"):
        parse_disk_hints(";".join(["smallest"] * 33))
