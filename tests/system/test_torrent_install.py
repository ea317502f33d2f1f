"""The BitTorrent transport against the real daemon on a lab LAN (one switch, a namespace per machine).

Two machines due to install image web fetch it at once with the installer's own fetch step
(TRANSPORT=bittorrent: aria2c from the daemon's seeder, its tracker and its web seed, then rsync
--size-only for metadata); each installed tree is identical to what a plain rsync install writes
(tests/system/_treecmp.py: owners, modes, mtimes, hard links, symlinks, devices, xattrs, ACLs). A third
machine (a stranger) gets no torrent, no peers and no web-seed file, with or without node0's credentials;
node0 cannot leave its torrent by path. When the torrent side is down, the install falls back to rsync
and the tree is still identical.
"""

from __future__ import annotations

import os
import shutil
import signal
import time
from pathlib import Path
from urllib.parse import quote_from_bytes

import pytest

from lab.netns import Lab
from protocols import torrent as bt
from state import credentials
from tests.system._mastertree import build_master
from tests.system._torrentworld import IMAGE, World, mac_of, make_world
from tests.system._treecmp import compare_trees

pytestmark = [pytest.mark.system,
              pytest.mark.skipif(any(shutil.which(t) is None for t in ("aria2c", "rsync", "curl", "tc")),
                                 reason="aria2c, rsync, curl and tc are needed")]


def image_tree(tmp: Path) -> Path:
    tmp.mkdir()
    master = build_master(tmp / "tree", tmp / "disk.img")
    # Data worth a swarm: several pieces, files crossing piece boundaries, a hard-linked big file.
    big = master.root / "usr/share/big"
    big.mkdir(parents=True)
    for i, size in enumerate((3 << 20, 700_001, 1 << 20, 5)):
        (big / f"blob{i}").write_bytes(os.urandom(size))
    os.link(big / "blob1", master.root / "usr/bin/blob1-link")
    (master.root / "var/empty-file").write_bytes(b"")
    (master.root / "var/empty-dir").mkdir()
    os.utime(big / "blob2", ns=(1_600_000_000_123_456_789, 1_600_000_000_123_456_789))
    return master.root


@pytest.fixture
def world(lab: Lab) -> World:
    return make_world(lab, image_tree(lab.tmp_path("img")), clients=3, installing=2)


def finished(w: World, procs: list, timeout: float = 90) -> list[str]:  # type: ignore[type-arg]
    logs = []
    for p in procs:
        code = p.wait(timeout)
        logs.append(p.output())
        assert code == 0, p.output()[-3000:]
    return logs


def test_two_machines_install_by_bittorrent_identical_to_rsync(world: World) -> None:
    w = world
    tree = w.server.state_dir / "images" / IMAGE / "v1"
    bt_dirs = [w.lab.tmp_path(f"bt{i}") for i in (0, 1)]
    logs = finished(w, [w.start_fetch(i, "bittorrent", bt_dirs[i]) for i in (0, 1)])
    for log in logs:
        assert "by BitTorrent" in log and "metadata by rsync" in log and "BitTorrent failed" not in log, log
    ref = w.lab.tmp_path("rsync0")
    finished(w, [w.start_fetch(0, "rsync", ref)])
    for d in bt_dirs:
        problems = compare_trees(ref, d)
        assert problems == [], "\n".join(problems[:20])
    assert compare_trees(tree, ref) == []  # and rsync's is the image
    # The data came by BitTorrent: both machines were in the tracker's swarm, the seeder ran.
    log = w.server.log()
    assert log.count("event=torrent-served") >= 2 and "event=seeder-started" in log, log[-3000:]


def test_the_torrent_tracker_and_web_seed_refuse_a_stranger_and_a_path_out(world: World) -> None:
    w = world
    node0, stranger = w.star.clients[0], w.star.clients[2]
    token = w.token("node0")
    key = credentials.torrent_key(token)
    mac = mac_of(0)
    auth = ("-H", f"Authorization: Bearer {token}")
    # node0's own torrent: the same infohash for every host, its own key in the URLs.
    code, body = w.curl(node0, f"/install/{mac}/torrent", *auth)
    assert code == 200, body
    top = bt.decode_torrent(body)
    assert key.encode() in top[b"announce"] and top[b"info"][b"private"] == 1  # type: ignore[index,operator]
    info_hash = bt.infohash(bt.bencode(top[b"info"]))  # type: ignore[arg-type]
    query = (f"info_hash={quote_from_bytes(info_hash)}&peer_id={'-XX0000-' + 'a' * 12}&port=6999&left=100"
             "&compact=1&event=started")
    seed = f"/bt/{mac}/{key}/seed/{IMAGE}_v1/usr/share/big/blob0"
    assert w.curl(node0, f"/bt/{mac}/{key}/announce?{query}")[0] == 200
    code, data = w.curl(node0, seed, "-r", "0-99")
    assert code == 206 and len(data) == 100

    # The stranger: no torrent, no peers, no file, with node0's token and key, from its own address.
    assert w.curl(stranger, f"/install/{mac}/torrent", *auth)[0] == 403
    code, body = w.curl(stranger, f"/bt/{mac}/{key}/announce?{query}")
    assert code == 403 and b"peers" not in body
    assert w.curl(stranger, seed)[0] == 403
    # node0 without its key, or asking for a path outside its torrent's file list.
    assert w.curl(node0, f"/install/{mac}/torrent")[0] == 401
    assert w.curl(node0, f"/bt/{mac}/t{'0' * 40}/announce?{query}")[0] == 401
    assert w.curl(node0, f"/bt/{mac}/t{'0' * 40}/seed/{IMAGE}_v1/usr/share/big/blob0")[0] == 401
    for path in (f"{IMAGE}_v1/../../../../etc/passwd", f"{IMAGE}_v1/%2e%2e/%2e%2e/etc/passwd",
                 f"{IMAGE}_v1/bin/sh",  # a symlink in the image: not a torrent file
                 "other_v1/etc/passwd",
                 f"{IMAGE}_v1/usr/share/big/blob1"):  # the second path (walk order) of a hard link
        code, data = w.curl(node0, f"/bt/{mac}/{key}/seed/{path}")
        assert code in (400, 404) and b"root:" not in data, (path, code)
    # A host that is done has no torrent any more.
    assert w.curl(node0, f"/install/{mac}/events", *auth, "-X", "POST", "-H", "Content-Type: application/json",
                  "--data", '{"stage": "done"}')[0] == 200
    assert w.curl(node0, f"/install/{mac}/torrent", *auth)[0] == 404
    assert w.curl(node0, seed)[0] == 404


def test_an_install_falls_back_to_rsync_when_the_torrent_side_is_down(world: World) -> None:
    w = world
    # Nothing listens on the torrent side (tracker, web seed, .torrent), the rsync daemon is up.
    target = w.lab.tmp_path("fallback")
    t0 = time.monotonic()
    log = finished(w, [w.start_fetch(0, "bittorrent", target,
                                     IMAGESERVER_URL=f"http://{w.star.server.ip}:1")])[0]
    assert "BitTorrent failed" in log, log
    assert time.monotonic() - t0 < 60
    ref = w.lab.tmp_path("rsync0")
    finished(w, [w.start_fetch(1, "rsync", ref)])
    assert compare_trees(ref, target) == []


def test_a_stalled_swarm_is_finished_from_the_web_seed(world: World) -> None:
    """The seeder hangs (SIGSTOP: the tracker still lists it, it answers nothing) and no other machine
    installs: the first aria2c run stalls, the second one, with the web seed, gets every file."""
    w = world
    # Start the seeder (the first torrent fetch does) and find it.
    assert w.curl(w.star.clients[1], f"/install/{mac_of(1)}/torrent", "-H",
                  f"Authorization: Bearer {w.token('node1')}")[0] == 200
    seeders = w.server.api("/api/v1/status")["transports"]["bittorrent"]["seeders"]
    pid = seeders[f"{IMAGE}_v1"]["pid"]
    os.kill(pid, signal.SIGSTOP)
    try:
        target = w.lab.tmp_path("webseed")
        log = finished(w, [w.start_fetch(0, "bittorrent", target, BT_STOP_TIMEOUT="5")])[0]
    finally:
        os.kill(pid, signal.SIGCONT)
    assert "stalled: again with the web seed" in log and "BitTorrent failed" not in log, log
    assert "metadata by rsync" in log
    ref = w.lab.tmp_path("rsync1")
    finished(w, [w.start_fetch(1, "rsync", ref)])
    assert compare_trees(ref, target) == []
