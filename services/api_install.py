"""What autoinstall clients talk to: their script, and their progress reports.

  GET  /install/{mac}/script   the host's autoinstall script (<state_dir>/scripts/<image>.master, or the
                               host's override) with its variables prepended (its install token, rsync
                               password and update token among them). Served only to the address leased or
                               reserved for the MAC, only with `Authorization: Bearer <fetch nonce | install
                               token>`, only while the host is due to install; it changes no state.
  POST /install/{mac}/events   {"stage", "detail"?, "bytes"?, "total"?}; needs `Authorization: Bearer
                               <install token>` (from the script, not the admin token). The first report makes
                               the host *installing*; "done": host *installed*, its lease a reservation ([dhcp]
                               auto_static = "on-install"); "failed": host *failed* with stage and reason;
                               "progress" (bytes, total): the copy's live progress, kept in memory only.

The install token never leaves the server except in the script: boot scripts, pxelinux configs and the
kernel command line carry only a fetch nonce bound to the MAC and the address the boot file was asked
from (state/credentials.py), which opens nothing but this script, from that address. The token is used
up when the host is installed or failed, and a reinstall replaces it.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from domain import installs as use
from domain.installs import InstallSettings
from services.api_context import API, ApiContext, json_body
from state.eventlog import EventLog

__all__ = ["ROUTES", "InstallSettings", "own_auth"]

log = EventLog("imageserver.install")


def own_auth(handler: Any) -> Any:
    """Mark a handler that checks its own credentials (the install token), so the HTTP server's
    blanket admin-token rule for POST does not apply to it."""
    handler.own_auth = True
    return handler


def _settings(ctx: ApiContext) -> InstallSettings:
    return ctx.live.install or InstallSettings()


def _bearer(request: web.Request) -> str | None:
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    return given.strip() if scheme.lower() == "bearer" and given.strip() else None


async def script(request: web.Request) -> web.StreamResponse:
    ctx = request.app[API]
    url = request.url
    req = use.ScriptRequest(mac=request.match_info["mac"], peer=request.remote, bearer=_bearer(request),
                            server=url.host or "",
                            http_base=f"{url.scheme}://{url.host}" + (f":{url.port}" if url.port not in (None, 80)
                                                                       else ""))
    done = use.install_script(ctx.sources(), _settings(ctx), ctx.store.state_dir / "scripts", req, ctx.clock())
    # A GET changes nothing: the host becomes installing with its first authenticated report.
    refresh = ctx.live.rsync_refresh
    if callable(refresh):
        try:
            refresh()  # its rsync password is live before it starts to pull
        except Exception as e:  # the 2 s refresh loop tries again
            log.warning('rsyncd-refresh-failed', error=str(e))
    log.info('install-script', hostname=done.host, mac=done.mac, image=done.image, version=done.version)
    return web.Response(text=done.text, content_type="text/x-shellscript")


@own_auth
async def event(request: web.Request) -> web.Response:
    ctx = request.app[API]
    src, settings, now = ctx.sources(), _settings(ctx), ctx.clock()
    mac, host = use.reporting_host(src, settings, request.match_info["mac"], _bearer(request), now)
    report = use.InstallReport.from_json(await json_body(request))
    live = ctx.live.progress
    if report.stage == "progress":
        # Copy progress, every second or so: the host's live progress, not a timeline row.
        live.update(host.name, now, report.bytes or 0, report.total)
        return web.json_response(use.ReportRecorded(host.name, report.stage, host.state).as_json())
    state = await ctx.store.journal.run(use.report_op(src, host, mac, report, now))
    reservation = None
    if report.stage in use.installs.FINAL_STAGES:
        live.clear(host.name)
    if report.stage == "done":
        reservation, op = use.installed_reservation(ctx.sources(), settings, host, now)
        if op is not None:
            ctx.store.journal.submit(op)
        await ctx.store.journal.flush()
    log.info("install-report" if report.stage not in use.installs.FINAL_STAGES else f"install-{report.stage}",
             hostname=host.name, mac=mac, stage=report.stage, state=state)
    return web.json_response(use.ReportRecorded(host.name, report.stage, state, reservation).as_json())


ROUTES = [
    web.get("/install/{mac}/script", script),
    web.post("/install/{mac}/events", event),
]
