"""Two bare VMs install the demo image at once through BitTorrent, then boot their own disks.

The demo's path (lab/demo/scenario.py) with both hosts added by `hosts add --transport bittorrent`:
each installer (aria2c in its initrd) fetches its torrent from the imageserver, takes the files from the
imageserver's aria2c seeder and from the other VM, then runs the rsync --size-only metadata pass; the
timeline says so, nothing fell back to rsync, both disks hold the image (rsync -c against the image's tree, and
`images verify --tree` against its manifest: content, modes, owners, mtimes, xattrs, hard links), and both VMs
boot from them.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab.demo.disk import loop_partition, mounted
from lab.demo.scenario import MARKER_RE, DemoLab
from lab.netns import lab_unavailable_reason
from lab.qemu import qemu_unavailable_reason
from tests.e2e._sites import demo_image_site
from tests.e2e.test_install import WRITTEN_BY_INSTALL, _differences

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(qemu_unavailable_reason() is not None, reason=str(qemu_unavailable_reason())),
    pytest.mark.skipif(lab_unavailable_reason() is not None, reason=str(lab_unavailable_reason())),
    pytest.mark.skipif(shutil.which("aria2c") is None, reason="aria2c is not installed (deps/apt-packages.txt)"),
]


@pytest.fixture(scope="module")
def demo(bootenv_cache: Path, debian_kernel, lab_sweep: list[str]) -> Iterator[DemoLab]:
    with demo_image_site(bootenv_cache, debian_kernel) as demo:
        yield demo


def test_two_vms_install_through_bittorrent_and_boot_their_disks(demo: DemoLab) -> None:
    app = demo.app
    assert app is not None
    installs = [demo.new_install(f"bt{i}", 256) for i in (1, 2)]
    for install in installs:
        app.cli("hosts", "add", install.name, "--mac", install.mac, "--image", "demo", "--transport", "bittorrent")
    assert app.get("/api/v1/hosts/bt1")["transport"] == "bittorrent"
    for install in installs:
        demo.power_on(install, first=True)
    demo.follow(installs, timeout=240)

    for install in installs:
        host = app.get(f"/api/v1/hosts/{install.name}")
        assert host["state"] == "installed", host
        details = json.dumps([e for e in host["timeline"] if e["stage"] == "rsync"])
        assert "by BitTorrent" in details and "metadata by rsync" in details, details
        assert "BitTorrent failed" not in details and "stalled" not in details, details
    status = app.get("/api/v1/status")["transports"]
    assert "bittorrent" in status["available"] and status["bittorrent"]["seeders"], status

    for install in installs:
        assert install.vm is not None
        install.vm.wait_exit(timeout=60)  # the installer reboots (QEMU -no-reboot: it exits)
    vms = [demo.power_on(install) for install in installs]
    for install, vm in zip(installs, vms, strict=True):
        assert vm.wait_for(MARKER_RE, timeout=150).group(1) == install.name
        vm.wait_exit(timeout=30)

    image = demo.image_path()
    # What the install writes for the machine itself; the rest must be the image as its manifest says.
    ignore = [a for p in (*WRITTEN_BY_INSTALL, "ldlinux.sys", "ldlinux.c32") for a in ("--ignore", p)]
    for install in installs:
        with loop_partition(install.disk) as device, mounted(device) as root:
            assert (root / "etc/hostname").read_text().strip() == install.name
            differences = _differences(image, root)
            assert differences == [], "\n".join(differences)
            verified = app.run_cli("images", "verify", "demo", "v1", "--tree", str(root), *ignore, timeout=180)
            assert verified.returncode == 0, verified.stdout + verified.stderr
