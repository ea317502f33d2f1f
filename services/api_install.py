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

import json
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network
from typing import Any

from aiohttp import web

from protocols.mac import MacError, normalize_mac
from services.api_context import ApiContext, json_body, json_error
from state import credentials, installs
from state.eventlog import EventLog
from state.hostbook import HostBook, address_op
from state.hosts import HostError
from state.leases import LeaseError, LeaseModel

log = EventLog("imageserver.install")

SCRIPT_STATES = ("new", "assigned", "installing", "failed")


@dataclass(frozen=True, slots=True)
class SubnetInfo:
    network: IPv4Network
    router: IPv4Address | None = None
    dns: tuple[IPv4Address, ...] = ()
    domain: str | None = None


@dataclass(frozen=True, slots=True)
class InstallSettings:
    """What the install routes need of the config (ctx.models["install"]; defaults work without one)."""

    address: str | None = None  # the imageserver's address as clients reach it; None: the Host they used
    rsync_port: int = 873
    auto_static: str = "on-install"  # [dhcp] auto_static
    domain: str | None = None
    subnets: tuple[SubnetInfo, ...] = field(default_factory=tuple)
    token_seconds: float = credentials.INSTALL_TOKEN_SECONDS  # an install token's lifetime

    def subnet_of(self, ip: IPv4Address | None) -> SubnetInfo | None:
        if ip is None:
            return None
        return next((s for s in self.subnets if ip in s.network), None)


def own_auth(handler: Any) -> Any:
    """Mark a handler that checks its own credentials (the install token), so the HTTP server's
    blanket admin-token rule for POST does not apply to it."""
    handler.own_auth = True
    return handler


def _settings(ctx: ApiContext) -> InstallSettings:
    settings = ctx.models.get("install")
    return settings if isinstance(settings, InstallSettings) else InstallSettings()


def _bearer(request: web.Request) -> str | None:
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    return given.strip() if scheme.lower() == "bearer" and given.strip() else None


def _unauthorized(message: str) -> web.Response:
    response = json_error(401, message)
    response.headers["WWW-Authenticate"] = 'Bearer realm="imageserver-install"'
    return response


def _address_of(ctx: ApiContext, mac: str, host: installs.InstallHost) -> IPv4Address | None:
    """The host's address: its own, else its reservation, else its current lease."""
    if host.ip is not None:
        return host.ip
    leases = ctx.models.get("leases")
    if leases is not None:
        current = leases.current(mac)
        if current is not None:
            return current.ip
    for table in ("reservations", "leases"):
        row = ctx.store.read_one(f"SELECT ip FROM {table} WHERE mac = ?", (mac,))
        if row is not None:
            return IPv4Address(row[0])
    return None


def _make_static(ctx: ApiContext, host: installs.InstallHost, now: float) -> str:
    """On "done": with [dhcp] auto_static = "on-install" the host's lease becomes its reservation, by the
    same rules as every other host change (state.hostbook). Says what happened, for the response."""
    settings = _settings(ctx)
    leases = ctx.models.get("leases")
    if settings.auto_static != "on-install":
        return f"auto_static is {settings.auto_static}"
    if not isinstance(leases, LeaseModel):
        return "no lease book"
    book = HostBook(ctx.store.reader, leases, auto_static=settings.auto_static)
    try:
        res = book.installed(host.name, now)
    except (HostError, LeaseError) as e:  # e.g. the address lies outside every configured subnet
        log.warning("reservation-failed", hostname=host.name, mac=host.mac, error=str(e))
        return f"not reserved: {e}"
    if res is not None and host.ip is None:
        ctx.store.journal.submit(address_op(host.name, res.ip, now))  # listed with it: /hosts, hosts export
    return f"reserved {res.ip} ({res.source})" if res is not None else "no active lease to reserve"


def routes(ctx: ApiContext) -> list[web.RouteDef]:
    scripts_dir = ctx.store.state_dir / "scripts"
    live = ctx.models.get("install_progress")
    if not isinstance(live, installs.LiveProgress):
        live = ctx.models["install_progress"] = installs.LiveProgress()

    def lookup(request: web.Request) -> tuple[str, installs.InstallHost]:
        try:
            mac = normalize_mac(request.match_info["mac"])
        except MacError as e:
            raise web.HTTPBadRequest(text=json.dumps({"error": str(e)}), content_type="application/json") from None
        host = installs.host_by_mac(ctx.store.reader, mac)
        if host is None:
            raise web.HTTPNotFound(text=json.dumps({"error": f"no host has MAC {mac}"}),
                                   content_type="application/json")
        return mac, host

    async def script(request: web.Request) -> web.StreamResponse:
        mac, host = lookup(request)
        if not credentials.install_token_live(host.state):
            return json_error(409, f"host {host.name} is {host.state}; reinstall it to install again")
        # Only the machine itself: from the address leased or reserved for this MAC, with its credential.
        bound = _address_of(ctx, mac, host)
        if bound is None or request.remote != str(bound):
            log.warning("install-script-refused", hostname=host.name, mac=mac, peer=request.remote, reason="address")
            return json_error(403, f"the script of {host.name} is served only to the address leased or reserved "
                                   f"for {mac}")
        token = host.install_token
        given = _bearer(request)
        if credentials.token_expired(host.token_issued, ctx.clock(), _settings(ctx).token_seconds):
            return _unauthorized(f"the install token of {host.name} has expired: PXE-boot the machine again")
        if token is None or not (installs.token_matches(host, given)
                                 or credentials.same(given, credentials.fetch_nonce(token, mac, str(bound)))):
            log.warning("install-script-refused", hostname=host.name, mac=mac, peer=request.remote, reason="credential")
            return _unauthorized(f"the script of {host.name} needs the install nonce from its boot script or its "
                                 "install token: Authorization: Bearer <nonce>")
        if not host.image:
            return json_error(409, f"host {host.name} has no image")
        version = installs.resolve_version(ctx.store.reader, host)
        if version is None:
            return json_error(409, f"image {host.image} has no captured version")
        source = installs.script_source(host)
        if source is not None and "\n" in source:
            body = source
        else:
            try:
                path = scripts_dir / installs.script_file_name(host)
            except installs.InstallError as e:
                return json_error(409, str(e))
            try:
                body = path.read_text()
            except FileNotFoundError:
                return json_error(404, f"no autoinstall script {path} (getimage writes <image>.master)")
        settings = _settings(ctx)
        ip = _address_of(ctx, mac, host)
        subnet = settings.subnet_of(ip)
        server = settings.address or request.url.host or ""
        http_base = f"{request.url.scheme}://{request.url.host}" + (f":{request.url.port}"
                                                                     if request.url.port not in (None, 80) else "")
        values: dict[str, object] = {
            "HOSTNAME": host.name,
            "MAC": mac,
            "IPADDR": ip,
            "NETMASK": subnet.network.netmask if subnet else None,
            "PREFIX": subnet.network.prefixlen if subnet else None,
            "GATEWAY": subnet.router if subnet and subnet.router else None,
            "DNS": " ".join(map(str, subnet.dns)) if subnet and subnet.dns else None,
            "DOMAIN": (subnet.domain if subnet and subnet.domain else settings.domain),
            "IMAGESERVER": server,
            "IMAGESERVER_URL": http_base,
            "IMAGE": host.image,
            "VERSION": version,
            "RSYNC_MODULE": f"{host.image}_v{version}",
            "MODULE": f"{host.image}_v{version}",
            "RSYNC_PORT": settings.rsync_port,
            "RSYNC_URL": f"rsync://{server}:{settings.rsync_port}/{host.image}_v{version}/",
            "IMAGE_BYTES": installs.image_bytes(ctx.store.reader, host.image, version),
            "INSTALL_TOKEN": token,
            # rsync reads RSYNC_PASSWORD from the environment: never on a command line `ps` shows.
            "RSYNC_USER": host.name,
            "RSYNC_PASSWORD": credentials.rsync_password(token),
            # updateclient's credential on the installed system (not the install token: see state/credentials.py)
            "UPDATE_TOKEN": credentials.update_token(token),
        }
        try:
            text = installs.with_variables(body, values)
        except installs.InstallError as e:
            return json_error(409, str(e))
        # A GET changes nothing: the host becomes installing with its first authenticated report.
        refresh = ctx.models.get("rsync_refresh")
        if callable(refresh):
            try:
                refresh()  # its rsync password is live before it starts to pull
            except Exception as e:  # the 2 s refresh loop tries again
                log.warning("rsyncd-refresh-failed", error=str(e))
        log.info("install-script", hostname=host.name, mac=mac, image=host.image, version=version)
        return web.Response(text=text, content_type="text/x-shellscript")

    @own_auth
    async def event(request: web.Request) -> web.Response:
        mac, host = lookup(request)
        if not (credentials.install_token_live(host.state) and installs.token_matches(host, _bearer(request))
                and not credentials.token_expired(host.token_issued, ctx.clock(), _settings(ctx).token_seconds)):
            return _unauthorized(f"events for {host.name} need its install token: Authorization: Bearer <token>")
        body = await json_body(request)
        try:
            stage = installs.check_stage(body.get("stage"))
            detail = installs.event_detail(body.get("detail"), body.get("bytes"), body.get("total"))
        except installs.InstallError as e:
            return json_error(400, str(e))
        now = ctx.clock()
        if stage == "progress":
            # Copy progress, every second or so: the host's live progress, not a timeline row.
            done, total = body.get("bytes"), body.get("total")
            if done is None:
                return json_error(400, 'a "progress" report needs "bytes"')
            live.update(host.name, now, done, total)
            return web.json_response({"host": host.name, "stage": stage, "state": host.state})
        version = installs.resolve_version(ctx.store.reader, host) if stage == "done" else None
        state = await ctx.store.journal.run(installs.report_op(host.name, mac, now, stage, detail, version))
        out: dict[str, Any] = {"host": host.name, "stage": stage, "state": state}
        if stage in installs.FINAL_STAGES:
            live.clear(host.name)
        if stage == "done":
            out["reservation"] = _make_static(ctx, host, now)
            await ctx.store.journal.flush()
        log.info("install-report" if stage not in installs.FINAL_STAGES else f"install-{stage}", hostname=host.name,
                 mac=mac, stage=stage, state=state)
        return web.json_response(out)

    return [
        web.get("/install/{mac}/script", script),
        web.post("/install/{mac}/events", event),
    ]
