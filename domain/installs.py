"""What an autoinstall client asks of the imageserver: its script, and the reports of its progress.

The script goes only to the machine itself (from the address leased or reserved for its MAC, with the
fetch nonce of its boot script or its install token), only while its host is due to install; reports
need the install token. Refusals are domain errors (Unauthorized carries the install realm).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from ipaddress import IPv4Address
from pathlib import Path

from domain.errors import Conflict, Forbidden, Invalid, NotFound, Unauthorized, valid_names
from domain.host_errors import HostError
from domain.hostbook import AUTO_STATIC_DEFAULT, AutoStatic, HostBook
from domain.install_events import event_detail, record_op
from domain.install_script import ScriptError, inline_script, script_file_name, with_variables
from domain.requests import InstallEvent
from domain.rootdevice import hints_for
from domain.settings import SubnetConfig
from domain.sources import Sources
from domain.views import doc
from protocols.install_report import InvalidReport, check_stage
from protocols.mac import normalize_mac
from state import credentials, images, installs, transports
from state.eventlog import EventLog
from state.hosts import Host, Op, address_op, effective_host_by_mac
from state.lease_rows import stored_bindings

log = EventLog("imageserver.install")

INSTALL_REALM = 'Bearer realm="imageserver-install"'


@dataclass(frozen=True, slots=True)
class InstallSettings:
    """What installs need of the config (defaults work without one)."""

    address: str | None = None  # the imageserver's address as clients reach it; None: the Host they used
    rsync_port: int = 873
    auto_static: AutoStatic = AUTO_STATIC_DEFAULT  # [dhcp] auto_static
    domain: str | None = None
    subnets: tuple[SubnetConfig, ...] = field(default_factory=tuple)  # [dhcp]: a host's network settings
    token_seconds: float = credentials.INSTALL_TOKEN_SECONDS  # an install token's lifetime

    def subnet_of(self, ip: IPv4Address | None) -> SubnetConfig | None:
        if ip is None:
            return None
        return next((s for s in self.subnets if ip in s.subnet), None)


def _unauthorized(message: str) -> Unauthorized:
    return Unauthorized(message, challenge=INSTALL_REALM)


def installing_host(src: Sources, mac_text: str) -> tuple[str, Host]:
    """(canonical MAC, its host); Invalid for a malformed MAC, NotFound when no host has it."""
    with valid_names():
        mac = normalize_mac(mac_text)
    host = effective_host_by_mac(src.reader, mac)  # with what it inherits from its profile
    if host is None:
        raise NotFound(f"no host has MAC {mac}")
    return mac, host


def address_of(src: Sources, mac: str, host: Host) -> IPv4Address | None:
    """The host's address: its own, else its reservation, else its current lease."""
    if host.ip is not None:
        return host.ip
    return machine_address(src, mac)


def machine_address(src: Sources, mac: str) -> IPv4Address | None:
    """The address of machine `mac`: its reservation, else its current lease."""
    if src.leases is not None:
        current = src.leases.current(mac)
        if current is not None:
            return current.ip
    bound = stored_bindings(src.reader, [mac]).get(mac)  # a reservation wins over a lease
    return IPv4Address(bound[1]) if bound is not None else None


def from_own_address(src: Sources, mac: str | None, host: Host, peer: str | None
                     ) -> IPv4Address | None:
    """The host's address if `peer` is it, else None: the one rule binding a host's credentials (install
    token, fetch nonce, update token) to the machine itself."""
    bound = address_of(src, mac, host) if mac else host.ip
    return bound if bound is not None and peer == str(bound) else None


@dataclass(frozen=True, slots=True)
class ScriptRequest:
    mac: str  # as the URL spells it
    peer: str | None  # the address the request came from
    bearer: str | None  # the Authorization: Bearer credential, if any
    server: str  # the imageserver as the client reached it (address, else the Host it used)
    http_base: str  # scheme://host[:port] of this request


@dataclass(frozen=True, slots=True)
class InstallScript:
    host: str
    mac: str
    image: str
    version: int
    text: str


def install_script(src: Sources, settings: InstallSettings, scripts_dir: Path, req: ScriptRequest,
                   now: float) -> InstallScript:
    """The host's autoinstall script with its variables prepended; it changes no state."""
    mac, host = installing_host(src, req.mac)
    if not credentials.install_token_live(host.state):
        raise Conflict(f"host {host.name} is {host.state}; reinstall it to install again")
    # Only the machine itself: from the address leased or reserved for this MAC, with its credential.
    bound = from_own_address(src, mac, host, req.peer)
    if bound is None:
        log.warning('install-script-refused', hostname=host.name, mac=mac, peer=req.peer, reason='address')
        raise Forbidden(f"the script of {host.name} is served only to the address leased or reserved for {mac}")
    token = host.install_token
    if credentials.token_expired(host.token_issued, now, settings.token_seconds):
        raise _unauthorized(f"the install token of {host.name} has expired: PXE-boot the machine again")
    if token is None or not (credentials.same(token, req.bearer)
                             or credentials.same(req.bearer, credentials.fetch_nonce(token, mac, str(bound)))):
        log.warning('install-script-refused', hostname=host.name, mac=mac, peer=req.peer, reason='credential')
        raise _unauthorized(f"the script of {host.name} needs the install nonce from its boot script or its "
                            "install token: Authorization: Bearer <nonce>")
    if not host.image:
        raise Conflict(f"host {host.name} has no image")
    version = installs.resolve_version(src.reader, host)
    if version is None:
        raise Conflict(f"image {host.image} has no captured version")
    body = inline_script(host)
    if body is None:
        try:
            path = scripts_dir / script_file_name(host)
        except ScriptError as e:
            raise Conflict(str(e)) from None
        try:
            body = path.read_text()
        except FileNotFoundError:
            raise NotFound(f"no autoinstall script {path} (getimage writes <image>.master)") from None
    subnet = settings.subnet_of(bound)
    server = settings.address or req.server
    module = f"{host.image}_v{version}"
    values: dict[str, object] = {
        "HOSTNAME": host.name,
        "MAC": mac,
        "IPADDR": bound,
        "NETMASK": subnet.subnet.netmask if subnet else None,
        "PREFIX": subnet.subnet.prefixlen if subnet else None,
        "GATEWAY": subnet.router if subnet and subnet.router else None,
        "DNS": " ".join(map(str, subnet.dns)) if subnet and subnet.dns else None,
        "DOMAIN": (subnet.domain if subnet and subnet.domain else settings.domain),
        "IMAGESERVER": server,
        "IMAGESERVER_URL": req.http_base,
        "IMAGE": host.image,
        "VERSION": version,
        "RSYNC_MODULE": module,
        "MODULE": module,
        "RSYNC_PORT": settings.rsync_port,
        "RSYNC_URL": f"rsync://{server}:{settings.rsync_port}/{module}/",
        "IMAGE_BYTES": images.image_bytes(src.reader, host.image, version),
        # rsync | bittorrent | multicast (each falls back to rsync): the host's own, else its image's default
        "TRANSPORT": transports.effective(src.reader, host.transport, host.image),
        # host | image: whose root-device hints the inventory's answer applies (without that answer the
        # installer fails rather than guess); unset: no hints
        "ROOT_DEVICE_HINTS": hints_for(src.reader, host)[1],
        "INSTALL_TOKEN": token,
        # rsync reads RSYNC_PASSWORD from the environment: never on a command line `ps` shows.
        "RSYNC_USER": host.name,
        "RSYNC_PASSWORD": credentials.rsync_password(token),
        # updateclient's credential on the installed system (not the install token: see state/credentials.py)
        "UPDATE_TOKEN": credentials.update_token(token),
    }
    try:
        text = with_variables(body, values)
    except ScriptError as e:
        raise Conflict(str(e)) from None
    return InstallScript(host.name, mac, host.image, version, text)


# --------------------------------------------------------------------------- reports


@dataclass(frozen=True, slots=True)
class InstallReport:
    """POST /install/{mac}/events: {"stage", "detail"?, "bytes"?, "total"?}."""

    stage: str
    detail: str | None  # JSON, as stored
    bytes: int | None = None
    total: int | None = None

    @classmethod
    def of(cls, event: InstallEvent) -> InstallReport:
        """The report an installer's event says (its shape checked by the route's body type)."""
        try:
            stage = check_stage(event.stage)
            detail = event_detail(event.detail, event.bytes, event.total)
        except InvalidReport as e:
            raise Invalid(str(e)) from None
        if stage == "progress" and event.bytes is None:
            raise Invalid('a "progress" report needs "bytes"')
        return cls(stage, detail, event.bytes, event.total)


def reporting_host(src: Sources, settings: InstallSettings, mac_text: str, bearer: str | None,
                   now: float) -> tuple[str, Host]:
    """The host a report is for, if the report carries its live install token."""
    mac, host = installing_host(src, mac_text)
    if not (credentials.install_token_live(host.state) and credentials.same(host.install_token, bearer)
            and not credentials.token_expired(host.token_issued, now, settings.token_seconds)):
        raise _unauthorized(f"events for {host.name} need its install token: Authorization: Bearer <token>")
    return mac, host


def report_op(src: Sources, host: Host, mac: str, report: InstallReport, now: float) -> Op:
    """The journal operation recording a (non-progress) report; it returns the host's new state."""
    version = installs.resolve_version(src.reader, host) if report.stage == "done" else None
    return record_op(host.name, mac, now, report.stage, report.detail, version)


@dataclass(frozen=True, slots=True)
class ReportRecorded:
    """POST /install/{mac}/events: the report as taken."""

    host: str
    stage: str
    state: str = field(metadata=doc("the host's state after the report"))
    reservation: str | None = field(default=None, metadata=doc(
        "with done: what became of the machine's address (reserved ..., or why not)", omit_none=True))


def installed_reservation(src: Sources, settings: InstallSettings, host: Host,
                          now: float) -> tuple[str, Op | None]:
    """On "done": with [dhcp] auto_static = "on-install" the host's lease becomes its reservation, by the
    same rules as every other host change (domain.hostbook). Says what happened, and the op naming the
    address on the host (when it had none)."""
    if settings.auto_static != "on-install":
        return f"auto_static is {settings.auto_static}", None
    if src.leases is None:
        return "no lease book", None
    book = HostBook(src.reader, src.leases, auto_static=settings.auto_static)
    try:
        res = book.installed(host.name, now)
    except HostError as e:  # e.g. the address lies outside every configured subnet
        log.warning('reservation-failed', hostname=host.name, mac=host.mac, error=str(e))
        return f"not reserved: {e}", None
    if res is None:
        return "no active lease to reserve", None
    op = address_op(host.name, res.ip, now) if host.ip is None else None  # listed with it: /hosts, export
    return f"reserved {res.ip} ({res.source})", op


def _version_to_install(src: Sources, host: Host) -> images.ImageVersion:
    """The image version a host installs now (its pinned one or its image's newest)."""
    if not host.image:
        raise Conflict(f"host {host.name} has no image")
    version = installs.resolve_version(src.reader, host)
    iv = images.get_version(src.reader, host.image, version) if version is not None else None
    if iv is None:
        raise Conflict(f"image {host.image} has no captured version")
    return iv


@dataclass(frozen=True, slots=True)
class SeatRequest:
    """A host asking for a multicast seat, checked: its image version's tree and how many receivers to wait for."""

    host: str
    mac: str
    image: str
    version: int
    tree: Path
    expected: int  # hosts due to install this image: the receivers a new session waits for


def multicast_request(src: Sources, settings: InstallSettings, mac_text: str, peer: str | None,
                      bearer: str | None, now: float) -> SeatRequest:
    """A multicast seat is the session's key, which decrypts the image: only the host itself (its live install
    token, from the address leased or reserved for it) while it is due to install."""
    mac, host = reporting_host(src, settings, mac_text, bearer, now)
    bound = from_own_address(src, mac, host, peer)
    if bound is None:
        log.warning('multicast-refused', hostname=host.name, mac=mac, peer=peer, reason='address')
        raise Forbidden(f"a multicast seat for {host.name} is given only to the address leased or reserved for {mac}")
    iv = _version_to_install(src, host)
    return SeatRequest(host.name, mac, iv.name, iv.version, Path(iv.path), installs.due_to_install(src.reader, iv.name))


@dataclass(frozen=True, slots=True)
class TorrentRequest:
    """A host asking for its torrent, its tracker or its web seed, checked: its image version's tree."""

    host: str
    mac: str
    ip: str  # its address (the one the request came from)
    token: str  # its install token (the torrent key is derived from it)
    image: str
    version: int
    tree: Path


def torrent_request(src: Sources, settings: InstallSettings, mac_text: str, peer: str | None,
                    bearer: str | None, key: str | None, now: float) -> TorrentRequest:
    """The torrent of an image version names its files and the tracker lists who installs it: only the host
    itself (from the address leased or reserved for it) while it is due to install, with its install token or
    the fetch nonce of its boot script (the .torrent, like the script), or its torrent key (the tracker and
    web seed URLs inside that .torrent, which carry no header)."""
    mac, host = installing_host(src, mac_text)
    token = host.install_token
    if not credentials.install_token_live(host.state) or token is None:
        raise NotFound(f"host {host.name} is not due to install")
    bound = from_own_address(src, mac, host, peer)
    if bound is None:
        log.warning('torrent-refused', hostname=host.name, mac=mac, peer=peer, reason='address')
        raise Forbidden(f"the torrent of {host.name} is served only to the address leased or reserved for {mac}")
    if credentials.token_expired(host.token_issued, now, settings.token_seconds):
        raise _unauthorized(f"the install token of {host.name} has expired: PXE-boot the machine again")
    if key is not None:
        ok = credentials.same(key, credentials.torrent_key(token))
    else:
        ok = credentials.same(token, bearer) or credentials.same(
            bearer, credentials.fetch_nonce(token, mac, str(bound)))
    if not ok:
        log.warning('torrent-refused', hostname=host.name, mac=mac, peer=peer, reason='credential')
        raise _unauthorized(f"not the credential of {host.name}")
    iv = _version_to_install(src, host)
    return TorrentRequest(host.name, mac, str(bound), token, iv.name, iv.version, Path(iv.path))
