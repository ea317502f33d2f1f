"""The BitTorrent transport's routes (the torrents and seeders themselves: services/torrents.py).

- GET /install/{mac}/torrent[?webseed=1]: the host's torrent (same credential rules as its script), whose
  announce and url-list URLs carry that host's key; the infohash is the same for every host of the version.
  The web seed is listed only with ?webseed=1 or when no seeder runs (see torrent_file).
- Tracker (GET /bt/{mac}/{key}/announce) and web seed (BEP 19, GET /bt/{mac}/{key}/seed/NAME_vN/PATH):
  both only for a host due to install, from its own address, with its torrent key (an HMAC of its install
  token, state/credentials.py: the key is in the path, so these routes declare no header credential), and
  only for its own image version. One swarm entry per host, capped per torrent and in number of torrents
  (protocols.torrent.Swarms). The web seed serves exactly the torrent's file list (no other path exists for
  it), read-only, with Range.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass

from aiohttp import web

from domain import installs as use
from domain.errors import Conflict, DomainError, NotFound
from protocols import torrent as bt
from protocols.httppath import PathRefused, path_parts
from services.auth import Auth
from services.errors import http_status, json_error
from services.routes import Answer, Call, Param, Route, binary, error
from services.torrents import Torrents, Version, torrent_name
from state import credentials
from state.eventlog import EventLog

log = EventLog("imageserver.torrents")


def _service(call: Call[None]) -> Torrents:
    torrents = call.ctx.live.torrents
    if torrents is None:
        raise Conflict("the BitTorrent transport is not set up on this imageserver")
    return torrents


@dataclass(frozen=True, slots=True)
class Admitted:
    asked: use.TorrentRequest
    version: Version


async def _admit(call: Call[None], key: str | None) -> Admitted:
    """The host installing from this address with this credential (install token/nonce, or torrent key)."""
    ctx, request = call.ctx, call.request
    asked = use.torrent_request(ctx.sources(), ctx.live.install_settings(), request.match_info["mac"],
                                request.remote, call.bearer if key is None else None, key, ctx.clock())
    v = await _service(call).version(asked.image, asked.version, asked.tree)
    return Admitted(asked, v)


def _server_base(request: web.Request) -> str:
    return f"{request.url.scheme}://{request.url.host}" + (f":{request.url.port}"
                                                           if request.url.port not in (None, 80) else "")


async def torrent_file(call: Call[None]) -> web.StreamResponse:
    a = await _admit(call, None)
    torrents = _service(call)
    seeding = await torrents.ensure_seeder(a.version) is not None
    key = credentials.torrent_key(a.asked.token)
    base = f"{_server_base(call.request)}/bt/{a.asked.mac}/{key}"
    # The web seed only when asked (?webseed=1: the installer's second try) or when there is no
    # seeder: every client of a big swarm pulls from a web seed as hard as from peers, which puts
    # the whole fan-out back on the server's link (bench/fanout.py measured N=10 at 3.2x N=1 with
    # it, 1.4x without).
    with_seed = call.request.query.get("webseed") == "1" or not seeding
    body = bt.torrent_bytes(a.version.info, f"{base}/announce", f"{base}/seed/" if with_seed else None)
    log.info("torrent-served", hostname=a.asked.host, torrent=torrent_name(a.version.image, a.version.version),
             web_seed=with_seed)
    return web.Response(body=body, content_type="application/x-bittorrent")


def _bencoded(status: int, reason: str) -> web.Response:
    return web.Response(status=status, body=bt.announce_failure(reason), content_type="text/plain")


async def announce(call: Call[None]) -> web.StreamResponse:
    # A tracker answers in bencode, refusals too (a BitTorrent client shows the failure reason).
    request = call.request
    try:
        a = await _admit(call, request.match_info["key"])
    except DomainError as e:
        status = http_status(e)
        return _bencoded(status, "no image" if status == 409 else "not admitted")
    try:
        ann = bt.parse_announce(request.rel_url.raw_query_string)
    except bt.TorrentError as e:
        return _bencoded(400, str(e))
    if ann.info_hash != a.version.infohash:
        return _bencoded(200, "not this host's torrent")
    torrents = _service(call)
    ctx = call.ctx
    if not torrents.swarms.announce(a.asked.host, a.asked.ip, ann, ctx.clock()):
        log.warning("tracker-full", torrent=a.version.image, hostname=a.asked.host)
    peers = [(p.ip, p.port) for p in torrents.swarms.peers(ann.info_hash, a.asked.host, rng=torrents.rng)]
    port = await torrents.ensure_seeder(a.version)
    if port is not None and request.url.host:
        peers.append((ctx.live.install_settings().address or request.url.host, port))
    swarm = torrents.swarms.swarms.get(ann.info_hash, {})
    seeding = sum(1 for p in swarm.values() if p.seeding)
    return web.Response(body=bt.announce_reply(peers, torrents.settings.announce_interval,
                                               complete=seeding + 1, incomplete=len(swarm) - seeding),
                        content_type="text/plain")


async def web_seed(call: Call[None]) -> web.StreamResponse:
    a = await _admit(call, call.request.match_info["key"])
    try:
        parts = path_parts(call.request.raw_path)
    except PathRefused as e:
        return json_error(e.status, f"refused path: {e}")
    # /bt/MAC/KEY/seed/NAME/PATH...: only the torrent's own files exist here.
    name, rel = parts[4] if len(parts) > 4 else "", "/".join(parts[5:])
    if name != torrent_name(a.version.image, a.version.version) or rel not in a.version.files:
        raise NotFound("not a file of this host's torrent")
    full = a.version.tree / rel
    try:
        st = os.lstat(full)
    except OSError:
        raise NotFound("not found") from None
    if not stat.S_ISREG(st.st_mode):
        raise NotFound("not found")
    return web.FileResponse(full, headers={"Cache-Control": "no-store", "Content-Type": "application/octet-stream"})


_BENCODE = Answer("bencoded tracker answer (BEP 3; compact peers, BEP 23) or failure reason", media="text/plain",
                  binary=True)
_INSTALLING = Param("the installing host's MAC address")

ROUTES = [
    Route("GET", "/install/{mac}/torrent", torrent_file,
          "The host's torrent of its image version (private; announce and web-seed URLs carry the host's key); "
          "same rules as its script: from its address, with its fetch nonce or install token, while due to "
          "install. ?webseed=1 adds the web seed (url-list)",
          {200: binary("the .torrent", "application/x-bittorrent"), 400: error("not a MAC address"),
           401: error("no or a wrong credential, or an expired install token"),
           403: error("not asked from the host's address"),
           404: error("no host has this MAC, or it is not due to install"),
           409: error("the host has no registered image version")},
          auth=Auth.INSTALL, params={"mac": _INSTALLING}, query={"webseed": Param(enum=("0", "1"))}),
    Route("GET", "/bt/{mac}/{key}/announce", announce,
          "Tracker announce for the host's torrent: peers are the other hosts installing the same version and the "
          "imageserver's seeder; one entry per host, capped per torrent",
          dict.fromkeys((200, 400, 401, 403, 404, 409), _BENCODE), params={"mac": _INSTALLING}),
    Route("GET", "/bt/{mac}/{key}/seed/{torrent}/{path:.+}", web_seed,
          "Web seed (BEP 19): a file of the host's torrent (NAME_vN/PATH), read-only, Range supported; nothing "
          "outside the torrent's file list",
          {200: binary("the file"), 206: binary("a range of it"), 400: error("not a MAC address, or a refused path"),
           401: error("wrong key"), 403: error("not from the host's address"),
           404: error("not a file of this torrent, or no install"),
           409: error("the host has no registered image version")},
          params={"mac": _INSTALLING, "torrent": Param("the torrent's name, NAME_vN"),
                  "path": Param("a file's path in the torrent (deeper paths keep their slashes)")}),
]
