"""The image catalog, read-only: which images and versions the imageserver can install, and who uses them.

  GET /api/v1/images   {"images": [...]}: every registered version (name, then version), each with
                       `newest` (hosts without a pinned version follow it) and `hosts` (assigned to it)
The catalog is written by the offline CLI (getimage, images commit/rm); WAL makes its commits visible
here at once, so this reads the store on every request and keeps nothing. JSON <-> domain.images.catalog.
"""

from __future__ import annotations

from aiohttp import web

from domain.images import catalog
from services.api_context import API


async def list_images(request: web.Request) -> web.Response:
    return web.json_response(catalog(request.app[API].store.reader).as_json(),
                             headers={"Cache-Control": "no-store"})


ROUTES = [web.get("/api/v1/images", list_images)]
