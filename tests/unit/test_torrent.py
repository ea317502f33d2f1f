"""Torrents of image versions (protocols/torrent.py, services/torrents.py), cross-checked against aria2c's
own reading of the file (`aria2c --show-files`) and a piece-by-piece download check by aria2c itself."""

from __future__ import annotations

import hashlib
import os
import random
import re
import shutil
import subprocess
from pathlib import Path
from urllib.parse import quote_from_bytes

import pytest

from domain.host_errors import HostError
from domain.hostbook import check_transport
from protocols import torrent as bt
from services.torrents import build_info, piece_length_for, torrent_files

needs_aria2c = pytest.mark.skipif(shutil.which("aria2c") is None, reason="aria2c is not installed")


def tree(root: Path) -> Path:
    (root / "etc/deep/er").mkdir(parents=True)
    (root / "usr/bin").mkdir(parents=True)
    (root / "etc/hostname").write_text("master\n")
    (root / "etc/deep/er/a file with spaces").write_bytes(os.urandom(1000))
    (root / "usr/bin/big").write_bytes(os.urandom(600_000))  # crosses piece boundaries
    os.link(root / "usr/bin/big", root / "usr/bin/big-link")  # one inode: one torrent entry
    (root / "etc/empty").write_bytes(b"")  # no data: comes with the rsync pass
    os.symlink("hostname", root / "etc/alias")
    (root / os.fsdecode(b"caf\xe9")).write_bytes(b"latin-1 name")  # not UTF-8: comes with the rsync pass
    with open(root / "usr/bin/sparse", "wb") as f:  # holes: rsync -S keeps them holes
        f.truncate(1 << 20)
    return root


def test_bencode_round_trip_sorts_keys_and_refuses_bad_input() -> None:
    value = {"z": 1, "a": [b"x", "\u00e9", -3], "m": {"k": b""}}
    data = bt.bencode(value)
    assert data == b"d1:al1:x2:\xc3\xa9i-3ee1:md1:k0:e1:zi1ee"
    assert bt.bdecode(data) == {b"a": [b"x", "é".encode(), -3], b"m": {b"k": b""}, b"z": 1}
    for bad in (b"i12", b"5:abc", b"d1:ai1e", b"x", b"i1ei2e", b"l" * 100 + b"e" * 100):
        with pytest.raises(bt.TorrentError):
            bt.bdecode(bad)
    with pytest.raises(bt.TorrentError):
        bt.bencode(True)  # type: ignore[arg-type]


def test_pieces_are_sha1_of_the_concatenated_files() -> None:
    data = os.urandom(40_000) + os.urandom(9)
    h = bt.PieceHasher(16384)
    for i in range(0, len(data), 7000):  # fed in odd chunks, across file and piece boundaries
        h.feed(data[i:i + 7000])
    want = b"".join(hashlib.sha1(data[i:i + 16384]).digest() for i in range(0, len(data), 16384))
    assert h.finish() == want
    with pytest.raises(bt.TorrentError):
        bt.PieceHasher(10000)
    assert piece_length_for(64 << 20) == 256 * 1024 and piece_length_for(8 << 30) == 2 << 20


def test_torrent_files_are_the_regular_data_files_one_path_per_inode(tmp_path: Path) -> None:
    files = torrent_files(tree(tmp_path))
    assert [(f.path, f.length) for f in files] == [
        ("etc/deep/er/a file with spaces", 1000), ("etc/hostname", 7), ("usr/bin/big", 600_000)]


@needs_aria2c
def test_aria2c_reads_our_torrent_as_we_wrote_it(tmp_path: Path) -> None:
    root = tree(tmp_path / "tree")
    info = build_info(root, "web_v3")
    path = tmp_path / "web_v3.torrent"
    path.write_bytes(bt.torrent_bytes(info, "http://127.0.0.1:9/bt/x/announce", "http://127.0.0.1:9/bt/x/seed/"))
    shown = subprocess.run(["aria2c", "--show-files", str(path)], capture_output=True, text=True, check=True).stdout
    assert re.search(r"Info Hash: ([0-9a-f]{40})", shown)[1] == bt.infohash(info).hex()  # type: ignore[index]
    assert "Mode: multi" in shown and "Name: web_v3" in shown and "Piece Length: 256KiB" in shown
    listed = re.findall(r"\|\./web_v3/(.+)\n\s+\|.*\(([\d,]+)\)", shown)
    assert [(p, int(n.replace(",", ""))) for p, n in listed] == [
        ("etc/deep/er/a file with spaces", 1000), ("etc/hostname", 7), ("usr/bin/big", 600_000)]
    assert "http://127.0.0.1:9/bt/x/announce" in shown
    top = bt.decode_torrent(path.read_bytes())
    assert top[b"info"][b"private"] == 1 and top[b"url-list"] == [b"http://127.0.0.1:9/bt/x/seed/"]  # type: ignore


@needs_aria2c
def test_aria2c_checks_every_piece_of_the_tree_against_our_hashes(tmp_path: Path) -> None:
    """aria2c --check-integrity over the real files (dir/name = the tree) finds them all complete; one
    flipped byte makes it re-fetch that piece (it has no source: it fails), so the hashes are really checked.
    No tracker, DHT or peer exchange: aria2c sends nothing anywhere."""
    root = tree(tmp_path / "seed" / "web_v1")
    path = tmp_path / "t.torrent"
    path.write_bytes(bt.torrent_bytes(build_info(root, "web_v1"), None, None))
    argv = ["aria2c", "--check-integrity=true", "--seed-time=0", "--enable-dht=false", "--bt-enable-lpd=false",
            "--enable-peer-exchange=false", "--bt-stop-timeout=2", f"--listen-port={random.randrange(20000, 60000)}",
            "--console-log-level=error", "--summary-interval=0", f"--dir={tmp_path / 'seed'}", "-T", str(path)]
    ok = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    with open(root / "usr/bin/big", "r+b") as f:
        f.seek(300_000)
        byte = f.read(1)
        f.seek(300_000)
        f.write(bytes([byte[0] ^ 1]))
    bad = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert bad.returncode != 0


def test_announce_is_parsed_from_the_raw_query_and_refuses_junk() -> None:
    ih, pid = bytes(range(20)), b"-AR1360-abcdefghijkl"
    q = f"info_hash={quote_from_bytes(ih)}&peer_id={quote_from_bytes(pid)}&port=6881&left=0&event=completed"
    a = bt.parse_announce(q)
    assert (a.info_hash, a.peer_id, a.port, a.left, a.event) == (ih, pid, 6881, 0, "completed")
    for bad in ("", q.replace("port=6881", "port=0"), q.replace("event=completed", "event=evil"),
                q.replace(quote_from_bytes(ih), "short"), q.replace("left=0", "left=x")):
        with pytest.raises(bt.TorrentError):
            bt.parse_announce(bad)


def test_swarms_hold_one_entry_per_host_under_caps_and_forget_the_silent() -> None:
    s = bt.Swarms(max_peers=3, max_torrents=2, ttl=60)

    def ann(ih: bytes, port: int, event: str = "") -> bt.Announce:
        return bt.Announce(ih, b"p" * 20, port, 5, event)

    a, b, c = b"a" * 20, b"b" * 20, b"c" * 20
    for i in range(3):
        assert s.announce(f"h{i}", f"10.0.0.{i}", ann(a, 7000 + i), 0)
    assert s.announce("h0", "10.0.0.0", ann(a, 7100), 1)  # the same host again: replaced, not added
    assert not s.announce("h9", "10.0.0.9", ann(a, 7009), 1)  # the torrent is full
    assert [(p.ip, p.port) for p in s.peers(a, exclude="h1")] == [("10.0.0.0", 7100), ("10.0.0.2", 7002)]
    # More peers than an answer holds: a random sample, so a big swarm does not all go to the same few.
    picked = {tuple(sorted(p.ip for p in s.peers(a, exclude="h1", limit=1, rng=random.Random(seed))))
              for seed in range(20)}
    assert picked == {("10.0.0.0",), ("10.0.0.2",)}
    assert s.announce("h0", "10.0.0.0", ann(b, 1), 1)
    assert not s.announce("h0", "10.0.0.0", ann(c, 1), 1)  # too many torrents
    assert s.announce("h2", "10.0.0.2", ann(a, 1, "stopped"), 2)
    assert len(s.swarms[a]) == 2
    s.expire(100)
    assert s.swarms == {}
    reply = bt.bdecode(bt.announce_reply([("10.0.0.1", 6881)], 30))
    assert reply[b"peers"] == bytes([10, 0, 0, 1, 0x1A, 0xE1]) and reply[b"interval"] == 30  # type: ignore


def test_transport_names_are_checked() -> None:
    assert check_transport("bittorrent") == "bittorrent" and check_transport("") is None
    with pytest.raises(HostError, match="rsync, bittorrent"):
        check_transport("carrier-pigeon")
