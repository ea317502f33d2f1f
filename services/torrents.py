"""BitTorrent transport for installs: each image version as a torrent, and its aria2c seeder (the tracker,
web seed and torrent file routes are services/api_torrents.py).

- Torrent: a private multi-file torrent of the version's regular files (one path per inode, empty files
  left out), named NAME_vN; its info dictionary is built once and kept in <state_dir>/torrents/NAME_vN.info.
  What a torrent cannot carry (owners, modes, xattrs, ACLs, hard links, devices, symlinks, empty dirs and
  files, mtimes) is applied after the download by an rsync pass with --size-only (the autoinstall
  script's pull_torrent): it moves no file data, only the metadata rsync would have written.
- Seeder: Debian's `aria2c` with --seed-ratio=0, one supervised child per seeded version, started on the
  first torrent fetch for that version, restarted when it exits. It announces nowhere: the tracker lists it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import shutil
import signal
import stat
from dataclasses import dataclass, field
from pathlib import Path

from domain.status import BittorrentStatus, Seeder, Transports
from protocols import torrent as bt
from services.childproc import die_with_parent
from state.eventlog import EventLog

log = EventLog("imageserver.torrents")

MAX_PIECES = 4096  # the piece length grows with the image so the info dictionary stays small


def piece_length_for(total: int) -> int:
    length = bt.DEFAULT_PIECE_LENGTH
    while total // length > MAX_PIECES:
        length *= 2
    return length


def _sparse(st: os.stat_result) -> bool:
    # Holes would arrive as written zeros: rsync -S (the pass after the torrent) keeps them holes.
    return st.st_blocks * 512 < st.st_size


def _utf8(path: bytes) -> bool:
    # Not every client percent-encodes arbitrary bytes the same way, and the HTTP server refuses
    # non-UTF-8 targets: such a file comes by the rsync pass instead.
    try:
        path.decode()
    except UnicodeDecodeError:
        return False
    return True


def torrent_files(tree: Path) -> list[bt.TorrentFile]:
    """The regular, non-empty, non-sparse files of `tree` with UTF-8 paths, in sorted walk order, the first
    path of each inode only. Everything else arrives with the rsync pass after the download."""
    out: list[bt.TorrentFile] = []
    seen: set[tuple[int, int]] = set()
    root = os.fsencode(tree)

    def walk(rel: bytes) -> None:
        full = os.path.join(root, rel) if rel else root
        with os.scandir(full) as it:
            entries = sorted(it, key=lambda e: e.name)
        for e in entries:
            st = e.stat(follow_symlinks=False)
            path = os.path.join(rel, e.name) if rel else e.name
            if stat.S_ISDIR(st.st_mode):
                walk(path)
            elif (stat.S_ISREG(st.st_mode) and st.st_size > 0 and (st.st_dev, st.st_ino) not in seen
                  and not _sparse(st) and _utf8(path)):
                seen.add((st.st_dev, st.st_ino))
                out.append(bt.TorrentFile(path.decode(), st.st_size))

    walk(b"")
    return out


def build_info(tree: Path, name: str) -> bytes:
    files = torrent_files(tree)
    length = piece_length_for(sum(f.length for f in files))
    hasher = bt.PieceHasher(length)
    for f in files:
        with open(os.path.join(tree, f.path), "rb") as src:
            while chunk := src.read(1 << 20):
                hasher.feed(chunk)
    return bt.info_dict(name, files, hasher.finish(), length)


def torrent_name(image: str, version: int) -> str:
    return f"{image}_v{version}"


@dataclass(slots=True)
class Version:
    image: str
    version: int
    tree: Path
    info: bytes
    infohash: bytes
    files: frozenset[str]


@dataclass(slots=True)
class TorrentSettings:
    aria2c: str = "aria2c"
    seed_port_base: int = 6881  # seeder i listens on base + i
    max_seeders: int = 8
    announce_interval: int = 30
    max_peers: int = 256
    max_torrents: int = 64


@dataclass(slots=True)
class Torrents:
    """The built torrents, the seeders and the swarms of one imageserver."""

    state_dir: Path
    settings: TorrentSettings = field(default_factory=TorrentSettings)
    versions: dict[str, Version] = field(default_factory=dict)  # by torrent name
    seeders: dict[str, tuple[asyncio.subprocess.Process, int]] = field(default_factory=dict)
    swarms: bt.Swarms = field(default_factory=bt.Swarms)
    rng: random.Random = field(default_factory=random.Random)  # which peers an announce is given
    _locks: dict[str, asyncio.Lock] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.swarms = bt.Swarms(max_peers=self.settings.max_peers, max_torrents=self.settings.max_torrents,
                                ttl=self.settings.announce_interval * 4.0)

    @property
    def dir(self) -> Path:
        return self.state_dir / "torrents"

    async def version(self, image: str, number: int, tree: Path) -> Version:
        name = torrent_name(image, number)
        known = self.versions.get(name)
        if known is not None:
            return known
        lock = self._locks.setdefault(name, asyncio.Lock())
        async with lock:
            if name in self.versions:
                return self.versions[name]
            path = self.dir / f"{name}.info"
            info: bytes | None = None
            with contextlib.suppress(OSError):
                info = path.read_bytes()
            if info is None:
                # Hashing a big image takes a while: off the event loop. A version is immutable, so the
                # stored dictionary is good for as long as the version exists.
                info = await asyncio.get_running_loop().run_in_executor(None, build_info, tree, name)
                self.dir.mkdir(mode=0o700, exist_ok=True)
                tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
                tmp.write_bytes(info)
                os.replace(tmp, path)
            files = bt.bdecode(info)[b"files"]  # type: ignore[index]
            names = frozenset("/".join(p.decode("utf-8", "surrogateescape") for p in f[b"path"])  # type: ignore[index,union-attr]
                              for f in files)  # type: ignore[union-attr]
            v = Version(image, number, tree, info, bt.infohash(info), names)
            self.versions[name] = v
            return v

    async def ensure_seeder(self, v: Version) -> int | None:
        """The seeder's port for `v`, starting (or restarting) aria2c if it is not running."""
        name = torrent_name(v.image, v.version)
        running = self.seeders.get(name)
        if running is not None and running[0].returncode is None:
            return running[1]
        binary = shutil.which(self.settings.aria2c)
        if binary is None:
            log.error("seeder-missing", binary=self.settings.aria2c)
            return None
        if running is None and len(self.seeders) >= self.settings.max_seeders:
            oldest = next(iter(self.seeders))
            await self._stop(oldest)
        port = running[1] if running is not None else self._free_port()
        seed_dir = self.dir / "seed"
        seed_dir.mkdir(parents=True, exist_ok=True)
        link = seed_dir / name  # the torrent's top directory is the version's tree
        with contextlib.suppress(FileNotFoundError):
            link.unlink()
        link.symlink_to(v.tree)
        tfile = self.dir / f"{name}.torrent"
        tfile.write_bytes(bt.torrent_bytes(v.info, None, None))
        argv = [binary, "--seed-ratio=0.0", "--bt-seed-unverified=true", "--check-integrity=false",
                "--enable-dht=false", "--enable-dht6=false", "--bt-enable-lpd=false", "--enable-peer-exchange=false",
                f"--listen-port={port}", "--bt-max-peers=0", "--file-allocation=none", "--summary-interval=0",
                "--console-log-level=warn", "--quiet=true", "--auto-file-renaming=false", "--allow-overwrite=false",
                f"--dir={seed_dir}", f"--log={self.dir / (name + '.seed.log')}", "--log-level=notice",
                "-T", str(tfile)]
        proc = await asyncio.create_subprocess_exec(*argv, stdin=asyncio.subprocess.DEVNULL,
                                                    stdout=asyncio.subprocess.DEVNULL,
                                                    stderr=asyncio.subprocess.DEVNULL,
                                                    preexec_fn=die_with_parent(), start_new_session=True)
        self.seeders[name] = (proc, port)
        log.info("seeder-started", torrent=name, pid=proc.pid, port=port, restart=running is not None)
        return port

    def _free_port(self) -> int:
        used = {port for _, port in self.seeders.values()}
        return next(self.settings.seed_port_base + i for i in range(len(used) + 1)
                    if self.settings.seed_port_base + i not in used)

    async def _stop(self, name: str) -> None:
        proc, _ = self.seeders.pop(name)
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), 5)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()

    def status(self) -> Transports:
        """For /api/v1/status: the transports and the BitTorrent side's seeders and swarms."""
        return Transports(
            available=["rsync", "bittorrent"] if shutil.which(self.settings.aria2c) else ["rsync"],
            bittorrent=BittorrentStatus(
                seeders={name: Seeder(pid=proc.pid, port=port, running=proc.returncode is None)
                         for name, (proc, port) in self.seeders.items()},
                swarms={v.image + f"_v{v.version}": len(self.swarms.swarms.get(v.infohash, {}))
                        for v in self.versions.values()}))

    async def close(self) -> None:
        for name in list(self.seeders):
            await self._stop(name)
