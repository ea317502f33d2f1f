"""The image catalog, read-only: which images and versions the imageserver can install, and who uses them.

  GET /api/v1/images   {"images": [...]}: every registered version (name, then version), each with
                       `newest` (hosts without a pinned version follow it) and `hosts` (assigned to it)
The catalog is written by the offline CLI (getimage, images commit/rm); WAL makes its commits visible
here at once, so this reads the store on every request and keeps nothing. JSON <-> domain.images.catalog.
"""

from __future__ import annotations

from aiohttp import web

from domain.images import ImageList, catalog
from services.auth import Auth
from services.routes import Call, Route, ok


async def list_images(call: Call[None]) -> web.Response:
    return call.answer(catalog(call.ctx.store.reader), headers={"Cache-Control": "no-store"})


ROUTES = [Route("GET", "/api/v1/images", list_images,
                "The image catalog: every registered version by name and version, with the hosts using it",
                {200: ok("image versions", ImageList)}, auth=Auth.READER)]
