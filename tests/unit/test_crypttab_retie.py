"""The installer reties the image's /etc/crypttab to the disks it recreated: a random-key volume (swap)
on a recreated partition is named by the partition's new PARTUUID, a LUKS volume on one is dropped
(its data is not on the new machine) with a log line, and entries on other devices stay. The generated
script's crypttab step runs in sh against a real partition table (sfdisk on a disk image file)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from appliance.images.autoinstall import ScriptSettings, generate
from appliance.images.crypttab import plan_crypttab
from appliance.images.layout import read_layout
from state.images import ImageVersion
from tests.installer_sh import prelude

pytestmark = pytest.mark.skipif(shutil.which("sfdisk") is None, reason="sfdisk (fdisk package) is not installed")
LUKS_UUID = "3f1d2c4b-5a69-4e7f-8a9b-0c1d2e3f4a5b"


def image(tmp_path: Path, label: str) -> tuple[ImageVersion, Path]:
    """A master with root, a LUKS data partition and a random-key swap partition on one disk."""
    disk = tmp_path / "master.img"
    with open(disk, "wb") as f:
        f.truncate(256 << 20)
    table = f"label: {label}\n,64M,L\n,64M,L\n,,S\n"
    subprocess.run(["sfdisk", "-q", str(disk)], input=table, text=True, check=True, capture_output=True)
    dump = subprocess.run(["sfdisk", "--dump", str(disk)], text=True, check=True, capture_output=True).stdout
    dump = dump.replace(str(disk), "/dev/vda")
    si = tmp_path / "tree/etc/systemimager"
    (si / "disks").mkdir(parents=True)
    (si / "disks/vda.sfdisk").write_text(dump)
    (si / "disks/order").write_text(f"vda {256 << 20}\n")
    lsblk = {"blockdevices": [{"name": "vda", "path": "/dev/vda", "type": "disk", "children": [
        {"name": "vda1", "path": "/dev/vda1", "type": "part", "fstype": "ext4", "label": None,
         "uuid": "0b5d4d6c-3b7a-4d1e-9d6b-9a0c7c1e2f3a"},
        {"name": "vda2", "path": "/dev/vda2", "type": "part", "fstype": "crypto_LUKS", "label": None,
         "uuid": LUKS_UUID},
        {"name": "vda3", "path": "/dev/vda3", "type": "part", "fstype": None, "label": None, "uuid": None}]}]}
    (si / "disks/vda.lsblk.json").write_text(json.dumps(lsblk))
    layout = read_layout(si)
    (tmp_path / "tree/etc/fstab").write_text("/dev/vda1 / ext4 defaults 0 1\n"
                                             "/dev/mapper/cswap none swap sw,nofail 0 0\n")
    partuuid3 = layout.disks[0].partuuid(layout.disks[0].partitions[2])
    (tmp_path / "tree/etc/crypttab").write_text(
        "# <target name> <source device> <key file> <options>\n"
        f"data UUID={LUKS_UUID} none luks,discard\n"
        f"cswap PARTUUID={partuuid3} /dev/urandom swap,cipher=aes-xts-plain64,size=256\n"
        "backup UUID=aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee none luks,nofail\n")
    return ImageVersion("enc", 1, str(tmp_path / "tree"), 0.0, layout=layout.to_json()), disk


@pytest.mark.parametrize("label", ["gpt", "dos"])
def test_crypttab_entries_on_recreated_partitions_are_retied_or_dropped(tmp_path: Path, label: str) -> None:
    iv, master_disk = image(tmp_path, label)
    text, the_plan = generate(iv, ScriptSettings())
    lines = plan_crypttab((Path(iv.path) / "etc/crypttab").read_text(), the_plan.layout, {0})
    assert [(c.name, c.action) for c in lines if c.name] == [("data", "drop"), ("cswap", "retie")]
    if shutil.which("shellcheck"):
        script = tmp_path / "enc.master"
        script.write_text(text)
        check = subprocess.run(["shellcheck", "-s", "sh", str(script)], capture_output=True, text=True)
        assert check.returncode == 0, check.stdout
    # The generated crypttab step, on a disk partitioned anew (new GUIDs / a new MBR disk id).
    step = text[text.index('stage crypttab "'):]
    step = step[:step.index("\nstage ", 1)]
    target = tmp_path / "target"
    (target / "etc").mkdir(parents=True)
    (target / "etc/crypttab").write_text("old\n")
    new_disk = tmp_path / "new.img"
    with open(new_disk, "wb") as f:
        f.truncate(512 << 20)
    subprocess.run(["sfdisk", "-q", str(new_disk)], input=f"label: {label}\n,64M,L\n,64M,L\n,,S\n", text=True,
                   check=True, capture_output=True)
    preamble = prelude("common", "report", "disks")
    run = subprocess.run(["sh", "-euc", preamble + step], text=True, capture_output=True,
                         env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "DISK0": str(new_disk), "TARGET": str(target)})
    assert run.returncode == 0, run.stderr
    new = (target / "etc/crypttab").read_text().splitlines()
    blkid = subprocess.run(["sfdisk", "--dump", str(new_disk)], text=True, capture_output=True, check=True).stdout
    if label == "gpt":
        want = re.findall(r"^\S+3 : .*uuid=([0-9A-F-]+)", blkid, re.M)[0].lower()
    else:
        want = re.search(r"^label-id: 0x([0-9a-f]+)", blkid, re.M).group(1) + "-03"
    old = subprocess.run(["sfdisk", "--dump", str(master_disk)], text=True, capture_output=True, check=True).stdout
    assert want not in old.lower()
    assert new[0].startswith("# <target name>")
    assert new[1].startswith("# dropped by the imageserver install")
    assert new[1].endswith(f"data UUID={LUKS_UUID} none luks,discard")
    assert new[2] == f"cswap\tPARTUUID={want}\t/dev/urandom\tswap,cipher=aes-xts-plain64,size=256"
    assert new[3] == "backup UUID=aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee none luks,nofail"  # not on a recreated disk
    assert "crypttab: data (UUID=" in run.stdout and "entry dropped" in run.stdout
    assert "crypttab: cswap (PARTUUID=" in run.stdout and f"new PARTUUID {want}" in run.stdout


def test_an_image_without_crypttab_gets_no_crypttab_step(tmp_path: Path) -> None:
    iv, _ = image(tmp_path, "gpt")
    (Path(iv.path) / "etc/crypttab").unlink()
    text, _ = generate(iv, ScriptSettings())
    assert "crypttab" not in text.split("# ---- generated from the layout")[1]
