"""What `updateclient` on an installed host talks to: its target version, its reports, a reinstall request.

  GET  /api/v1/hosts/{name}/update-target[?image=NAME&version=N]
        {"host", "image", "version", "module", "assigned", "rsync_port", "rsync_host"?, "rsync_user"?,
        "rsync_password"?}: the version the host should sync to (its assignment, the image's newest when
        unpinned) or the one it names (rollback, roll-forward, another image); 409 if that version is not
        captured. Open; asked with the host's update token (or the admin token) it also grants the asking
        address rsync access to that image for an hour (in memory) and names the rsync credentials.
  POST /api/v1/hosts/{name}/update-events   {"stage": "start"|"done"|"failed", "image", "version", "detail"?}
        "done" sets hosts.running_version and hosts.last_update.
  POST /api/v1/hosts/{name}/autoinstall     the host installs again at its next boot: state assigned, a fresh
        install token; the answer carries what the local boot loader entry needs (kernel and initrd URLs
        and the installer's command line with the new token), so the host can boot the installer from
        its own disk where PXE is not an option.

Both POSTs take `Authorization: Bearer <token>` where the token is the host's update token (written
by its autoinstall script to /etc/systemimager/updateclient.conf as TOKEN=) or the admin token; the
install token is refused. A reinstall replaces the install token and with it the update token derived
from it, so a system that asked to be reinstalled stops reporting.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass, replace
from typing import Any

from aiohttp import web

from domain.bodies import parse_body
from domain.requests import UpdateEvent
from domain.updates import Reinstall, UpdateRecorded, UpdateTargetView
from protocols.bootscript import BootScriptError, BootServer, installer_arguments
from services.api_context import API, ApiContext, json_body, json_error
from state import credentials, installs, updates
from state.eventlog import EventLog

log = EventLog("imageserver.update")

KERNEL = "installer/vmlinuz"  # relative to the boot root, as /boot/files/ serves it
INITRD = "installer/initrd.img"
GRANT_SECONDS = 3600.0  # how long an update-target answer lets the host's address pull its image


@dataclass(frozen=True, slots=True)
class _Plan:
    """An install decision for protocols.bootscript.installer_arguments (the BootPlan attributes)."""

    mac: str
    hostname: str
    image: str
    version: int | None
    install_token: str
    kind: str = "install"
    fetch_nonce: str | None = None
    reason: str = "updateclient --autoinstall"
    poll_seconds: int = 0


def own_auth(handler: Any) -> Any:
    """These handlers check the host's own token (or the admin token) themselves; see services/http.py."""
    handler.own_auth = True
    return handler


def _bearer(request: web.Request) -> str:
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    return given.strip() if scheme.lower() == "bearer" else ""


def _authorized(ctx: ApiContext, host: installs.InstallHost, given: str) -> bool:
    """The admin token, or the host's own update token; never the install token (a leaked install token
    must not ask for a reinstall nor pose as the installed system)."""
    if not given:
        return False
    if hmac.compare_digest(given.encode(), ctx.admin_token.encode()):
        return True
    return host.install_token is not None and credentials.same(given, credentials.update_token(host.install_token))


def _unauthorized(name: str) -> web.Response:
    response = json_error(401, f"updates of {name} need its token (TOKEN= in /etc/systemimager/updateclient.conf, "
                               "the host's install token) or the admin token: Authorization: Bearer <token>")
    response.headers["WWW-Authenticate"] = 'Bearer realm="imageserver-update"'
    return response


def _settings(ctx: ApiContext) -> tuple[str | None, int]:
    install = ctx.live.install
    return getattr(install, "address", None), int(getattr(install, "rsync_port", 873))


def _host_or_404(ctx: ApiContext, name: str) -> installs.InstallHost:
    host = installs.host_by_name(ctx.store.reader, name)
    if host is None:
        raise web.HTTPNotFound(text=f'{{"error": "no host named {name!r}"}}', content_type="application/json")
    return host


async def target(request: web.Request) -> web.Response:
    ctx = request.app[API]
    name = request.match_info["name"]
    try:
        image = request.query.get("image") or None
        if image is not None:
            updates.check_image_name(image)
        version = updates.check_version(request.query.get("version"))
        found = updates.resolve_target(ctx.store.reader, name, image, version)
    except LookupError as e:
        return json_error(404, str(e))
    except updates.UpdateError as e:
        return json_error(409, str(e))
    address, rsync_port = _settings(ctx)
    out = UpdateTargetView.of(found, rsync_port, address)
    host = installs.host_by_name(ctx.store.reader, name)
    grants = ctx.live.rsync_grants
    if (host is not None and host.install_token and isinstance(grants, credentials.RsyncGrants)
            and request.remote and _authorized(ctx, host, _bearer(request))):
        # The host's own update: its address may pull that image for a while, with this password.
        password = credentials.update_rsync_password(host.install_token)
        grants.grant(credentials.RsyncClient(name, password, request.remote, out.image, None),
                     ctx.clock() + GRANT_SECONDS)
        refresh = ctx.live.rsync_refresh
        if callable(refresh):
            refresh()
        out = replace(out, rsync_user=name, rsync_password=password)
    return web.json_response(out.as_json())


@own_auth
async def event(request: web.Request) -> web.Response:
    ctx = request.app[API]
    name = request.match_info["name"]
    host = _host_or_404(ctx, name)
    if not _authorized(ctx, host, _bearer(request)):
        return _unauthorized(name)
    body = parse_body(UpdateEvent, await json_body(request), unknown="ignore")
    try:
        stage = updates.check_stage(body.stage)
        if stage == "autoinstall":
            raise updates.UpdateError("ask for a reinstall with POST .../autoinstall")
        image = body.image
        if image is not None:
            updates.check_image_name(image)
        version = updates.check_version(body.version)
        detail = updates.check_detail(body.detail)
    except updates.UpdateError as e:
        return json_error(400, str(e))
    now = ctx.clock()
    await ctx.store.journal.run(updates.report_op(name, now, stage, image, version, detail))
    log.info(f"update-{stage}", hostname=name, image=image or "-", version=version or "-")
    return web.json_response(UpdateRecorded(host=name, stage=stage, image=image, version=version, running_version=(
        version if stage == "done" else host.running_version)).as_json())


@own_auth
async def autoinstall(request: web.Request) -> web.Response:
    ctx = request.app[API]
    name = request.match_info["name"]
    host = _host_or_404(ctx, name)
    if not _authorized(ctx, host, _bearer(request)):
        return _unauthorized(name)
    if not host.image:
        return json_error(409, f"host {name} has no image to install")
    now = ctx.clock()
    token = installs.new_token()
    await ctx.store.journal.run(installs.reinstall_op(name, token, now))
    await ctx.store.journal.run(updates.report_op(name, now, "autoinstall", host.image, host.version,
                                                  "reinstall asked for by updateclient --autoinstall"))
    await ctx.store.journal.flush()
    address = _settings(ctx)[0] or request.url.host or ""
    port = request.url.port or 80
    boot = ctx.live.boot
    server = BootServer(address=address, http_port=port,
                        kernel_cmdline=getattr(getattr(boot, "settings", None), "kernel_cmdline", ""))
    cmdline = None
    if host.mac:
        # The same arguments a PXE boot of this host would hand the installer now (new token included).
        plan = _Plan(mac=host.mac, hostname=name, image=host.image,
                     version=installs.resolve_version(ctx.store.reader, host), install_token=token)
        try:
            cmdline = installer_arguments(plan, server)
        except BootScriptError as e:
            return json_error(409, f"host {name} cannot boot the installer: {e}")
    log.info("update-autoinstall", hostname=name, mac=host.mac or "-")
    return web.json_response(Reinstall(host=name, state="assigned", mac=host.mac, kernel=server.file_url(KERNEL),
                                       initrd=server.file_url(INITRD), cmdline=cmdline).as_json())


ROUTES = [
    web.get("/api/v1/hosts/{name}/update-target", target),
    web.post("/api/v1/hosts/{name}/update-events", event),
    web.post("/api/v1/hosts/{name}/autoinstall", autoinstall),
]
