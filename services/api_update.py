"""What `updateclient` on an installed host talks to: its target version, its reports, a reinstall request.

  GET  /api/v1/hosts/{name}/update-target[?image=NAME&version=N]
        {"host", "image", "version", "module", "assigned", "rsync_port", "rsync_host"?, "rsync_user"?,
        "rsync_password"?}: the version the host should sync to (its assignment, the image's newest when
        unpinned) or the one it names (rollback, roll-forward, another image); 409 if that version is not
        captured. Open; asked with the host's update token from the host's own address (or the admin token) it
        also grants the asking address rsync access to that image for an hour (in memory) and names the rsync
        credentials; the update token from another address is 403.
  POST /api/v1/hosts/{name}/update-events   {"stage": "start"|"done"|"failed", "image", "version", "detail"?}
        "done" sets hosts.running_version and hosts.last_update.
  POST /api/v1/hosts/{name}/autoinstall     the host installs again at its next boot: state assigned, a fresh
        install token; the answer carries what the local boot loader entry needs (kernel and initrd URLs
        and the installer's command line with the new token), so the host can boot the installer from
        its own disk where PXE is not an option.

Both POSTs take the bearer <token> where the token is the host's update token (written
by its autoinstall script to /etc/systemimager/updateclient.conf as TOKEN=), sent from the host's own
address (its own, reserved or leased: the rule of its install credentials), or the admin token; the
install token is refused. A reinstall replaces the install token and with it the update token derived
from it, so a system that asked to be reinstalled stops reporting.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from domain import updates
from domain.errors import Conflict
from domain.requests import UpdateEvent
from domain.updates import Reinstall, UpdateRecorded, UpdateTargetView
from protocols.bootscript import BootScriptError, BootServer, installer_arguments
from services.auth import Auth, is_update_caller
from services.routes import Call, Param, Route, error, ok
from state import credentials, installs
from state import updates as stored_updates
from state.eventlog import EventLog
from state.hosts import effective_host_by_name, host_by_name

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
    kernel_args: str | None = None


async def target(call: Call[None]) -> UpdateTargetView:
    ctx, request = call.ctx, call.request
    name = request.match_info["name"]
    found = updates.update_target(ctx.store.reader, name, request.query.get("image") or None,
                                  request.query.get("version"))
    settings = ctx.live.install_settings()
    out = UpdateTargetView.of(found, settings.rsync_port, settings.address)
    host = host_by_name(ctx.store.reader, name)
    grants = ctx.live.rsync_grants
    if (host is not None and host.install_token and isinstance(grants, credentials.RsyncGrants)
            and request.remote and is_update_caller(call.bearer, ctx.admin_token, host, ctx.sources(),
                                                    request.remote)):
        # The host's own update: its address may pull that image for a while, with this password.
        password = credentials.update_rsync_password(host.install_token)
        grants.grant(credentials.RsyncClient(name, password, request.remote, out.image, None),
                     ctx.clock() + GRANT_SECONDS)
        refresh = ctx.live.rsync_refresh
        if callable(refresh):
            refresh()
        out = replace(out, rsync_user=name, rsync_password=password)
    return out


async def event(call: Call[UpdateEvent]) -> UpdateRecorded:
    ctx, name, host = call.ctx, call.caller.name, call.caller.host
    assert name is not None and host is not None  # an UPDATE route's caller names its host
    body = await call.body()
    report = updates.check_report(body.stage, body.image, body.version, body.detail)
    stage, image, version = report.stage, report.image, report.version
    now = ctx.clock()
    await ctx.store.journal.run(stored_updates.report_op(name, now, stage, image, version, report.detail))
    log.info(f"update-{stage}", hostname=name, image=image or "-", version=version or "-")
    return UpdateRecorded(host=name, stage=stage, image=image, version=version, running_version=(
        version if stage == "done" else host.running_version))


async def autoinstall(call: Call[None]) -> Reinstall:
    ctx, name, host, request = call.ctx, call.caller.name, call.caller.host, call.request
    assert name is not None and host is not None
    host = effective_host_by_name(ctx.store.reader, name) or host  # with what it inherits from its profile
    if not host.image:
        raise Conflict(f"host {name} has no image to install")
    now = ctx.clock()
    token = credentials.new_token()
    await ctx.store.journal.run(installs.reinstall_op(name, token, now))
    await ctx.store.journal.run(stored_updates.report_op(name, now, "autoinstall", host.image, host.version,
                                                  "reinstall asked for by updateclient --autoinstall"))
    await ctx.store.journal.flush()
    address = ctx.live.install_settings().address or request.url.host or ""
    port = request.url.port or 80
    boot = ctx.live.boot
    server = BootServer(address=address, http_port=port,
                        kernel_cmdline=boot.settings.kernel_cmdline if boot is not None else "")
    cmdline = None
    if host.mac:
        # The same arguments a PXE boot of this host would hand the installer now (new token included).
        plan = _Plan(mac=host.mac, hostname=name, image=host.image,
                     version=installs.resolve_version(ctx.store.reader, host), install_token=token,
                     kernel_args=host.kernel_args)
        try:
            cmdline = installer_arguments(plan, server)
        except BootScriptError as e:
            raise Conflict(f"host {name} cannot boot the installer: {e}") from None
    log.info("update-autoinstall", hostname=name, mac=host.mac or "-")
    return Reinstall(host=name, state="assigned", mac=host.mac, kernel=server.file_url(KERNEL),
                     initrd=server.file_url(INITRD), cmdline=cmdline)


ROUTES = [
    Route("GET", "/api/v1/hosts/{name}/update-target", target,
          "The image version the host should sync to: its assignment, or the one named (rollback)",
          {200: ok("the target", UpdateTargetView), 400: error("a malformed version or image name"),
           404: error("no such host"), 409: error("the host has no image, or the version is not captured")},
          query={"image": Param("an image name; none: the host's own (or its profile's)"),
                 "version": Param("a captured version, N or vN (rollback); none: the host's assignment")}),
    Route("POST", "/api/v1/hosts/{name}/update-events", event,
          "updateclient reports start, done or failed; done records the version the host runs",
          {200: ok("recorded", UpdateRecorded), 400: error("the report is malformed"), 404: error("no such host")},
          auth=Auth.UPDATE, body=UpdateEvent, unknown="ignore"),
    Route("POST", "/api/v1/hosts/{name}/autoinstall", autoinstall,
          "updateclient --autoinstall: install the host again at its next boot (fresh install token)",
          {200: ok("what a boot loader entry for the installer needs", Reinstall), 404: error("no such host"),
           409: error("the host has no image")},
          auth=Auth.UPDATE),
]
