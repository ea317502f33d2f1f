"""ipmi_sim's chassis_control for a QEMU VM: `vmchassis.py DIR MC get|set ...` (ipmi_lan(5)).

DIR/vm.json holds the VM's namespace and two QEMU command lines, "network" (its NIC's PXE first) and "disk"
(its disk only), each with `{serial}` where its console log goes. `set power 1` starts QEMU in that namespace,
detached (setsid, stdio closed: ipmi_sim waits for the script), from the network when the boot device is
`pxe` (then back to `none`: a one-time override), else from its disk; `set power 0` kills it; `get power` is
whether it runs (QEMU runs with -no-reboot, so an OS reboot powers the machine off). Every call and every
boot is logged in DIR/calls.log and DIR/boots.log.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path


def running(d: Path) -> int | None:
    try:
        pid = int((d / "qemu.pid").read_text())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, ValueError, IndexError):
        return None
    return pid if b"qemu" in cmdline and state != "Z" else None


def start(d: Path) -> None:
    vm = json.loads((d / "vm.json").read_text())
    boot_file = d / "boot"
    mode = "network" if boot_file.read_text().strip() == "pxe" else "disk"
    boot_file.write_text("none\n")  # once
    boots = (d / "boots.log").read_text().splitlines() if (d / "boots.log").exists() else []
    serial = d / f"serial-{len(boots) + 1}-{mode}.log"
    with open(d / "boots.log", "a") as log:
        log.write(f"{mode} {serial}\n")
    argv = [a.replace("{serial}", str(serial)) for a in vm[mode]]
    proc = subprocess.Popen(["ip", "netns", "exec", vm["ns"], *argv], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    (d / "qemu.pid").write_text(str(proc.pid))  # `ip netns exec` execs QEMU: the same pid


def stop(d: Path) -> None:
    pid = running(d)
    if pid is None:
        return
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while running(d) is not None and time.monotonic() < deadline:
        time.sleep(0.05)


def main(argv: list[str]) -> int:
    d, op, items = Path(argv[1]), argv[3], argv[4:]
    with open(d / "calls.log", "a") as log:
        log.write(f"{op} {' '.join(items)}\n")
    if op == "get":
        for key in items:
            if key == "power":
                print(f"power:{1 if running(d) else 0}")
            elif key == "boot":
                print(f"boot:{(d / 'boot').read_text().strip()}")
        return 0
    for key, value in zip(items[::2], items[1::2], strict=False):
        if key == "boot":
            (d / "boot").write_text(value + "\n")
        elif key == "power" and value == "1" and running(d) is None:
            start(d)
        elif key == "power" and value == "0":
            stop(d)
        elif key == "reset":
            stop(d)
            start(d)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
