"""A backup taken in the middle of an install, restored on another box, which then installs the machine.

The demo site (the demo image captured, the boot environment built) serves a QEMU VM that PXE-boots into
the installer; once the host is *installing*, `imageserver backup` runs (DHCP, TFTP, HTTP and the image's
rsync all busy). Then the old box goes away (the VM is powered off, the daemon stopped), the backup is
restored with the new box's own config into an empty state dir, and a daemon started on it. The machine is
powered on again: the restored appliance still has it as installing, so it installs from the start, reports
done, and then boots its own disk with its hostname.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab.daemon import daemon_env
from lab.demo.scenario import Appliance, DemoLab
from lab.netns import lab_unavailable_reason
from lab.qemu import qemu_unavailable_reason
from tests.e2e._sites import demo_image_site

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(qemu_unavailable_reason() is not None, reason=str(qemu_unavailable_reason())),
    pytest.mark.skipif(lab_unavailable_reason() is not None, reason=str(lab_unavailable_reason())),
]


@pytest.fixture
def demo(bootenv_cache: Path, debian_kernel, lab_sweep: list[str]) -> Iterator[DemoLab]:
    with demo_image_site(bootenv_cache, debian_kernel) as demo:
        yield demo


def wait_for_state(app: Appliance, name: str, state: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while (host := app.get(f"/api/v1/hosts/{name}"))["state"] != state:
        assert time.monotonic() < deadline, f"{name} never became {state}: {host}"
        time.sleep(0.5)


def test_a_box_restored_from_a_backup_taken_mid_install_installs_the_machine(demo: DemoLab) -> None:
    old = demo.app
    assert old is not None
    install = demo.new_install("node1", 256)
    demo.add_host(install.name, install.mac)
    demo.power_on(install, first=True)
    wait_for_state(old, "node1", "installing", timeout=180)

    backup = demo.lab.tmp_path("backup")
    taken = old.run_cli("backup", str(backup), "--json", timeout=600)
    assert taken.returncode == 0, taken.stderr
    print(f"\nbackup during the install: {taken.stdout}")
    assert install.vm is not None
    install.vm.stop()
    assert old.stop() == 0

    # The new box: the same LAN, its own config file, an empty state dir.
    state = demo.lab.tmp_path("restored-state")
    config = demo.lab.tmp_path("restored.toml")
    config.write_text(old.config.read_text().replace(f'state_dir = "{old.state_dir}"', f'state_dir = "{state}"'))
    restored = old.ns.run([sys.executable, "-m", "appliance.cli", "--config", str(config), "restore", str(backup),
                           "--json"], env=daemon_env(), check=False, timeout=600)
    assert restored.returncode == 0, restored.stderr
    assert json.loads(restored.stdout)["state_dir"] == str(state)
    new = demo.app = Appliance(old.ns, config=config, state_dir=state).start()
    assert new.get("/api/v1/hosts/node1")["state"] == "installing"

    install.power_on = time.monotonic()
    demo.power_on(install)  # PXE again: the restored appliance installs it from the start
    demo.follow([install], timeout=240)
    host = new.get("/api/v1/hosts/node1")
    assert host["state"] == "installed", host
    assert demo.reboot_from_disk(install, timeout=120) == "node1"
    print(f"\n[timing] restored appliance: power-on -> installed {install.installed_after:.1f} s")
