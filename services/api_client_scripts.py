"""GET /client/{name}: scripts that run on other machines, such as prepareclient for a master client.

    curl -o prepareclient http://<imageserver>/client/prepareclient && sh prepareclient --server <imageserver>

The files come from a directory the appliance hands in as ctx.live.client_scripts (a
ClientScripts: services never import the appliance, which owns the packaged data). Only the names
listed there are served: no path from the URL ever reaches the filesystem.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from services.api_context import API, json_error


@dataclass(frozen=True, slots=True)
class ClientScripts:
    directory: Path
    names: tuple[str, ...] = ("prepareclient",)
    # A script's served bytes from its file (the appliance assembles some from shared parts).
    read: Callable[[Path], bytes] = Path.read_bytes


async def client_script(request: web.Request) -> web.Response:
    scripts = request.app[API].live.client_scripts
    name = request.match_info["name"]
    if not isinstance(scripts, ClientScripts):
        return json_error(404, "no client scripts are configured on this imageserver")
    if name not in scripts.names:
        return json_error(404, f"no client script {name!r} (available: {', '.join(scripts.names)})")
    try:
        body = scripts.read(scripts.directory / name)
    except OSError as e:
        return json_error(500, f"client script {name} cannot be read: {e.strerror}")
    return web.Response(body=body, content_type="text/x-shellscript",
                        headers={"Content-Disposition": f'attachment; filename="{name}"',
                                 "Cache-Control": "no-cache"})


ROUTES = [web.get("/client/{name}", client_script)]
