"""The state directory runs full (ENOSPC) under the running daemon.

The daemon runs in its own mount namespace (`unshare -m`) with its state directory on a tiny tmpfs
that only it can see; the test reaches the files through /proc/<pid>/root and fills the tmpfs up.

What is promised while nothing can be committed (see services/dhcp.py, "store full"):
- a new machine gets no ACK (nothing durable, so nothing promised); the log says why;
- a machine whose lease row is on disk is still ACKed when it renews, from memory, but only for the
  time its durable row still has: a restart could not know about more;
- once there is space again, the new machine gets its lease and it is on disk.
"""

from __future__ import annotations

import errno
import json
import shlex
import subprocess
import sys
import time
from ipaddress import IPv4Address
from pathlib import Path

import pytest

from lab.clients import DhcpClientError, Udhcpc
from lab.netns import Lab
from tests.system._daemon import API_PORT, Imageserver, env

pytestmark = pytest.mark.system

TMPFS_SIZE = "4m"


def fill(path: Path) -> None:
    """Write `path` until the filesystem is full (big writes first, then the last pages one by one)."""
    with open(path, "wb", buffering=0) as f:
        for size in (1 << 20, 4096, 512):
            while True:
                try:
                    f.write(b"\xff" * size)
                except OSError as e:
                    if e.errno != errno.ENOSPC:
                        raise
                    break


# The venv's interpreter, for the shell lines below (a bare python3 may lack the project's packages).
PY = shlex.quote(sys.executable)


def start_on_tmpfs(server: Imageserver, timeout: float = 20) -> None:
    """`imageserver serve` in a private mount namespace whose state dir is a TMPFS_SIZE tmpfs."""
    server.state_dir.mkdir(parents=True, exist_ok=True)
    script = (f"mount -t tmpfs -o size={TMPFS_SIZE},mode=0700 imageserver-test {server.state_dir} && "
              f"exec {PY} -m appliance.cli serve --config {server.config}")
    server.daemon.proc = server.ns.popen(["unshare", "-m", "--propagation", "private", "sh", "-c", script], env=env())
    server.daemon.wait_ready(timeout)


READ_LEASES = """
import json, sqlite3, sys
conn = sqlite3.connect(f"file:{sys.argv[1]}?mode=ro", uri=True, timeout=10)
print(json.dumps(conn.execute("SELECT mac, ip, expires FROM leases").fetchall()))
"""


def leases_on_disk(server: Imageserver) -> dict[str, tuple[IPv4Address, float]]:
    """The lease rows, read inside the daemon's mount namespace (SQLite resolves /proc/<pid>/root to our /)."""
    assert server.proc is not None
    out = subprocess.run(["nsenter", f"--mount=/proc/{server.proc.pid}/ns/mnt", sys.executable, "-c", READ_LEASES,
                          str(server.state_dir / "imageserver.db")], capture_output=True, text=True, check=True,
                         timeout=30).stdout
    return {mac: (IPv4Address(ip), expires) for mac, ip, expires in json.loads(out)}


def test_a_full_state_dir_refuses_new_leases_and_keeps_renewing_durable_ones(lab: Lab) -> None:
    seg = lab.segment("cli", "cli")
    (one, c1), (two, c2) = seg.members
    srv, subnet = seg.server, seg.subnet
    server = Imageserver(seg.server, seg.bridge, seg.server_ip, seg.subnet, lease_time=600)
    start_on_tmpfs(server)
    # The daemon's view of its state dir (the tmpfs is mounted in its namespace only).
    state = Path(f"/proc/{server.proc.pid}/root") / str(server.state_dir).lstrip("/")

    first = Udhcpc(one, c1)
    lease = first.start()
    durable = leases_on_disk(server)
    mac_one = next(mac for mac, (ip, _) in durable.items() if ip == lease.ip)
    durable_until = durable[mac_one][1]

    filler = state / "filler"
    fill(filler)
    time.sleep(1.5)  # a renewal's time left must visibly shrink below the full lease time

    # A new machine: no ACK while nothing can be committed.
    second = Udhcpc(two, c2, tries=2, pause=1)
    with pytest.raises(DhcpClientError):
        second.obtain()
    assert "event=ack-withheld" in server.log() or "reason=store-full" in server.log(), server.log()[-2000:]

    # The machine with a durable lease renews: ACKed, for no longer than its row on disk still runs.
    renewed = first.renew()
    assert renewed.ip == lease.ip
    assert renewed.lease_time is not None and renewed.lease_time <= int(durable_until - time.time()) + 1, \
        (renewed.lease_time, durable_until - time.time())
    assert leases_on_disk(server)[mac_one] == durable[mac_one]

    status = server.api("/api/v1/status")
    assert status["services"]["dhcp"]["state"] == "running"
    assert status["store"]["last_error"], status.get("store")
    assert status["store"]["ok"] is False

    # An API change that must be committed: 503, said plainly (retry later), not a 500 with a traceback.
    token = (state / "admin.token").read_text().strip()
    answer = srv.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST",
                      "-H", f"Authorization: Bearer {token}", "-H", "Content-Type: application/json",
                      "-d", '{"name": "full1", "mac": "52:54:00:00:99:01"}',
                      f"http://127.0.0.1:{API_PORT}/api/v1/hosts"], check=False).stdout
    assert answer == "503", answer

    filler.unlink()
    got = second.obtain()
    assert got.ip in subnet and got.ip != lease.ip
    on_disk = leases_on_disk(server)
    assert got.ip in {ip for ip, _ in on_disk.values()}
    assert "Traceback" not in server.log()


def test_a_start_on_a_full_state_dir_exits_1_with_the_reason_not_a_traceback(lab: Lab) -> None:
    pair = lab.server_client_pair()
    server = Imageserver(pair.server, pair.server_if, pair.server_ip, pair.subnet)
    state = server.state_dir
    state.mkdir(parents=True, exist_ok=True)
    # In the private mount namespace: the database a previous run left, then the disk fills, then the start.
    script = (
        f"mount -t tmpfs -o size={TMPFS_SIZE},mode=0700 imageserver-test {state} && "
        f"{PY} -c 'from pathlib import Path; from state.db import connect, db_path; "
        f"connect(db_path(Path(\"{state}\"))).close()' && "
        f"{PY} -c 'from pathlib import Path; from tests.system.test_disk_full import fill; "
        f"fill(Path(\"{state}/filler\"))' && "
        f"{PY} -m appliance.cli serve --config {server.config}; echo exit=$?"
    )
    result = pair.server.run(["unshare", "-m", "--propagation", "private", "sh", "-c", script], env=env(),
                             check=False, timeout=60)
    out = result.stdout + result.stderr
    assert "exit=1" in out, out[-3000:]
    assert "event=start-failed" in out and "free_bytes=" in out, out[-3000:]
    assert "Traceback" not in out, out[-3000:]
