"""The real box, end to end: the .deb of `make deb` on a Debian 12 VM with systemd, the way an operator
installs and upgrades it, and the shipped unit running the daemon with every hardening setting on.

The VM boots the cached appliance box (tests/e2e/_packagebox.py: the debootstrap master with the package's
runtime Depends already installed from a local flat repository, booted directly with -kernel, its root
disk's writes thrown away) with a static address on the lab LAN and no internet. Its runner unit plays the
operator from the test's disk, all in one boot:

1. `apt-get install ./imageserver_<older>.deb`: a package built from an older commit of main (OLDER_COMMIT,
   state schema 6, older than today's). Installed, the unit waits for a config (inactive, disabled);
   `imageserver init --yes`, `systemctl enable --now imageserver`, `imageserver status --json`.
2. State written by the older version: a host with a fixed address, a reservation, a lease (udhcpc in a
   namespace on the LAN, run by this test when the VM asks for it).
3. `apt-get install ./imageserver_<today>.deb` over it: the package's postinst restarts the running service
   (deb-systemd-invoke try-restart), the daemon migrates the database, every host, reservation and lease
   is kept, and the machine that leased from the older version gets its address again from the new one;
   the unit is the shipped one (Type=notify, watchdog, ProtectSystem=strict) and every service runs.
4. A machine installs from it: the installer boot environment (mkbootenv's output, built on the host from
   the cache the other e2e tests use: the VM cannot download) copied into its state directory, the demo
   master client's tree pulled with `imageserver getimage` from prepareclient's rsync daemon on a master
   namespace on the LAN, a host added; then a blank QEMU client on the same bridge PXE-boots from the
   appliance VM, installs, is told "local" at its next PXE boot and boots its own disk to the demo marker.
5. A config the reload refuses, so `journalctl -u imageserver -p err` must show that error.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from appliance.boot.bootenv import Kernel
from appliance.boot.installer import install_bootenv
from lab.clients import Udhcpc
from lab.demo.scenario import DemoLab
from lab.netns import Lab, lab_unavailable_reason
from lab.qemu import Vm, VmConfig, qemu_unavailable_reason
from state.schema import MIGRATIONS
from tests.e2e import _packagebox as pb

REPO = Path(__file__).resolve().parents[2]
MARK = "PKGTEST"
# The last commit of main before migration 7 (BMC power control) with `make deb` in it: the package branch's
# tip, merged into main at 72330f2. Its database is at schema 6.
OLDER_COMMIT = "ce54560254e156f7d9b14bceed5e1336b7ca3cbe"
OLDER_SCHEMA, SCHEMA = 6, len(MIGRATIONS)  # today's: every migration in this tree
HOST_MAC, RESERVED_MAC = "52:54:00:10:00:01", "52:54:00:10:00:03"
CLIENT_MAC = "52:54:00:10:00:05"  # the machine that PXE-installs from the appliance VM

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(qemu_unavailable_reason() is not None, reason=str(qemu_unavailable_reason())),
    pytest.mark.skipif(lab_unavailable_reason() is not None, reason=str(lab_unavailable_reason())),
]

# The operator's steps (placeholders: @ADDRESS@, @HOST_IP@, @RESERVED_IP@, @OLD@, @NEW@, @MASTER_IP@).
SCENARIO = f"""#!/bin/sh
say() {{ echo "{MARK} $*"; }}
dump() {{ say "$1 $($2 | tr -d '\\n')"; }}  # its stderr goes to the console on lines of its own
db=file:/var/lib/imageserver/imageserver.db?mode=ro
py() {{ /usr/lib/imageserver/bin/python3 -c "import json, sys
$1"; }}
schema() {{ /usr/lib/imageserver/bin/python3 -c "import sqlite3
print(sqlite3.connect('$db', uri=True).execute('pragma user_version').fetchone()[0])"; }}
install() {{  # $1 the .deb, $2 its name in the report
    t0=$(date +%s)
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q -o APT::Sandbox::User=root "$1" >/root/apt-$2.log 2>&1
    rc=$?
    tail -n 12 /root/apt-$2.log
    say "$2-apt rc=$rc seconds=$(( $(date +%s) - t0 )) version=$(dpkg-query -W -f '${{Version}}' imageserver)"
}}
ip link set {pb.IFACE} up
ip addr add @ADDRESS@ dev {pb.IFACE}
cp /run/pkgtest/*.deb /root/

install /root/@OLD@ older
say "unconfigured active=$(systemctl is-active imageserver) enabled=$(systemctl is-enabled imageserver)"
imageserver init --yes --interface {pb.IFACE} --probe-timeout 2
say "init rc=$?"
t0=$(date +%s)
systemctl enable --now imageserver
say "enable rc=$? seconds=$(( $(date +%s) - t0 ))"
say "older-active=$(systemctl is-active imageserver)"
dump older-status "imageserver status --json"
imageserver hosts add node1 --mac {HOST_MAC} --ip @HOST_IP@
say "host-add rc=$?"
imageserver reservations add {RESERVED_MAC} @RESERVED_IP@ --hostname printer
say "reservation-add rc=$?"
say want-lease
i=0
while [ $i -lt 180 ] && ! imageserver leases --json | grep -q '"ip"'; do sleep 2; i=$((i+2)); done
dump before-hosts "imageserver hosts list --json"
dump before-reservations "imageserver reservations list --json"
dump before-leases "imageserver leases --json"
say "before-schema $(schema)"
say "before-pid $(systemctl show -p MainPID --value imageserver)"

install /root/@NEW@ newer
say "after-pid $(systemctl show -p MainPID --value imageserver)"
say "after-active=$(systemctl is-active imageserver)"
dump status-json "imageserver status --json"
say "after-schema $(schema)"
dump after-hosts "imageserver hosts list --json"
dump after-reservations "imageserver reservations list --json"
dump after-leases "imageserver leases --json"
# The upgraded daemon answers the machine that leased from the older one (the test runs its DHCP client).
leased=$(imageserver leases --json | grep '"expires"')
say want-renewal
i=0
while [ $i -lt 120 ] && [ "$(imageserver leases --json | grep '"expires"')" = "$leased" ]; do sleep 2; i=$((i+2)); done
dump renewed-leases "imageserver leases --json"
systemctl show imageserver -p NRestarts -p Type -p WatchdogUSec -p ProtectSystem -p NoNewPrivileges \\
    -p FragmentPath | sed 's/^/{MARK} unit /'

# A machine installs from this appliance: the boot environment from the test's disk (built on the host),
# the image pulled from the master client, a host assigned to it.
mkdir -p /var/lib/imageserver/boot
cp -r /run/pkgtest/boot/installer /var/lib/imageserver/boot/
t0=$(date +%s)
imageserver getimage --master-client @MASTER_IP@ --image demo --yes >/root/getimage.log 2>&1
say "getimage rc=$? seconds=$(( $(date +%s) - t0 ))"
tail -n 8 /root/getimage.log
imageserver hosts add node2 --mac {CLIENT_MAC} --image demo
say "pxe-host-add rc=$?"
say want-pxe
state() {{ imageserver hosts show node2 --json | py "print(json.load(sys.stdin)['state'])"; }}
i=0
while [ $i -lt 1200 ] && [ "$(state)" != installed ] && [ "$(state)" != failed ]; do sleep 1; i=$((i+1)); done
[ "$(state)" = installed ] || journalctl -u imageserver --no-pager -o cat | tail -n 40
say "pxe-installed $(state)"
dump pxe-host "imageserver hosts show node2 --json"
# Its next PXE boot is told to boot its own disk; after that it needs this appliance no more.
local_boots() {{ imageserver status --json | py "counters = json.load(sys.stdin)['services']['http']['counters']
print(counters.get('boot_local', 0))"; }}
i=0
while [ $i -lt 600 ] && [ "$(local_boots)" = 0 ]; do sleep 2; i=$((i+2)); done
say "boot-local $(local_boots)"

printf '\\n[no_such_section]\\nkey = 1\\n' >>/etc/imageserver/imageserver.toml
systemctl reload imageserver
sleep 5
journalctl -u imageserver -p err --no-pager -o cat | sed 's/^/{MARK}-ERR /'
say "after-reload active=$(systemctl is-active imageserver)"
journalctl -u imageserver --no-pager -o cat | tail -n 30
say DONE
systemctl poweroff
"""


def said(log: str, prefix: str) -> list[str]:
    return [line.split(prefix, 1)[1].strip() for line in log.splitlines() if prefix in line]


def reported(lines: list[str], key: str) -> str:
    (value,) = [line.removeprefix(f"{key} ") for line in lines if line.startswith(f"{key} ")]
    return value


def rows(lines: list[str], key: str, *fields: str) -> list[tuple[Any, ...]]:
    """The JSON list the VM printed under `key`, as sorted tuples of `fields`."""
    return sorted(tuple(item.get(f) for f in fields) for item in json.loads(reported(lines, key)))


def kept(lines: list[str], before: str, after: str, key: str) -> list[dict[str, Any]]:
    """The rows printed under `before`, each found again under `after` (matched by `key`) with every field
    both versions have unchanged; a field only the newer version has may be new. Returns the rows before."""
    old, new = ({row[key]: row for row in json.loads(reported(lines, k))} for k in (before, after))
    assert old.keys() == new.keys(), (old, new)
    for name, row in old.items():
        changed = {f: (v, new[name][f]) for f, v in row.items() if f in new[name] and new[name][f] != v}
        assert not changed, (name, changed)
    return list(old.values())


def test_package_installs_upgrades_and_runs_under_its_unit(bootenv_cache: Path, debian_kernel: Kernel,
                                                            lab_sweep: list[str]) -> None:
    started = time.monotonic()
    box = pb.appliance_box(bootenv_cache)
    older = pb.older_package(bootenv_cache, OLDER_COMMIT)
    with Lab() as lab:
        files = lab.tmp_path("pkgtest")
        files.mkdir()
        subprocess.run([sys.executable, str(REPO / "packaging/build_deb.py"), "--out", str(files)], check=True,
                       timeout=1800)
        (deb,) = files.glob("imageserver_*_amd64.deb")
        deb_mb, older_mb = deb.stat().st_size / 1e6, older.stat().st_size / 1e6
        (files / older.name).write_bytes(older.read_bytes())
        # The LAN (and an RA sender: iPXE skips its IPv6 wait), with a master client's namespace on it.
        demo = DemoLab(lab, cache_dir=bootenv_cache, kernel_package=debian_kernel.package, say=print)
        demo.kernel = debian_kernel
        net = demo.network()
        address, host_ip, reserved_ip = net.host(20), net.host(50), net.host(60)
        # What the appliance VM installs machines with: the installer boot environment (mkbootenv's output,
        # cached on the host) on the test's disk; the demo master tree, pulled from the master by getimage.
        staged = lab.tmp_path("bootenv-state")
        install_bootenv(staged, bootenv_cache, debian_kernel.package)
        shutil.copytree(staged / "boot", files / "boot")
        demo.master_tree()
        (files / "run.sh").write_text(
            SCENARIO.replace("@ADDRESS@", f"{address}/{net.subnet.prefixlen}")
            .replace("@MASTER_IP@", str(demo.master_ip))
            .replace("@HOST_IP@", str(host_ip)).replace("@RESERVED_IP@", str(reserved_ip))
            .replace("@OLD@", older.name).replace("@NEW@", deb.name))
        disk = lab.tmp_path("pkgtest.img")
        files_mb = int(subprocess.run(["du", "-sm", str(files)], check=True, capture_output=True,
                                      text=True).stdout.split()[0])
        pb.script_disk(files, disk, size_mb=files_mb + 128)
        print(f"[timing] box cached, packages built, test disk ready: {time.monotonic() - started:.0f} s")
        # A machine on the LAN for the lease the older version writes.
        client_ns = lab.namespace("dhcp")
        inside, outside = lab.ifname("ci"), lab.ifname("co")
        lab.veth(client_ns, inside, net.vmns, outside)
        net.vmns.ip("link", "set", outside, "master", net.bridge)
        vm = Vm(net, VmConfig(boot="kernel", kernel=box.kernel, initrd=box.initrd, memory_mb=1024,
                              append="root=/dev/vda rw console=ttyS0,115200 net.ifnames=0 systemd.show_status=0",
                              extra_args=pb.box_drives(box, disk)))
        with demo.exported_master(address), vm:
            vm.wait_for(rf"{MARK} want-lease", timeout=1200)
            client = Udhcpc(client_ns, inside, tries=20, pause=3)
            lease = client.obtain()
            vm.wait_for(rf"{MARK} want-renewal", timeout=1200)
            client_ns.ip("addr", "flush", "dev", inside)
            again = client.obtain()
            vm.wait_for(rf"{MARK} want-pxe", timeout=1200)
            assert re.search(rf"{MARK} getimage rc=0 ", vm.log()), vm.log()[-6000:]  # else nothing to install
            install = demo.new_install("node2", 256, mac=CLIENT_MAC)
            demo.power_on(install, first=True)
            vm.wait_for(rf"{MARK} pxe-installed", timeout=1200)
            client_log = install.vm.log() if install.vm else ""
            assert f"{MARK} pxe-installed installed" in vm.log(), (vm.log()[-6000:], client_log[-3000:])
            install.installed_after = time.monotonic() - install.power_on
            hostname = demo.reboot_from_disk(install, timeout=300)
            vm.wait_for(rf"{MARK} DONE", timeout=1200)
            log, vm_seconds = vm.log(), vm.elapsed()
    lines, errors = said(log, f"{MARK} "), said(log, f"{MARK}-ERR ")
    print("\n".join(line[:400] for line in lines + [f"journal err: {e}" for e in errors]))
    total = time.monotonic() - started

    installs = {m.group(1): m for m in re.finditer(r"(older|newer)-apt rc=(\d+) seconds=(\d+) version=(\S*)", log)}
    assert set(installs) == {"older", "newer"} and all(m.group(2) == "0" for m in installs.values()), log[-6000:]
    assert installs["older"].group(4) == older.name.split("_")[1]
    assert installs["newer"].group(4) == deb.name.split("_")[1]
    print(f"[timing] apt-get install ./{older.name} ({older_mb:.1f} MB) in the VM: {installs['older'].group(3)} s; "
          f"the upgrade to ./{deb.name} ({deb_mb:.1f} MB): {installs['newer'].group(3)} s")
    # Installed, the unit waits for a config: not started, not enabled by the package.
    assert "unconfigured active=inactive enabled=disabled" in lines
    assert "init rc=0" in lines and any(s.startswith("enable rc=0") for s in lines), log[-6000:]
    assert "older-active=active" in lines
    assert "host-add rc=0" in lines and "reservation-add rc=0" in lines, log[-6000:]

    # The upgrade: a new process (the postinst's try-restart, not a crash: no automatic restart), the
    # database migrated by the new daemon, every host, reservation and lease as the older version left them.
    assert reported(lines, "before-schema") == str(OLDER_SCHEMA) and reported(lines, "after-schema") == str(SCHEMA)
    assert reported(lines, "before-pid") != reported(lines, "after-pid") and "after-active=active" in lines
    kept(lines, "before-hosts", "after-hosts", "name")
    assert rows(lines, "after-hosts", "name", "mac", "ip") == [("node1", HOST_MAC, str(host_ip))]
    kept(lines, "before-reservations", "after-reservations", "mac")
    assert (RESERVED_MAC, str(reserved_ip), "printer") in rows(lines, "after-reservations", "mac", "ip", "hostname")
    (leased,) = kept(lines, "before-leases", "after-leases", "mac")
    assert leased["ip"] == str(lease.address.ip) and leased["active"], (lease, leased)
    # The same machine asks the upgraded daemon again: the same address, the same lease (its start kept)
    # extended.
    (renewed,) = json.loads(reported(lines, "renewed-leases"))
    assert again.address.ip == lease.address.ip, (lease, again)
    assert [renewed[f] for f in ("mac", "ip", "starts")] == [leased[f] for f in ("mac", "ip", "starts")]
    assert renewed["expires"] > leased["expires"], (leased, renewed)

    services = json.loads(reported(lines, "status-json"))["services"]
    not_running = {name: s for name, s in services.items() if s.get("state") != "running"}
    assert services and not not_running, not_running
    unit = dict(s.removeprefix("unit ").split("=", 1) for s in lines if s.startswith("unit "))
    # The package's unit (merged /usr: systemd may name it by either path), no copy in /etc.
    assert unit["FragmentPath"] in ("/lib/systemd/system/imageserver.service",
                                    "/usr/lib/systemd/system/imageserver.service"), unit
    assert unit["Type"] == "notify" and unit["ProtectSystem"] == "strict" and unit["NRestarts"] == "0", unit
    assert unit["NoNewPrivileges"] == "yes" and unit["WatchdogUSec"] not in ("0", "infinity"), unit
    assert any("reload-failed" in e and "no_such_section" in e for e in errors), errors
    assert "after-reload active=active" in lines

    # The machine installed from the packaged appliance and booted its own disk.
    assert any(s.startswith("getimage rc=0") for s in lines), log[-6000:]
    assert "pxe-host-add rc=0" in lines and "pxe-installed installed" in lines, log[-6000:]
    pxe_host = json.loads(reported(lines, "pxe-host"))
    stages = [e["stage"] for e in pxe_host["timeline"]]
    assert stages[0] == "installer" and stages[-1] == "done" and "failed" not in stages, stages
    assert {"partition", "rsync", "bootloader"} <= set(stages), stages
    assert int(reported(lines, "boot-local")) >= 1, "the second PXE boot was told to boot its own disk"
    assert hostname == "node2", "the second boot came from the disk, with the assigned hostname"
    print(f"[timing] PXE install from the packaged appliance VM: power-on -> installed "
          f"{install.installed_after:.0f} s, -> own disk marker {install.marker_after:.0f} s")
    print(f"[timing] package VM test: {total:.0f} s (the VM {vm_seconds:.0f} s)")
