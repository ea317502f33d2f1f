"""The image catalog, read-only: which images and versions the imageserver can install, and who uses them.

  GET /api/v1/images   {"images": [...]}: every registered version (name, then version), each with
                       `newest` (hosts without a pinned version follow it) and `hosts` (assigned to it)
The catalog is written by the offline CLI (getimage, images commit/rm); WAL makes its commits visible
here at once, so this reads the store on every request and keeps nothing.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from services.api_context import ApiContext
from state.images import ImageVersion, hosts_using, list_versions
from state.transports import DEFAULT, image_transport


def image_json(iv: ImageVersion, newest: bool, hosts: list[str], transport: str = DEFAULT) -> dict[str, Any]:
    # The fields of `imageserver images list --json`, plus what the dashboard shows beside them;
    # the recorded disk layout stays out (it is long: `images show` and the install script have it).
    return {"name": iv.name, "version": iv.version, "created": iv.created, "source": iv.source,
            "files": iv.files, "bytes": iv.bytes, "path": iv.path, "note": iv.note,
            "newest": newest, "hosts": hosts, "transport": transport}


def routes(ctx: ApiContext) -> list[web.RouteDef]:
    async def list_images(request: web.Request) -> web.Response:
        conn = ctx.store.reader
        versions = list_versions(conn)
        top = {iv.name: iv.version for iv in versions}  # ordered by version: the last one wins
        images = [image_json(iv, top[iv.name] == iv.version, hosts_using(conn, iv.name, iv.version),
                             image_transport(conn, iv.name) or DEFAULT)
                  for iv in versions]
        return web.json_response({"images": images}, headers={"Cache-Control": "no-store"})

    return [web.get("/api/v1/images", list_images)]
