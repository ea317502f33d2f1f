"""GET /client/{name}: scripts that run on other machines, such as prepareclient for a master client.

    curl -o prepareclient http://<imageserver>/client/prepareclient && sh prepareclient --server <imageserver>

The files come from a directory the appliance hands in as ctx.live.client_scripts (a
services.live.ClientScripts: services never import the appliance, which owns the packaged data). Only the
names listed there are served: no path from the URL ever reaches the filesystem.
"""

from __future__ import annotations

from aiohttp import web

from domain.errors import NotFound
from services.errors import json_error
from services.routes import Call, Param, Route, error, text


async def client_script(call: Call[None]) -> web.Response:
    scripts = call.ctx.live.client_scripts
    name = call.request.match_info["name"]
    if scripts is None:
        raise NotFound("no client scripts are configured on this imageserver")
    if name not in scripts.names:
        raise NotFound(f"no client script {name!r} (available: {', '.join(scripts.names)})")
    try:
        body = scripts.read(scripts.directory / name)
    except OSError as e:
        return json_error(500, f"client script {name} cannot be read: {e.strerror}")
    return web.Response(body=body, content_type="text/x-shellscript",
                        headers={"Content-Disposition": f'attachment; filename="{name}"',
                                 "Cache-Control": "no-cache"})


ROUTES = [Route("GET", "/client/{name}", client_script,
                "A script for other machines: prepareclient (master client) or updateclient (installed host)",
                {200: text("POSIX sh script", "text/x-shellscript"), 404: error("no such client script")},
                params={"name": Param(enum=("prepareclient", "updateclient"))})]
