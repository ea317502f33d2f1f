"""BitTorrent metadata and tracker decisions, sans-IO: bencode, the info dictionary of a multi-file
torrent (BEP 3) with a web seed (BEP 19 `url-list`), and a bounded tracker swarm (BEP 3 announce,
BEP 23 compact peers).

No files, sockets or clock here: the caller feeds file contents to `PieceHasher` in torrent order,
passes `now` to the swarm, and writes/serves the bytes.
"""

from __future__ import annotations

import hashlib
import ipaddress
import random
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from urllib.parse import unquote_to_bytes

DEFAULT_PIECE_LENGTH = 256 * 1024


class TorrentError(ValueError):
    """Malformed bencode, a bad torrent or a bad announce; the message says what."""


@dataclass(frozen=True, slots=True)
class Raw:
    """Bytes that are already bencoded (a stored info dictionary spliced into a served torrent)."""

    data: bytes


Bencodable = int | bytes | str | list["Bencodable"] | dict[bytes | str, "Bencodable"] | Raw


def bencode(value: Bencodable) -> bytes:
    out: list[bytes] = []
    _encode(value, out)
    return b"".join(out)


def _encode(value: Bencodable, out: list[bytes]) -> None:
    if isinstance(value, Raw):
        out.append(value.data)
    elif isinstance(value, bool):
        raise TorrentError("bencode has no booleans")
    elif isinstance(value, int):
        out.append(b"i%de" % value)
    elif isinstance(value, str | bytes):
        data = value.encode("utf-8", "surrogateescape") if isinstance(value, str) else value
        out.append(b"%d:" % len(data))
        out.append(data)
    elif isinstance(value, list):
        out.append(b"l")
        for item in value:
            _encode(item, out)
        out.append(b"e")
    elif isinstance(value, dict):
        items = sorted(((k.encode("utf-8", "surrogateescape") if isinstance(k, str) else k, v)
                        for k, v in value.items()), key=lambda kv: kv[0])
        out.append(b"d")
        for key, item in items:
            _encode(key, out)
            _encode(item, out)
        out.append(b"e")
    else:
        raise TorrentError(f"cannot bencode {type(value).__name__}")


def bdecode(data: bytes) -> object:
    value, end = _decode(data, 0, 0)
    if end != len(data):
        raise TorrentError(f"trailing bytes after the bencoded value at offset {end}")
    return value


def _decode(data: bytes, i: int, depth: int) -> tuple[object, int]:
    if depth > 64:
        raise TorrentError("bencode nested too deeply")
    if i >= len(data):
        raise TorrentError("bencode ends early")
    c = data[i:i + 1]
    if c == b"i":
        end = data.find(b"e", i)
        if end < 0:
            raise TorrentError("unterminated integer")
        try:
            return int(data[i + 1:end]), end + 1
        except ValueError:
            raise TorrentError(f"bad integer at offset {i}") from None
    if c == b"l":
        items, i = [], i + 1
        while data[i:i + 1] != b"e":
            item, i = _decode(data, i, depth + 1)
            items.append(item)
        return items, i + 1
    if c == b"d":
        d: dict[bytes, object] = {}
        i += 1
        while data[i:i + 1] != b"e":
            key, i = _decode(data, i, depth + 1)
            if not isinstance(key, bytes):
                raise TorrentError("dictionary key is not a string")
            d[key], i = _decode(data, i, depth + 1)
        return d, i + 1
    if c.isdigit():
        colon = data.find(b":", i)
        if colon < 0:
            raise TorrentError("unterminated string length")
        n = int(data[i:colon])
        if colon + 1 + n > len(data):
            raise TorrentError("string runs past the end")
        return data[colon + 1:colon + 1 + n], colon + 1 + n
    raise TorrentError(f"unexpected byte {c!r} at offset {i}")


class PieceHasher:
    """SHA-1 of every `piece_length` bytes of the concatenated files, fed in torrent order."""

    def __init__(self, piece_length: int = DEFAULT_PIECE_LENGTH) -> None:
        if piece_length < 16384 or piece_length & (piece_length - 1):
            raise TorrentError(f"piece length {piece_length} is not a power of two >= 16 KiB")
        self.piece_length = piece_length
        self._pieces: list[bytes] = []
        self._current = hashlib.sha1()
        self._filled = 0

    def feed(self, data: bytes | memoryview) -> None:
        view = memoryview(data)
        while view:
            take = min(len(view), self.piece_length - self._filled)
            self._current.update(view[:take])
            self._filled += take
            view = view[take:]
            if self._filled == self.piece_length:
                self._pieces.append(self._current.digest())
                self._current, self._filled = hashlib.sha1(), 0

    def finish(self) -> bytes:
        if self._filled:
            self._pieces.append(self._current.digest())
            self._current, self._filled = hashlib.sha1(), 0
        return b"".join(self._pieces)


@dataclass(frozen=True, slots=True)
class TorrentFile:
    path: str  # "/"-separated, relative to the torrent's top directory
    length: int


def info_dict(name: str, files: Iterable[TorrentFile], pieces: bytes, piece_length: int,
              private: bool = True) -> bytes:
    """The bencoded info dictionary (its SHA-1 is the infohash). Private (BEP 27): peers come only
    from our tracker, never DHT or peer exchange, so the swarm is the hosts the tracker admits."""
    entries: list[Bencodable] = []
    for f in files:
        parts = f.path.split("/")
        if not f.path or any(p in ("", ".", "..") for p in parts):
            raise TorrentError(f"bad path in torrent: {f.path!r}")
        entries.append({"length": f.length, "path": list(parts)})
    if not entries:
        raise TorrentError("a torrent needs at least one non-empty file")
    info: dict[bytes | str, Bencodable] = {"name": name, "piece length": piece_length, "pieces": pieces,
                                           "files": entries}
    if private:
        info["private"] = 1
    return bencode(info)


def infohash(info: bytes) -> bytes:
    return hashlib.sha1(info).digest()


def torrent_bytes(info: bytes, announce: str | None, web_seed: str | None) -> bytes:
    """A .torrent around a stored info dictionary, with this client's tracker and web seed URLs."""
    top: dict[bytes | str, Bencodable] = {"info": Raw(info), "created by": "imageserver"}
    if announce:
        top["announce"] = announce
    if web_seed:
        top["url-list"] = [web_seed]
    return bencode(top)


# ---- tracker ----

@dataclass(frozen=True, slots=True)
class Announce:
    info_hash: bytes
    peer_id: bytes
    port: int
    left: int | None
    event: str


def parse_announce(raw_query: str) -> Announce:
    """The announce's query string as sent (info_hash and peer_id are raw bytes, %-escaped)."""
    fields: dict[str, bytes] = {}
    for part in raw_query.split("&"):
        key, _, value = part.partition("=")
        if key:
            fields[key] = unquote_to_bytes(value.replace("+", " "))
    info_hash, peer_id = fields.get("info_hash", b""), fields.get("peer_id", b"")
    if len(info_hash) != 20:
        raise TorrentError("info_hash must be 20 bytes")
    if len(peer_id) != 20:
        raise TorrentError("peer_id must be 20 bytes")
    try:
        port = int(fields.get("port", b""))
        left = int(fields["left"]) if "left" in fields else None
    except ValueError:
        raise TorrentError("port and left must be integers") from None
    if not 1 <= port <= 65535:
        raise TorrentError(f"port {port} is out of range")
    event = fields.get("event", b"").decode("ascii", "replace")
    if event not in ("", "started", "completed", "stopped", "empty"):
        raise TorrentError(f"unknown event {event!r}")
    return Announce(info_hash, peer_id, port, left, event)


@dataclass(slots=True)
class Peer:
    ip: str
    port: int
    seen: float
    seeding: bool


@dataclass(slots=True)
class Swarms:
    """Peers per infohash, keyed by the admitted host's name (one entry per host, whatever it sends),
    at most `max_peers` per torrent and `max_torrents` torrents; entries older than `ttl` are dropped."""

    max_peers: int = 256
    max_torrents: int = 64
    ttl: float = 300.0
    swarms: dict[bytes, dict[str, Peer]] = field(default_factory=dict)

    def announce(self, host: str, ip: str, a: Announce, now: float) -> bool:
        """Record (or, on "stopped", drop) the host's peer; False if a cap kept it out."""
        self.expire(now)
        swarm = self.swarms.get(a.info_hash)
        if a.event == "stopped":
            if swarm is not None:
                swarm.pop(host, None)
            return True
        if swarm is None:
            if len(self.swarms) >= self.max_torrents:
                return False
            swarm = self.swarms[a.info_hash] = {}
        if host not in swarm and len(swarm) >= self.max_peers:
            return False
        swarm[host] = Peer(ip, a.port, now, a.left == 0)
        return True

    def expire(self, now: float) -> None:
        for key in list(self.swarms):
            swarm = self.swarms[key]
            for host in [h for h, p in swarm.items() if now - p.seen > self.ttl]:
                del swarm[host]
            if not swarm:
                del self.swarms[key]

    def peers(self, info_hash: bytes, exclude: str, limit: int = 50, rng: random.Random | None = None) -> list[Peer]:
        """Up to `limit` peers other than `exclude`'s; with `rng`, a random sample when there are more. (The
        first `limit` in order would send every machine of a bigger swarm to the same ones, which then hit
        their peer limit and refuse the rest.)"""
        swarm = self.swarms.get(info_hash, {})
        others = [p for h, p in swarm.items() if h != exclude]
        if rng is not None and len(others) > limit:
            return rng.sample(others, limit)
        return others[:limit]


def compact(peers: Iterable[tuple[str, int]]) -> bytes:
    out = []
    for ip, port in peers:
        out.append(ipaddress.IPv4Address(ip).packed + struct.pack("!H", port))
    return b"".join(out)


def announce_reply(peers: Iterable[tuple[str, int]], interval: int, complete: int = 0,
                   incomplete: int = 0) -> bytes:
    return bencode({"interval": interval, "min interval": max(1, interval // 2), "complete": complete,
                    "incomplete": incomplete, "peers": compact(peers)})


def announce_failure(reason: str) -> bytes:
    return bencode({"failure reason": reason})


def decode_torrent(data: bytes) -> Mapping[bytes, object]:
    top = bdecode(data)
    if not isinstance(top, dict) or not isinstance(top.get(b"info"), dict):
        raise TorrentError("not a torrent: no info dictionary")
    return top
