"""The dashboard: GET / is a page that polls the JSON API (no libraries, no build step, no CDN).

  GET /                       services/static/dashboard.html
  GET /static/{name}          its script, style sheet and icon (a fixed set of names: nothing else is served)
The page itself holds no data: its script reads /api/v1/status, /pools, /hosts, /machines and /images every
2 s, so it shows what the API shows (each machine's hardware summary and power state are the machines list's
`hardware` and `power`); reading the lists needs a token of any role (without one the page reads
the open status only and asks for a token). Its one write is assigning a machine that waits for a host
(POST /api/v1/machines/{mac}/assign, the operator role). The token is typed into the page, which keeps it in
sessionStorage and sends it only as a bearer header; with [https] on, the page asked over plain HTTP from
anywhere but loopback redirects to the HTTPS listener, so the token never crosses the LAN in clear. The
server never puts it in the page, and the CSP allows only this origin's script (no inline code) to run.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from importlib.resources import files
from types import MappingProxyType

from aiohttp import web

from services.api_context import API
from services.auth import from_this_box, over_tls
from services.routes import Answer, Call, Param, Route

STATIC_DIR = files("services") / "static"  # package data: found in an installed wheel too
ASSETS = {
    "dashboard.js": "application/javascript",
    "dashboard.css": "text/css",
    "favicon.svg": "image/svg+xml",  # linked by the page: a browser asking for /favicon.ico would get a 404
}

HEADERS = {"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff",
           "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
                                      "form-action 'none'"}  # forms are handled by the script, never sent


@dataclass(frozen=True, slots=True)
class DashboardFiles:
    page: bytes
    assets: Mapping[str, bytes]


@functools.cache
def shipped_files() -> DashboardFiles:
    """Read once: the files ship with the code, and a page load should not touch the disk."""
    return DashboardFiles(page=(STATIC_DIR / "dashboard.html").read_bytes(),
                          assets=MappingProxyType({name: (STATIC_DIR / name).read_bytes() for name in ASSETS}))


async def index(call: Call[None]) -> web.Response:
    request = call.request
    port = request.app[API].live.https_port if API in request.app else None
    if port is not None and not over_tls(request) and not from_this_box(request):
        # The page sends the token it is given to where it came from: from the LAN, that must be HTTPS.
        raise web.HTTPFound(f"https://{request.url.host}{'' if port == 443 else f':{port}'}/")
    return web.Response(body=shipped_files().page, content_type="text/html", charset="utf-8", headers=HEADERS)


async def asset(call: Call[None]) -> web.Response:
    name = call.request.match_info["name"]
    assets = shipped_files().assets
    if name not in assets:
        raise web.HTTPNotFound(text="not found\n")
    return web.Response(body=assets[name], content_type=ASSETS[name], charset="utf-8", headers=HEADERS)


ROUTES = [
    Route("GET", "/", index,
          "The dashboard (HTML; its script polls /api/v1/status, pools, hosts, machines and images, and assigns a "
          "waiting machine with the admin token the operator types in)",
          {200: Answer("the page", media="text/html"),
           302: Answer("to the HTTPS listener (with [https] on, a page asked over plain HTTP from the LAN)")}),
    Route("GET", "/static/{name}", asset,
          "The dashboard's script, style sheet and icon (dashboard.js, dashboard.css, favicon.svg)",
          {200: Answer("the file"), 404: Answer("no such asset")},
          params={"name": Param("the asset's name", enum=tuple(ASSETS))}),
]
