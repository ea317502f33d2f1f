"""Multicast installs (udpcast) on one L2 segment: the real daemon, real udp-sender/udp-receiver, openssl and
GNU tar, run by the installer's own shell functions (the script the daemon serves to each host).

Three hosts join one session and unpack the stream into their targets: each tree is identical to the image
(owners, modes, ACLs, xattrs, hard links, devices, FIFOs, symlinks, contents). On the same segment a
stranger's udp-receiver hears the whole stream and gets only ciphertext; a second stranger that stops
answering is dropped by the slow-receiver policy while the hosts finish. Nobody but a host, from its own
address, with its install token, gets a seat (the session's key). A host whose multicast fails pulls by
rsync and ends with the same tree.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from domain.hosts import new_host_op
from lab.netns import Lab, Namespace, Proc, descendant_named
from state.db import connect, db_path
from state.images import ImageVersion, insert_version
from tests.installer_sh import RUNTIME_DIR, runtime_header
from tests.system._daemon import API_PORT, Imageserver, env
from tests.system._mastertree import build_master
from tests.system._treecmp import compare_trees

pytestmark = [pytest.mark.system,
              pytest.mark.skipif(any(shutil.which(t) is None for t in ("udp-sender", "udp-receiver", "openssl")),
                                 reason="udpcast and openssl are needed (deps/apt-packages.txt)")]

RSYNC_PORT = 8873
PORTBASE = 9300
RDV = "239.255.77.9"
MACS = ("52:54:00:16:00:01", "52:54:00:16:00:02", "52:54:00:16:00:03")
MARKER = b"welcome to the master"  # etc/motd's text: never on the wire in the clear


def script_of(server: Imageserver, ns: Namespace, ip: str, mac: str, token: str) -> str:
    """The script the daemon serves to this host (curl from the host's address with its install token),
    cut before the layout's steps: what is left is the installer's variables and functions."""
    r = ns.run(["curl", "-sSf", "--max-time", "10", "--interface", ip, "-H", f"Authorization: Bearer {token}",
                f"http://{server.address}:{API_PORT}/install/{mac}/script"], timeout=20)
    return r.stdout.split("# ---- generated from the layout")[0]


def run_pull(ns: Namespace, script: str, target: Path, iface: str, transport: str, lab: Lab,
             extra_env: dict[str, str] | None = None) -> Proc:
    """pull_image (or pull_multicast alone) of the served script, in the host's namespace, into `target`; the ESP
    excluded, as the generated steps do for a FAT mount (pull_fat fills it; not part of this test)."""
    path = lab.tmp_path("pull.sh")
    call = ("pull_multicast --exclude=/boot/efi || { echo \"MC-FAILED $MULTICAST_WHY\"; exit 7; }"
            if transport == "multicast-only" else "pull_image --exclude=/boot/efi")
    path.write_text(script + "\nSTAGE_FILE=''\n" + call + "\n")
    (target / "boot/efi").mkdir(parents=True, exist_ok=True)  # the ESP's mount point, made by mount_fs
    mode = "multicast" if transport == "multicast-only" else transport
    environment = {**env(), "TARGET": str(target), "IFACE": iface, "TRANSPORT": mode,
                   "MULTICAST_DIR": str(lab.tmp_path("mc")),  # each machine's own /tmp: here they share one
                   "PATH": "/usr/sbin:/usr/bin:/sbin:/bin", **(extra_env or {})}
    return ns.popen(["sh", str(path)], env=environment)


def finished(pull: Proc, timeout: float, server: Imageserver) -> int:
    """The pull's exit status; one that hangs fails with what it was doing (its processes, output, the server)."""
    try:
        return pull.wait(timeout)
    except subprocess.TimeoutExpired:
        stuck = subprocess.run(["ps", "-o", "pid,stat,etime,wchan:20,args", "-g", str(pull.pid)],
                               capture_output=True, text=True).stdout
        pull.stop()
        raise AssertionError(f"the pull did not end within {timeout} s; its processes:\n{stuck}\n--- its output:\n"
                             f"{pull.output()[-3000:]}\n--- the server:\n{server.log()[-3000:]}") from None


@pytest.fixture
def site(lab: Lab) -> dict[str, object]:
    return make_site(lab)


def make_site(lab: Lab, multicast_extra: str = "") -> dict[str, object]:
    seg = lab.segment("cli", "cli", "cli", "stranger", "stranger")
    server = Imageserver(seg.server, seg.bridge, seg.server_ip, seg.subnet,
                         extra=f"\n[rsyncd]\nport = {RSYNC_PORT}\n")
    text = server.config.read_text()
    # min_wait 15: udpcast counts the strangers' receivers too, so with the three hosts expected the sender
    # would start as soon as two strangers and one host joined; the wait lets every host join first.
    # retries_until_drop 20: udp-sender's waits for an answer grow, so 8 unanswered requests are ~0.1 s, 20 about
    # 9 s, 30 about 20 s. With 8, a loaded CI box (VMs writing their disks beside this test) stalled the hosts'
    # receivers (tar behind them writing the tree) for 0.25 s and the sender dropped all five receivers at once;
    # 20 still drops the stopped stranger within seconds while the hosts ride out such stalls.
    text = text.replace(
        "[http]\n", f'[multicast]\nenabled = true\nportbase = {PORTBASE}\nrdv_address = "{RDV}"\n'
                    f"start_window = 25\nmin_wait = 15\nretries_until_drop = 20\n{multicast_extra}\n[http]\n")
    server.config.write_text(text)
    tree = server.state_dir / "images" / "web" / "v1"
    master = build_master(tree, lab.tmp_path("master.disk"))
    for junk in ("tmp/runtime-junk", "run/pidfile"):
        (tree / junk).unlink()
    now = time.time()
    conn = connect(db_path(server.state_dir))
    try:
        insert_version(conn, ImageVersion("web", 1, str(tree), now, source="test"))
        for i, mac in enumerate(MACS):
            # transport multicast: the served script says TRANSPORT=multicast (it wins over the environment)
            new_host_op(f"node{i + 1}", mac, "web", seg.host(20 + i), now, None, "multicast")(conn)
    finally:
        conn.close()
    (server.state_dir / "scripts").mkdir()
    # The plan's first lines, as getimage writes them (the runtime from this checkout): the installer's
    # variables and functions, without the layout's steps.
    header = runtime_header("web", 1, RSYNC_PORT, str(seg.server_ip))
    (server.state_dir / "scripts/web.master").write_text(header)
    server.start()
    for i, (ns, iface) in enumerate(seg.members):
        ns.add_address(iface, f"{seg.host(20 + i)}/24")
        ns.ip("route", "add", "224.0.0.0/4", "dev", iface)
    for i, (ns, _) in enumerate(seg.members):  # every member reaches the API before the test begins
        deadline = time.monotonic() + 30
        while (r := ns.run(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "2", "--interface",
                            str(seg.host(20 + i)), f"http://{seg.server_ip}:{API_PORT}/api/v1/status"],
                           check=False)).stdout != "200":
            assert time.monotonic() < deadline, (f"member {i} cannot reach the imageserver: {r.stderr}",
                                                 ns.ip("-br", "addr").stdout, ns.ip("neigh").stdout)
            time.sleep(0.2)
    with server.db() as c:
        tokens = {row[0]: row[1] for row in c.execute("SELECT mac, install_token FROM hosts")}
    return {"seg": seg, "server": server, "tree": tree, "master": master, "tokens": tokens}


def test_three_hosts_get_the_image_by_multicast_and_strangers_get_nothing_they_can_read(
        lab: Lab, site: dict[str, object]) -> None:
    seg, server, tree, tokens = site["seg"], site["server"], site["tree"], site["tokens"]
    assert isinstance(server, Imageserver) and isinstance(tree, Path) and isinstance(tokens, dict)
    members = seg.members  # type: ignore[attr-defined]
    (stranger, s_if), (slow, slow_if) = members[3], members[4]
    stranger_ip, node1_ip = str(seg.host(23)), str(seg.host(20))  # type: ignore[attr-defined]

    # No seat (so no key) without the host's token, from another address, or with another host's token.
    def seat(ns: Namespace, source: str, mac: str, token: str | None) -> str:
        auth = ["-H", f"Authorization: Bearer {token}"] if token else []
        return ns.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "10", "--interface",
                       source, "-X", "POST", *auth, f"http://{server.address}:{API_PORT}/install/{mac}/multicast"],
                      check=False).stdout
    assert seat(stranger, stranger_ip, MACS[0], None) == "401"
    assert seat(stranger, stranger_ip, MACS[0], tokens[MACS[0]]) == "403"
    assert seat(stranger, stranger_ip, MACS[0], tokens[MACS[1]]) == "401"
    assert server.api("/api/v1/status")["services"]["multicast"]["sessions"] == []

    # The strangers listen on the session's ports before anyone joins (udp-receiver needs no seat to hear).
    heard = lab.tmp_path("heard.bin")
    listener = stranger.popen(["udp-receiver", "--nokbd", "--interface", s_if, "--portbase", str(PORTBASE),
                               "--mcast-rdv-address", RDV, "--file", str(heard)])
    laggard = slow.popen(["udp-receiver", "--nokbd", "--interface", slow_if, "--portbase", str(PORTBASE),
                          "--mcast-rdv-address", RDV, "--file", str(lab.tmp_path("slow.bin"))])
    time.sleep(0.5)

    targets, pulls = [], []
    for i in range(3):
        ns, iface = members[i]
        ip, mac = str(seg.host(20 + i)), MACS[i]  # type: ignore[attr-defined]
        script = script_of(server, ns, ip, mac, tokens[mac])
        target = lab.tmp_path(f"target{i + 1}")
        targets.append(target)
        pulls.append(run_pull(ns, script, target, iface, "multicast-only", lab))
    # The slow stranger stops answering once it has joined the session (the transfer itself can be over in
    # less than one status poll): it never acknowledges a slice, the policy drops it, the hosts go on.
    laggard_ip = str(seg.host(24))  # type: ignore[attr-defined]
    deadline = time.monotonic() + 60
    while not any(laggard_ip in s["receivers"]
                  for s in server.api("/api/v1/status")["services"]["multicast"]["sessions"]):
        assert time.monotonic() < deadline, server.log()[-3000:]
        time.sleep(0.05)
    laggard.signal(signal.SIGSTOP)
    try:
        for p in pulls:
            code = finished(p, 180, server)
            assert code == 0, p.output()[-3000:]
    finally:
        laggard.signal(signal.SIGCONT)
    for p in pulls:
        assert "arrived whole" in p.output(), p.output()[-2000:]
    sessions = server.api("/api/v1/status")["services"]["multicast"]["sessions"]
    assert len(sessions) == 1, sessions
    s = sessions[0]
    assert s["state"] == "done" and s["hosts"] == ["node1", "node2", "node3"], s
    assert set(s["receivers"]) >= {str(seg.host(20 + i)) for i in range(4)}, s  # type: ignore[attr-defined]
    assert str(seg.host(24)) in s["dropped"], s  # type: ignore[attr-defined]

    for target in targets:
        problems = compare_trees(tree, target, skip_contents=["boot/efi"], dir_attrs_of=[".", "boot/efi"])
        assert not problems, problems[:20]
    # The stranger heard all of it, and none of it reads.
    listener.wait(30)
    data = heard.read_bytes()
    assert len(data) > 2 * 1024 * 1024, len(data)
    assert MARKER not in data and b"root:x:0:0" not in data
    assert "event=multicast-seat hostname=node1" in server.log()
    assert node1_ip in s["receivers"]


def test_a_host_whose_multicast_fails_pulls_by_rsync_and_ends_with_the_same_tree(
        lab: Lab, site: dict[str, object]) -> None:
    seg, server, tree, tokens = site["seg"], site["server"], site["tree"], site["tokens"]
    assert isinstance(server, Imageserver) and isinstance(tree, Path) and isinstance(tokens, dict)
    ns, iface = seg.members[0]  # type: ignore[attr-defined]
    ip, mac = str(seg.host(20)), MACS[0]  # type: ignore[attr-defined]
    script = script_of(server, ns, ip, mac, tokens[mac])
    # A stream that cannot be unpacked (here: the receiver's key is wrong, so tar sees garbage, as it would
    # from a stranger's sender or injected packets): the host runs a copy of the runtime with that one change.
    runtime = lab.tmp_path("runtime")
    shutil.copytree(RUNTIME_DIR, runtime)
    transport = runtime / "transports/multicast.sh"
    text = transport.read_text()
    broken = text.replace('printf \'%s\' "$key" >"$mc/key"', 'printf \'%s\' "not-the-key" >"$mc/key"')
    assert broken != text
    transport.write_text(broken)
    target = lab.tmp_path("target")
    pull = run_pull(ns, script, target, iface, "multicast", lab, {"INSTALLER_LIB": str(runtime)})
    assert finished(pull, 240, server) == 0, pull.output()[-3000:]
    out = pull.output()
    assert "multicast fallback" in out, out[-2000:]
    assert "arrived whole" not in out
    # (rsync's /boot pass brings the ESP's files too: here no FAT filesystem is mounted there.)
    problems = compare_trees(tree, target, dir_attrs_of=[".", "boot/efi"])
    assert not problems, problems[:20]
    with server.db() as c:
        stages = [r[0] for r in c.execute("SELECT stage FROM install_events WHERE host = 'node1' ORDER BY id")]
    assert "multicast" in stages and "rsync" in stages, stages


def test_a_sender_that_stalls_mid_stream_sends_the_host_to_rsync_instead_of_hanging(lab: Lab) -> None:
    # 4 Mbit/s: the stream takes long enough to be stopped in the middle.
    site = make_site(lab, 'max_bitrate = "4m"\n')
    seg, server, tree, tokens = site["seg"], site["server"], site["tree"], site["tokens"]
    assert isinstance(server, Imageserver) and isinstance(tree, Path) and isinstance(tokens, dict)
    assert server.proc is not None
    ns, iface = seg.members[0]  # type: ignore[attr-defined]
    ip, mac = str(seg.host(20)), MACS[0]  # type: ignore[attr-defined]
    target = lab.tmp_path("target")
    pull = run_pull(ns, script_of(server, ns, ip, mac, tokens[mac]), target, iface, "multicast", lab,
                    {"MULTICAST_RECEIVE_TIMEOUT": "5"})
    deadline = time.monotonic() + 90
    while not any(s["state"] == "sending" for s in server.api("/api/v1/status")["services"]["multicast"]["sessions"]):
        assert time.monotonic() < deadline and pull.alive(), pull.output()[-3000:]
        time.sleep(0.1)
    time.sleep(1)
    sender = descendant_named(server.proc.pid, "udp-sender")
    assert sender is not None, "the session's udp-sender runs under the daemon"
    os.kill(sender, signal.SIGSTOP)  # the sender hangs mid-stream (a wedged machine, not a clean exit)
    try:
        assert finished(pull, 150, server) == 0, pull.output()[-3000:]
    finally:
        os.kill(sender, signal.SIGCONT)
    out = pull.output()
    assert "multicast fallback" in out and "arrived whole" not in out, out[-2000:]
    problems = compare_trees(tree, target, dir_attrs_of=[".", "boot/efi"])
    assert not problems, problems[:20]


def test_multicast_config_errors_name_the_key(tmp_path: Path) -> None:
    from appliance.config import ConfigError, parse_config

    base = {"appliance": {"state_dir": str(tmp_path), "interface": "eth0"}, "dhcp": {"enabled": False}}
    for table, key, words in ((({"enabled": True, "portbase": 9001}), "multicast.portbase", "even"),
                              (({"rdv_address": "10.0.0.1"}), "multicast.rdv_address", "not a multicast"),
                              (({"max_bitrate": "fast"}), "multicast.max_bitrate", "bit rate")):
        with pytest.raises(ConfigError) as e:
            parse_config({**base, "multicast": table})
        assert key in str(e.value) and words in str(e.value), str(e.value)
    with pytest.raises(ConfigError) as e:
        parse_config({"appliance": {"state_dir": str(tmp_path)}, "dhcp": {"enabled": False},
                      "multicast": {"enabled": True}})
    assert "appliance.interface" in str(e.value)
