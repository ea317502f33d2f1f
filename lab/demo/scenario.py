"""The demo's path, step by step, shared by `make demo` (lab/demo/__main__.py) and the e2e
install test (tests/e2e/test_install.py), so the two cannot drift apart.

    host ns (nothing touched)      lab namespaces only:
      server ns  [imageserver serve: DHCP, TFTP, HTTP, rsyncd]  10.x.y.1 --veth--+
      master ns  [the demo master client tree, prepareclient]   10.x.y.2 --veth--+-- bridge (vm ns)
      vm ns      QEMU (TCG) on a tap: blank virtio disk, PXE first                +-- tap -- VM

The lab (namespaces, bridge, taps, processes, QEMU) is lab, shared with the tests; everything
it creates lives in namespaces it made and is removed by `Lab.close()`, also on failure and Ctrl-C.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any, Self

from appliance.boot import bootenv
from appliance.boot.installer import install_bootenv
from lab.daemon import Daemon
from lab.demo.tree import MARKER, build_demo_tree
from lab.netns import Lab, LabError, Namespace
from lab.qemu import Vm, VmConfig, VmNetwork, random_mac, start_ra_sender, vm_network

REPO = Path(__file__).resolve().parents[2]
IMAGE = "demo"
DEFAULT_CACHE = Path(os.environ.get("IMAGESERVER_CACHE_DIR", "/var/cache/imageserver"))
MARKER_RE = rf"{MARKER} hostname=(\S+)"

Say = Callable[[str], None]


class DemoError(RuntimeError):
    pass


# An emulated machine's own kernel can panic under TCG (seen once in CI: slab corruption with EFLAGS
# holding RAX's bits, i.e. emulator state, not the installer). A real machine that dies mid-install is
# power-cycled by its operator and installs again from the start (state.boot: "installing" installs);
# the lab does the same, once per install, and keeps the crashed console log.
GUEST_PANIC = "Kernel panic - not syncing"
MAX_POWER_CYCLES = 1


@dataclass
class Appliance(Daemon):
    """`imageserver serve` inside the server namespace (lab.daemon's driver), driven through its CLI and API."""

    def start(self, *extra: str, prefix: Sequence[str] = (), timeout: float = 30) -> Self:
        try:
            return super().start(*extra, prefix=prefix, timeout=timeout)
        except LabError as e:
            raise DemoError(f"imageserver did not start: {e}") from e

    def cli(self, *args: str, timeout: float = 300) -> str:
        """Run `imageserver --config ... ARGS` inside the server namespace; its stdout and stderr."""
        result = self.run_cli(*args, timeout=timeout)
        return result.stdout + result.stderr  # warnings too: they explain a later failure

    def get(self, path: str) -> Any:
        return self.api(path)

    def get_text(self, path: str) -> str:
        return self.api_text(path)


@dataclass
class Install:
    """One machine's install as the demo saw it."""

    name: str
    mac: str
    disk: Path
    vm: Vm | None = None
    power_on: float = 0.0
    installed_after: float | None = None  # seconds from power-on to the "done" event
    marker_after: float | None = None  # seconds from power-on to the marker on the disk boot
    events: list[dict[str, Any]] = field(default_factory=list)
    crash_logs: list[Path] = field(default_factory=list)  # serial logs of power-cycled guest panics
    progress: list[int] = field(default_factory=list)  # the copy progress (bytes) each time it changed


def _panic_summary(log: str) -> str:
    """The first lines of the oops that ended in the panic: what crashed, not just the panic line."""
    lines = log.splitlines()
    start = next((i for i, line in enumerate(lines)
                  if any(k in line for k in ("BUG:", "general protection", "Oops:", GUEST_PANIC))), len(lines))
    return "\n".join(lines[start:start + 12])


@dataclass
class DemoLab:
    lab: Lab
    cache_dir: Path = DEFAULT_CACHE
    kernel_package: str | None = None
    say: Say = print
    net: VmNetwork | None = None
    master: Namespace | None = None
    master_ip: IPv4Address | None = None
    app: Appliance | None = None
    tree: Path | None = None
    kernel: bootenv.Kernel | None = None

    # ------------------------------------------------------------------ setup

    def network(self) -> VmNetwork:
        """Server ns, vm ns with a bridge, and a master client ns on the same bridge."""
        net = self.net = vm_network(self.lab)
        start_ra_sender(net.server, net.server_if)  # iPXE skips its IPv6 wait
        master = self.master = self.lab.namespace("master")
        uplink, port = self.lab.ifname("vm"), self.lab.ifname("vp")
        self.lab.veth(master, uplink, net.vmns, port)
        net.vmns.ip("link", "set", port, "master", net.bridge)
        self.master_ip = net.host(2)
        master.add_address(uplink, f"{self.master_ip}/{net.subnet.prefixlen}")
        self.say(f"lab: server {net.server_ip} ({net.server.name}), master client {self.master_ip}, "
                 f"subnet {net.subnet}")
        return net

    def master_tree(self) -> Path:
        """The demo master client's root tree (what prepareclient exports)."""
        self.kernel = bootenv.fetch_kernel(self.cache_dir, self.kernel_package or _cached(self.cache_dir))
        self.tree = build_demo_tree(self.lab.tmp_path("master-root"), self.kernel, self.cache_dir)
        self.say(f"master client tree: {self.tree} (busybox, kernel {self.kernel.release}, extlinux)")
        return self.tree

    @contextlib.contextmanager
    def exported_master(self, imageserver: IPv4Address) -> Iterator[None]:
        """The master client's tree on a real (file) disk, exported by prepareclient on the master (its layout
        and an rsync daemon only `imageserver` may pull from) until the block ends."""
        assert self.tree is not None and self.master is not None
        from lab.demo.disk import build_boot_disk, loop_partition, mounted

        disk = build_boot_disk(self.tree, self.lab.tmp_path("master-disk.img"), size_mb=128).disk
        prepareclient = REPO / "appliance" / "data" / "prepareclient"
        run_dir = self.lab.tmp_path("prepareclient-run")
        run_dir.mkdir()
        with loop_partition(disk) as device, mounted(device) as root:
            env = {**os.environ, "SYSTEMIMAGER_ROOT": str(root), "SYSTEMIMAGER_DISKS": str(disk),
                   "SYSTEMIMAGER_RUN": str(run_dir)}
            try:
                out = self.master.run(["sh", str(prepareclient), "--server", str(imageserver)], env=env)
                self.say("prepareclient: " + out.stdout.strip().replace("\n", "\n  "))
                yield
            finally:
                # The master's rsync daemon holds the mount: stop it before the file system is unmounted.
                self.master.run(["sh", str(prepareclient), "--stop"], env=env, check=False)
                _kill_all(self.master)

    def capture(self, imageserver: IPv4Address | None = None) -> float:
        """The master client exported (exported_master), getimage on the imageserver: image demo v1 and
        scripts/demo.master. Seconds taken. `imageserver`: the address the capturing appliance reaches the
        master from (default: the lab's server)."""
        assert self.app is not None and self.net is not None
        started = time.monotonic()
        with self.exported_master(imageserver or self.net.server_ip):
            out = self.app.cli("getimage", "--master-client", str(self.master_ip), "--image", IMAGE, "--yes")
            self.say("getimage: " + out.strip().replace("\n", "\n  "))
        return time.monotonic() - started

    def appliance(self, extra: str = "", boot_options: str = "",
                  kernel_cmdline: str = "console=ttyS0,115200 panic=-1") -> Appliance:
        """`imageserver serve` in the server namespace; `boot_options`: extra [boot] lines (TOML); `extra` TOML is
        appended to its config; `kernel_cmdline`: the installer's (arm64's serial console is ttyAMA0)."""
        assert self.net is not None
        net = self.net
        state = self.lab.tmp_path("state")
        state.mkdir()
        config = self.lab.tmp_path("imageserver.toml")
        config.write_text(f"""
[appliance]
state_dir = "{state}"
interface = "{net.server_if}"
address = "{net.server_ip}"
hostname = "imageserver"
domain = "demo.test"

[dhcp]
subnet = "{net.subnet}"
pool = "{net.host(100)}-{net.host(150)}"
router = "{net.server_ip}"
conflict_probe = false
auto_static = "on-install"

[tftp]
enabled = true

[http]
port = 80

[boot]
poll_seconds = 2
kernel_cmdline = "{kernel_cmdline}"
{boot_options}
{extra}""")
        self.app = Appliance(net.server, config=config, state_dir=state).start()
        self.say(f"imageserver serving in {net.server.name} (state {state})")
        return self.app

    def bootenv(self) -> None:
        assert self.app is not None
        started = time.monotonic()
        env = install_bootenv(self.app.state_dir, self.cache_dir, self.kernel.package if self.kernel else None)
        self.say(f"mkbootenv: {env.kernel_package}, initrd {env.initrd.stat().st_size // 1024} KiB "
                 f"({time.monotonic() - started:.1f} s)")

    def image_path(self, version: int | None = None) -> Path:
        """The tree of image `demo` (newest version unless given), from the catalog."""
        import sqlite3

        from state.images import get_version, newest

        assert self.app is not None
        conn = sqlite3.connect(f"file:{self.app.state_dir / 'imageserver.db'}?mode=ro", uri=True, timeout=10)
        try:
            iv = newest(conn, IMAGE) if version is None else get_version(conn, IMAGE, version)
        finally:
            conn.close()
        if iv is None:
            raise DemoError(f"image {IMAGE} is not in the catalog")
        return Path(iv.path)

    # ------------------------------------------------------------------ the walk

    def add_host(self, name: str, mac: str, ip: str | None = None) -> None:
        """`hosts add`; `ip` for a machine that brings its own fixed address (boot media with IPADDR)."""
        assert self.app is not None
        self.app.cli("hosts", "add", name, "--mac", mac, "--image", IMAGE, *(("--ip", ip) if ip else ()))
        self.say(f"host {name} ({mac}{', ' + ip if ip else ''}) assigned image {IMAGE}")

    def power_on(self, install: Install, *, memory_mb: int = 512, first: bool = False) -> Vm:
        """Start the machine's VM (PXE first, then its disk); `first` starts its power-on clock."""
        assert self.net is not None
        if first:
            install.power_on = time.monotonic()
        vm = Vm(self.net, VmConfig(boot="network", mac=install.mac, disks=[install.disk], memory_mb=memory_mb))
        install.vm = vm.start()
        return vm

    def new_install(self, name: str, disk_mb: int, mac: str | None = None) -> Install:
        disk = self.lab.tmp_path(f"{name}-disk.img")
        with open(disk, "wb") as out:
            out.truncate(disk_mb << 20)
        return Install(name, mac or random_mac(), disk)

    def follow(self, installs: list[Install], timeout: float = 180) -> None:
        """Print each install's events as they arrive, until every one is installed or failed."""
        assert self.app is not None
        from appliance.cli.installview import progress_bar

        pending = {i.name: i for i in installs}
        seen: dict[str, int] = {i.name: 0 for i in installs}
        shown_bar: dict[str, str] = {}
        deadline = time.monotonic() + timeout
        while pending:
            for name, install in list(pending.items()):
                host = self.app.get(f"/api/v1/hosts/{name}")
                events = host.get("timeline") or []
                for event in events[seen[name]:]:
                    self.say(f"  [{name} +{time.monotonic() - install.power_on:5.1f}s] {_event_line(event)}")
                seen[name] = len(events)
                install.events = events
                progress = host.get("progress") or {}
                if isinstance(progress.get("bytes"), int) and progress["bytes"] not in install.progress[-1:]:
                    install.progress.append(progress["bytes"])
                bar = progress_bar(progress.get("bytes"), progress.get("total"))
                if bar and bar != shown_bar.get(name):
                    shown_bar[name] = bar
                    self.say(f"  [{name} +{time.monotonic() - install.power_on:5.1f}s] {'copying':<12} {bar}")
                if host["state"] in ("installed", "failed") and any(e["stage"] in ("done", "failed") for e in events):
                    if host["state"] == "installed":
                        install.installed_after = time.monotonic() - install.power_on
                    del pending[name]
                elif install.vm is not None and install.vm.proc is not None and not install.vm.proc.alive() \
                        and host["state"] not in ("installed", "failed") and not self._power_cycle_after_panic(install):
                    raise DemoError(f"{name}: QEMU exited during the install\n{install.vm.log()[-3000:]}")
            if time.monotonic() > deadline:
                logs = "\n".join(f"--- {i.name}\n{i.vm.log()[-2500:] if i.vm else ''}" for i in pending.values())
                raise DemoError(f"installs not finished after {timeout} s: {', '.join(pending)}\n{logs}")
            time.sleep(0.3)

    def _power_cycle_after_panic(self, install: Install) -> bool:
        """Power the machine on again if its own kernel panicked (GUEST_PANIC), at most MAX_POWER_CYCLES times."""
        vm = install.vm
        assert vm is not None
        log = vm.log()
        if GUEST_PANIC not in log or len(install.crash_logs) >= MAX_POWER_CYCLES:
            return False
        kept = vm.serial_log.with_name(f"{vm.serial_log.stem}-panic{len(install.crash_logs) + 1}.serial")
        vm.stop()
        vm.serial_log.rename(kept)
        install.crash_logs.append(kept)
        self.say(f"  [{install.name}] its kernel panicked mid-install (console kept in {kept}):\n"
                 f"{_panic_summary(log)}\n  [{install.name}] power-cycling it: the install starts over at its PXE boot")
        install.vm = Vm(vm.net, vm.config).start()
        return True

    def reboot_from_disk(self, install: Install, timeout: float = 120) -> str:
        """Wait for the installer's reboot (QEMU runs with -no-reboot, so it exits), power on again
        (PXE first: the imageserver now says "local"), and wait for the marker; returns its hostname."""
        assert install.vm is not None
        install.vm.wait_exit(timeout=60)
        self.say(f"{install.name}: installer rebooted; powering on again (PXE first, then the disk)")
        vm = self.power_on(install)
        match = vm.wait_for(MARKER_RE, timeout=timeout)
        install.marker_after = time.monotonic() - install.power_on
        self.say(f"{install.name}: {match.group(0)}  (booted from its disk)")
        return match.group(1)


def _kill_all(ns: Namespace) -> None:
    """Processes left in a namespace this demo made (the master's rsync daemon forks away from us)."""
    import signal

    for pid in ns.pids():
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while ns.pids() and time.monotonic() < deadline:
        time.sleep(0.05)


def _cached(cache_dir: Path) -> str | None:
    from appliance.boot.installer import cached_kernel_package

    return cached_kernel_package(cache_dir)


def _event_line(event: dict[str, Any]) -> str:
    from appliance.cli.installview import _detail_text

    return f"{event['stage']:<12} {_detail_text(event.get('detail'))}".rstrip()


def raw_rsync_seconds(tree: Path, scratch: Path) -> float:
    """The same image rsynced into an empty file system on this machine: the floor for any install."""
    from lab.demo.disk import rsync_into_empty_fs

    try:
        return rsync_into_empty_fs(tree, scratch)
    finally:
        scratch.unlink(missing_ok=True)


def require_tools() -> None:
    missing = [tool for tool in ("qemu-system-x86_64", "rsync", "sfdisk", "extlinux", "curl", "ip")
               if shutil.which(tool) is None]
    if missing:
        raise DemoError(f"missing tools: {', '.join(missing)} (run `make deps`)")
    if os.geteuid() != 0:
        raise DemoError("the demo builds network namespaces and loop devices: run it as root")


__all__ = ["DemoError", "DemoLab", "Install", "LabError", "raw_rsync_seconds", "require_tools"]
