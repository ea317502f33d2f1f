"""Simulated BMCs for power tests: OpenIPMI's `ipmi_sim` (package openipmi) serving IPMI over LAN on the
namespace's loopback, and two bad peers (a UDP port nobody reads, one that answers garbage).

ipmi_sim's chassis is a `chassis_control` script (ipmi_lan(5)): ipmi_sim runs `SCRIPT 0x20 get power` /
`set power 1|0` / `set boot pxe|none|...` and reads `power:N` / `boot:X` back. Ours keeps the power and
the boot device in files and logs every call, so a test can check what the BMC was told; it stands in
for a machine (a QEMU VM in the e2e). Facts measured for this wiring are in ../shared/LAB.md; ipmi_sim
needs a `guid` in its LAN section for RMCP+ (lanplus), else ipmitool says "does not support IPMI v2".
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from lab.netns import Namespace, Proc

CHASSIS = """#!/bin/sh
# ipmi_sim chassis_control: $1 the MC, $2 get|set, then names (get) or name value pairs (set)
dir=$(dirname "$0")
mc=$1; op=$2; shift 2
echo "$op $*" >> "$dir/calls.log"
if [ "$op" = get ]; then
    for k in "$@"; do
        case $k in
            power) echo "power:$(cat "$dir/power")" ;;
            boot) echo "boot:$(cat "$dir/boot")" ;;
        esac
    done
    exit 0
fi
while [ $# -ge 2 ]; do
    case $1 in
        power) echo "$2" > "$dir/power" ;;
        boot) echo "$2" > "$dir/boot" ;;
    esac
    shift 2
done
"""

EMU = """mc_setbmc 0x20
mc_add 0x20 0 no-device-sdrs 0x23 9 8 0x9f 0x1291 0xf02 persist_sdr
sel_enable 0x20 1000 0x0a
mc_enable 0x20
"""


@dataclass
class IpmiSim:
    """One ipmi_sim in `ns` answering on 127.0.0.1:`port` to `user`/`password` (admin privilege)."""

    ns: Namespace
    port: int
    user: str = "admin"
    password: str = "secret"
    chassis: str | None = None  # another chassis_control command (lab/vmchassis.py for a VM); None: ours
    dir: Path = field(init=False)
    proc: Proc | None = None

    def __post_init__(self) -> None:
        self.dir = self.ns.lab.tmp_path(f"bmc{self.port}")
        self.dir.mkdir(mode=0o700)

    def start(self) -> IpmiSim:
        script = self.dir / "chassis.sh"
        if self.chassis is None:
            script.write_text(CHASSIS)
            script.chmod(0o755)
        (self.dir / "power").write_text("0\n")
        (self.dir / "boot").write_text("none\n")
        (self.dir / "calls.log").write_text("")
        (self.dir / "x.emu").write_text(EMU)
        auths = "none md2 md5 straight"
        (self.dir / "lan.conf").write_text(
            f'name "bmc{self.port}"\nset_working_mc 0x20\nstartlan 1\n  addr 127.0.0.1 {self.port}\n'
            f"  priv_limit admin\n"
            + "".join(f"  allowed_auths_{p} {auths}\n" for p in ("callback", "user", "operator", "admin"))
            + f"  guid a123456789abcdefa123456789ab{self.port % 10000:04d}\nendlan\n"
            f'chassis_control "{self.chassis or script} 0x20"\n'
            f'user 2 true "{self.user}" "{self.password}" admin 10 {auths}\n')
        (self.dir / "state").mkdir()
        self.proc = self.ns.popen(["ipmi_sim", "-c", str(self.dir / "lan.conf"), "-f", str(self.dir / "x.emu"),
                                   "-s", str(self.dir / "state"), "-n"])
        return self

    @property
    def address(self) -> str:
        return f"ipmi://127.0.0.1:{self.port}"

    def power(self) -> str:
        """What the chassis script was last told: on or off."""
        return "on" if (self.dir / "power").read_text().strip() == "1" else "off"

    def boot(self) -> str:
        return (self.dir / "boot").read_text().strip()

    def calls(self) -> list[str]:
        return (self.dir / "calls.log").read_text().splitlines()

    def ipmitool(self, *command: str, password: str | None = None) -> subprocess.CompletedProcess[str]:
        """`ipmitool` itself against this BMC, in its namespace: the reference the tests compare with."""
        return self.ns.run(["ipmitool", "-I", "lanplus", "-C", "3", "-H", "127.0.0.1", "-p", str(self.port),
                            "-U", self.user, "-E", *command], check=False,
                           env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
                                "IPMI_PASSWORD": password if password is not None else self.password})


SILENT = """import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", int(sys.argv[1])))
print("ready", flush=True)
time.sleep(3600)  # bound, never read: no answer and no ICMP port unreachable either
"""

GARBAGE = """import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", int(sys.argv[1])))
print("ready", flush=True)
while True:
    data, peer = s.recvfrom(4096)
    s.sendto(b"\\x06\\x00\\xff\\x07 this is no IPMI answer " + data[:8], peer)
"""


def udp_peer(ns: Namespace, port: int, kind: str) -> Proc:
    """A silent or a garbage-answering UDP peer on 127.0.0.1:`port` in `ns` (kind: silent | garbage)."""
    code = {"silent": SILENT, "garbage": GARBAGE}[kind]
    path = ns.lab.tmp_path(f"{kind}.py")
    path.write_text(code)
    return ns.popen([sys.executable, str(path), str(port)])
