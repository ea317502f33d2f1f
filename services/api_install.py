"""What autoinstall clients talk to: their script, and their progress reports.

  GET  /install/{mac}/script   the host's autoinstall script (<state_dir>/scripts/<image>.master, or the
                               host's override) with its variables prepended (its install token, rsync
                               password and update token among them). Served only to the address leased or
                               reserved for the MAC, only with the bearer <fetch nonce | install token>,
                               only while the host is due to install; it changes no state.
  POST /install/{mac}/events   {"stage", "detail"?, "bytes"?, "total"?}; needs the bearer <install token>
                               (from the script, not the admin token). The first report makes
                               the host *installing*; "done": host *installed*, its lease a reservation ([dhcp]
                               auto_static = "on-install"); "failed": host *failed* with stage and reason;
                               "progress" (bytes, total): the copy's live progress, kept in memory only.
  POST /install/{mac}/inventory  the machine's hardware inventory (domain.inventory.Inventory, at most
                               INVENTORY_MAX_BYTES); the install token, from the address leased or reserved
                               for the MAC. Stored per MAC; the answer names the disk the host's root-device
                               hints choose (domain.hardware.RootDeviceAnswer), or why none.
  POST /inspect/{mac}/inventory  the inventory of a machine no host has, booted to be inspected ([discovery]
                               inspect): its inspect nonce (the boot file's), from the address leased to the
                               MAC, once. Discovery then looks at the machine again (a rule on its hardware
                               may make it a host); the answer says whether it powers off or reboots.

The install token never leaves the server except in the script: boot scripts, pxelinux configs and the
kernel command line carry only a fetch nonce bound to the MAC and the address the boot file was asked
from (state/credentials.py), which opens nothing but this script, from that address. The token is used
up when the host is installed or failed, and a reinstall replaces it.
"""

from __future__ import annotations

from aiohttp import web

from domain import hardware
from domain import installs as use
from domain.install_events import FINAL_STAGES
from domain.installs import ReportRecorded
from domain.inventory import Inventory
from domain.requests import InstallEvent
from services.auth import Auth
from services.routes import Call, Route, error, ok, text
from state.eventlog import EventLog
from state.sightings import Machine

log = EventLog("imageserver.install")


async def script(call: Call[None]) -> web.StreamResponse:
    ctx, url = call.ctx, call.request.url
    req = use.ScriptRequest(mac=call.request.match_info["mac"], peer=call.request.remote, bearer=call.bearer,
                            server=url.host or "",
                            http_base=f"{url.scheme}://{url.host}" + (f":{url.port}" if url.port not in (None, 80)
                                                                       else ""))
    done = use.install_script(ctx.sources(), ctx.live.install_settings(), ctx.store.state_dir / "scripts", req,
                              ctx.clock())
    # A GET changes nothing: the host becomes installing with its first authenticated report.
    refresh = ctx.live.rsync_refresh
    if callable(refresh):
        try:
            refresh()  # its rsync password is live before it starts to pull
        except Exception as e:  # the 2 s refresh loop tries again
            log.warning('rsyncd-refresh-failed', error=str(e))
    log.info('install-script', hostname=done.host, mac=done.mac, image=done.image, version=done.version)
    return web.Response(text=done.text, content_type="text/x-shellscript")


async def event(call: Call[InstallEvent]) -> ReportRecorded:
    ctx = call.ctx
    src, settings, now = ctx.sources(), ctx.live.install_settings(), ctx.clock()
    mac, host = use.reporting_host(src, settings, call.request.match_info["mac"], call.bearer, now)
    report = use.InstallReport.of(await call.body())
    live = ctx.live.progress
    if report.stage == "progress":
        # Copy progress, every second or so: the host's live progress, not a timeline row.
        live.update(host.name, now, report.bytes or 0, report.total)
        return use.ReportRecorded(host.name, report.stage, host.state)
    state = await ctx.store.journal.run(use.report_op(src, host, mac, report, now))
    reservation = None
    if report.stage in FINAL_STAGES:
        live.clear(host.name)
    if report.stage == "done":
        reservation, op = use.installed_reservation(ctx.sources(), settings, host, now)
        if op is not None:
            ctx.store.journal.submit(op)
        await ctx.store.journal.flush()
    log.info("install-report" if report.stage not in FINAL_STAGES else f"install-{report.stage}",
             hostname=host.name, mac=mac, stage=report.stage, state=state)
    return use.ReportRecorded(host.name, report.stage, state, reservation)


# An inventory is a few kilobytes (a 4-socket machine's CPU flags, dozens of disks and NICs): far below this.
INVENTORY_MAX_BYTES = 256 * 1024


async def inventory(call: Call[Inventory]) -> hardware.RootDeviceAnswer:
    ctx = call.ctx
    src, now = ctx.sources(), ctx.clock()
    mac, host = hardware.inventory_host(src, ctx.live.install_settings(), call.request.match_info["mac"],
                                        call.request.remote, call.bearer, now)
    answer, op = hardware.take_inventory(src, host, mac, await call.body(), now)
    await ctx.store.journal.run(op)
    log.info("install-inventory", hostname=host.name, mac=mac, root_device=answer.root_device,
             hints=answer.hints, failure=answer.failure)
    return answer


async def inspection(call: Call[Inventory]) -> hardware.InspectAnswer:
    ctx = call.ctx
    src, now, boot = ctx.sources(), ctx.clock(), ctx.live.boot
    mac = hardware.inspected_machine(src, boot.inspect_key if boot is not None else None,
                                     call.request.match_info["mac"], call.request.remote, call.bearer)
    await ctx.store.journal.run(hardware.take_inspection(mac, await call.body(), now))
    host = None
    discovery, machines = ctx.live.discovery, ctx.live.machines
    machine = (machines.get(mac) if machines is not None else None) or Machine(mac, now, now)
    if discovery is not None:
        # With its inventory stored, a rule on its hardware may match now; its host is written before the
        # answer, so the reboot it is told to do finds its install.
        host = discovery.inspected(machine, now)
        if host is not None:
            await ctx.store.journal.flush()
    log.info("inspect-inventory", mac=mac, host=host or "-", then="reboot" if host else "poweroff")
    return hardware.InspectAnswer(mac, "reboot" if host else "poweroff", host)


ROUTES = [
    Route("GET", "/install/{mac}/script", script,
          "The host's autoinstall script with its variables prepended (install token, rsync credentials, update "
          "token); only from the address leased or reserved for the MAC, with its bearer fetch nonce or install "
          "token; changes no state",
          {200: text("POSIX sh script", "text/x-shellscript"),
           401: error("no fetch nonce or install token, a wrong one, or an expired one"),
           403: error("not asked from the address leased or reserved for this MAC"),
           404: error("no host has this MAC, or the image has no autoinstall script"),
           409: error("the host has no image or version to install, or is installed")},
          auth=Auth.INSTALL),
    Route("POST", "/install/{mac}/events", event,
          "An installer's progress report; done: host installed and its lease a reservation; failed: host failed "
          "with stage and reason; progress (bytes, total): live copy progress",
          {200: ok("recorded", ReportRecorded), 400: error("malformed report"),
           401: error("missing or wrong install token"), 404: error("no host has this MAC")},
          auth=Auth.INSTALL, body=InstallEvent, unknown="ignore"),
    Route("POST", "/install/{mac}/inventory", inventory,
          "An installer's hardware inventory of its machine (stored per MAC); the answer names the disk the host's "
          "root-device hints choose, or why none does (the install then fails with that reason)",
          {200: ok("stored; the root device", hardware.RootDeviceAnswer),
           400: error("malformed inventory (the key that does not fit is named), or larger than the cap"),
           401: error("missing, wrong or expired install token"),
           403: error("not sent from the address leased or reserved for this MAC"),
           404: error("no host has this MAC")},
          auth=Auth.INSTALL, body=Inventory, unknown="ignore", max_bytes=INVENTORY_MAX_BYTES),
    Route("POST", "/inspect/{mac}/inventory", inspection,
          "An inspected machine's hardware inventory ([discovery] inspect: a machine no host has, booted once to "
          "collect it); stored per MAC; the answer says whether it powers off or (made a host by a discovery rule "
          "on its hardware) reboots to install",
          {200: ok("stored; what the machine does next", hardware.InspectAnswer),
           400: error("malformed inventory (the key that does not fit is named), or larger than the cap"),
           401: error("missing or wrong inspect nonce"),
           403: error("inspection is off, or not sent from the address leased to this MAC"),
           409: error("the machine is a host's, or was inspected already")},
          auth=Auth.INSTALL, body=Inventory, unknown="ignore", max_bytes=INVENTORY_MAX_BYTES),
]
