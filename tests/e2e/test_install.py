"""The unattended install end to end, exactly the demo's path (lab/demo/scenario.py):

lab network -> demo master client -> prepareclient + getimage -> mkbootenv -> host added -> a QEMU VM
(TCG) PXE-boots from the imageserver with a blank disk -> installer fetches its script, partitions,
rsyncs the image, installs extlinux, reports every stage -> reboots -> PXE says "local" -> the VM
boots its own disk and prints its hostname. Then: the disk holds the image version, the host is
installed, its lease is a reservation, and the boot script keeps saying local (no install loop).
A second machine with a 16 MB disk fails: the API shows *failed* with the stage and the reason, and
the machine stays up in the installer's shell instead of rebooting into another install.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab.demo.disk import loop_partition, mounted
from lab.demo.scenario import DemoLab, raw_rsync_seconds
from lab.netns import lab_unavailable_reason
from lab.qemu import qemu_unavailable_reason
from tests.e2e._sites import demo_image_site

REPO = Path(__file__).resolve().parents[2]
MISSING = [p for p in ("appliance/cli/commands/getimage.py", "appliance/data/prepareclient") if not (REPO / p).exists()]

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(bool(MISSING), reason=f"the images part is not there yet: {', '.join(MISSING)} missing"),
    pytest.mark.skipif(qemu_unavailable_reason() is not None, reason=str(qemu_unavailable_reason())),
    pytest.mark.skipif(lab_unavailable_reason() is not None, reason=str(lab_unavailable_reason())),
]

# What an install writes itself instead of copying from the image (host identity, mounts, boot loader).
WRITTEN_BY_INSTALL = ("etc/fstab", "etc/hostname", "etc/hosts", "etc/network/", "etc/systemimager/",
                      "boot/extlinux/", "etc/resolv.conf", "lost+found/",
                      "usr/local/")  # usr/local/sbin/updateclient: the client side of updateclient


@pytest.fixture(scope="module")
def demo(bootenv_cache: Path, debian_kernel, lab_sweep: list[str]) -> Iterator[DemoLab]:
    lines: list[str] = []
    with demo_image_site(bootenv_cache, debian_kernel, say=lambda text: (lines.append(text), print(text))) as demo:
        yield demo


def _differences(image: Path, disk_root: Path) -> list[str]:
    """Paths whose type, size, content, mode or owner differ between the image and the disk (rsync -c -n)."""
    out = subprocess.run(["rsync", "-n", "-a", "-c", "-H", "--itemize-changes", "--delete", f"{image}/",
                          f"{disk_root}/"], capture_output=True, text=True, check=True).stdout
    changed = []
    for line in out.splitlines():
        flags, _, path = line.partition(" ")
        path = path.strip()
        if path.startswith("deleting "):
            path = path.removeprefix("deleting ")
        if not path or (path.endswith("/") and flags.startswith(".d") and set(flags[2:]) <= {".", "t"}):
            continue  # a directory whose only difference is its time
        if any(path == p or path.startswith(p) for p in WRITTEN_BY_INSTALL) or path in ("boot/", "etc/"):
            continue
        if path in ("ldlinux.sys", "ldlinux.c32") or path.startswith("boot/ldlinux"):
            continue
        changed.append(line)
    return changed


def test_bare_vm_installs_over_pxe_and_then_boots_its_own_disk(demo: DemoLab) -> None:
    app = demo.app
    assert app is not None
    install = demo.new_install("node1", 256)
    demo.add_host(install.name, install.mac)
    demo.power_on(install, first=True)
    demo.follow([install], timeout=150)
    host = app.get("/api/v1/hosts/node1")
    assert host["state"] == "installed", host
    stages = [e["stage"] for e in host["timeline"]]
    # The script fetch (a GET) records nothing; the installer's first report starts the timeline.
    assert stages[0] == "installer" and stages[-1] == "done", stages
    assert {"partition", "rsync", "bootloader"} <= set(stages), stages
    assert "failed" not in stages

    hostname = demo.reboot_from_disk(install, timeout=120)
    assert hostname == "node1", "the second boot came from the disk, with the assigned hostname"
    assert install.vm is not None
    install.vm.wait_exit(timeout=30)  # the demo client powers off after its marker
    counters = app.get("/api/v1/status")["services"]["http"]["counters"]
    assert counters.get("boot_local", 0) >= 1, f"the second PXE boot was told to boot locally: {counters}"

    # The disk holds the image version (apart from what an install writes for the host itself).
    image = demo.image_path()
    with loop_partition(install.disk) as device, mounted(device) as root:
        assert (root / "etc/hostname").read_text().strip() == "node1"
        differences = _differences(image, root)
        assert differences == [], "\n".join(differences)

    host = app.get("/api/v1/hosts/node1")
    assert host["state"] == "installed"
    assert host["binding"]["kind"] == "reservation", host["binding"]
    reservations = app.get("/api/v1/reservations")["reservations"]
    assert any(r["mac"] == install.mac and r["source"] == "on-install" for r in reservations), reservations
    # Third boot: the boot script says local disk, not the installer (no install loop).
    script = app.get_text(f"/boot/{install.mac}.ipxe")
    assert "sanboot" in script and "installer/vmlinuz" not in script, script
    assert app.get(f"/api/v1/machines/{install.mac}")["boot"]["kind"] == "local"

    # The operator's views of the same: `hosts show` and `watch` (which returns once nothing installs).
    shown = app.cli("hosts", "show", "node1")
    assert "state      installed" in shown and "reservation" in shown and "done" in shown, shown
    watched = app.cli("watch", "--until-done", "--interval", "0.2", "node1")
    assert "node1" in watched and "installed" in watched, watched

    raw = raw_rsync_seconds(image, demo.lab.tmp_path("raw.img"))
    print(f"\n[timing] power-on -> installed {install.installed_after:.1f} s, -> own disk marker "
          f"{install.marker_after:.1f} s; raw rsync of the image {raw:.2f} s")


def test_too_small_disk_fails_with_stage_and_reason_and_does_not_loop(demo: DemoLab) -> None:
    app = demo.app
    assert app is not None
    install = demo.new_install("tiny1", 16)
    demo.add_host(install.name, install.mac)
    demo.power_on(install, first=True)
    demo.follow([install], timeout=150)
    host = app.get("/api/v1/hosts/tiny1")
    assert host["state"] == "failed", host
    failure = host["progress"]["failure"]
    assert failure["stage"] == "partition", failure  # the disk size check belongs to partitioning
    assert "needs at least" in failure["reason"], failure
    assert host["timeline"][-1]["stage"] == "failed"
    # The machine stays in the installer (a shell on its console); it does not reboot into another install.
    assert install.vm is not None and install.vm.proc is not None
    install.vm.wait_for(r"stays up so the failure can be inspected", timeout=30)
    time.sleep(4)
    assert install.vm.proc.alive(), "the failed installer must not reboot"
    assert install.vm.log().count("imageserver-installer: starting") == 1
    assert app.get(f"/api/v1/machines/{install.mac}")["boot"]["kind"] != "install", "no install loop"
    assert app.get("/api/v1/hosts/tiny1")["binding"] is None or \
        app.get("/api/v1/hosts/tiny1")["binding"]["kind"] == "lease", "a failed host gets no reservation"


# The first attempt marks the disk's last sector and panics the kernel, as a machine dying mid-install
# would (panic=-1 reboots, and QEMU's -no-reboot powers it off); the next attempt sees the mark and goes on.
CRASH_ONCE = r"""
last=$(( $(cat /sys/block/vda/size) - 1 ))
if ! dd if=/dev/vda bs=512 skip="$last" count=1 2>/dev/null | grep -q crashed-once; then
    printf crashed-once | dd of=/dev/vda bs=512 seek="$last" conv=notrunc,fsync 2>/dev/null
    echo c > /proc/sysrq-trigger
fi
"""


def test_machine_whose_kernel_panics_mid_install_installs_again_when_powered_on(demo: DemoLab) -> None:
    app = demo.app
    assert app is not None
    install = demo.new_install("crash1", 256)
    demo.add_host(install.name, install.mac)
    shebang, _, rest = app.get(f"/api/v1/hosts/{install.name}/script")["script"].partition("\n")
    body = demo.lab.tmp_path("crash-once-script.json")
    body.write_text(json.dumps({"script": f"{shebang}\n{CRASH_ONCE}{rest}"}))
    app.ns.run(["curl", "-sS", "--fail-with-body", "-X", "PUT", "-H", f"Authorization: Bearer {app.admin_token()}",
                "-H", "Content-Type: application/json", "--data-binary", f"@{body}",
                app.api_url(f"/api/v1/hosts/{install.name}/script")], timeout=15)
    demo.power_on(install, first=True)
    demo.follow([install], timeout=240)  # the lab powers the machine on again after the panic

    assert len(install.crash_logs) == 1, "the first attempt's kernel panicked and the machine was power-cycled"
    assert "sysrq triggered crash" in install.crash_logs[0].read_text(errors="replace")
    host = app.get(f"/api/v1/hosts/{install.name}")
    assert host["state"] == "installed", host
    stages = [e["stage"] for e in host["timeline"]]
    assert stages.count("installer") == 2 and stages[-1] == "done" and "failed" not in stages, stages
    assert host["progress"]["stage"] == "done" and host["progress"].get("failure") is None, host["progress"]
    restarted = [e for e in host["timeline"] if e["stage"] == "installer"][1]
    assert host["progress"]["started"] == restarted["time"], "progress is the attempt that finished"
    with loop_partition(install.disk) as device, mounted(device) as root:
        assert (root / "etc/hostname").read_text().strip() == install.name
