"""The HTTP server: iPXE boot scripts, boot files, and the JSON API route modules handed in.

Routes of its own:
  GET /boot/{mac}.ipxe       the machine's boot script (MAC in any spelling; the machine is noted as seen)
  GET /boot/files/{path}     a file from the boot root (sendfile; HEAD and single Range via FileResponse)
Everything under /api/v1/ comes from route modules (services/api_*.py): their module-level `ROUTES`, each a
declared services.routes.Route (which also gives the OpenAPI document the server serves). Domain errors a
handler raises become JSON errors here (services.errors.domain_error_response).

Safety, for every request before any handler runs:
- the RAW request target is classified by protocols.httppath (aiohttp decodes %2F in match_info and
  folds dot segments, so the decoded path can hide a traversal); refused targets get 400/404;
- a boot file is resolved with realpath and must stay inside the boot root (symlinks escaping it: 404);
- every route checks the credential it declares (services.auth); a route other than GET cannot be declared
  without one; a method a route does not have is 405.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from domain.errors import DomainError
from protocols.httppath import PathRefused, path_parts, served_file_parts
from protocols.mac import normalize_mac
from protocols.names import InvalidName
from services.adminnet import allowed, is_admin_read
from services.api_context import API, ApiContext
from services.base import ServiceError, ServiceStatus
from services.bootresponder import BootResponder
from services.errors import domain_error_response, json_error
from services.http_gate import ConnectionGate, ConnectionLimits, GatedSite
from services.routes import MOUNTED, SAFE_METHODS, Answer, Call, Mounted, Param, Route
from state.db import StoreFailure
from state.eventlog import EventLog

log = EventLog("imageserver.http")

RouteModule = Sequence[Route]  # a route module's ROUTES
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

FILES_PREFIX = ("boot", "files")


@dataclass(frozen=True, slots=True)
class TlsListener:
    """[https]: where the same application listens over TLS, with what certificate (its fingerprint for
    the log and the status document)."""

    host: str
    port: int
    context: ssl.SSLContext
    fingerprint: str


class HttpServer:
    """aiohttp on one address, and over TLS on another port when `tls` is given (implements
    services.base.Service)."""

    name = "http"

    def __init__(
        self,
        *,
        host: str = "0.0.0.0",
        port: int = 80,
        boot_root: Path,
        responder: BootResponder | None = None,
        api: ApiContext | None = None,
        route_modules: Sequence[RouteModule] = (),
        shutdown_timeout: float = 2.0,
        limits: ConnectionLimits | None = None,
        tls: TlsListener | None = None,
    ) -> None:
        self._host = host
        self.tls = tls
        self._tls_port = 0
        self._requested_port = port
        self._port = 0
        self.boot_root = Path(boot_root)
        self._root_real = ""
        self.responder = responder
        self._api = api
        self._route_modules = tuple(route_modules)
        self._shutdown_timeout = shutdown_timeout
        self._runner: web.AppRunner | None = None
        self._status = ServiceStatus()
        self.limits = limits or ConnectionLimits()
        self._gate: ConnectionGate | None = None

    @property
    def port(self) -> int:
        return self._port

    @property
    def tls_port(self) -> int:
        """The HTTPS listener's port (0: none)."""
        return self._tls_port

    def reconfigure(self, limits: ConnectionLimits) -> None:
        """New connection caps and timeouts (SIGHUP): the gate admits and sweeps by them from now on (the
        listen backlog and aiohttp's own keep-alive timer stay as started: the gate's sweep enforces idle_timeout)."""
        self.limits = limits
        if self._gate is not None:
            self._gate.limits = limits

    # --- the application -----------------------------------------------------------------------

    def build_app(self) -> web.Application:
        """The aiohttp application (also used by the OpenAPI completeness test, without a socket)."""
        app = web.Application(middlewares=[self._guard])
        routes = list(self.boot_routes())
        if self._api is not None:
            app[API] = self._api
            for module in self._route_modules:
                routes.extend(module)
        app[MOUNTED] = Mounted(tuple(routes))
        app.add_routes([r.mount() for r in routes])
        app.on_response_prepare.append(self._count_bytes)
        return app

    @web.middleware
    async def _guard(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        conn = ConnectionGate.connection(request.transport) if self._gate is not None else None
        if conn is None or self._gate is None:
            return await self._guarded(request, handler)
        self._gate.handler_started(conn)  # busy: the idle and header timeouts do not apply
        try:
            return await self._guarded(request, handler)
        finally:
            self._gate.handler_finished(conn)

    async def _guarded(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        counters = self._status.counters
        counters["requests"] += 1
        try:
            path_parts(request.raw_path)
        except PathRefused as e:
            counters["refused_paths"] += 1
            log.info("path-refused", peer=request.remote, target=request.raw_path[:200], reason=str(e))
            return self._error(request, e.status, f"refused path: {e}")
        api = request.path.startswith("/api/")
        if api:
            counters["api_requests"] += 1
        if (request.method in SAFE_METHODS and self._api is not None and is_admin_read(request.path)
                and not allowed(request.remote, self._api.live.admin_networks)):
            counters["admin_refused"] += 1
            return json_error(403, f"{request.path} is readable only from [http] admin_networks")
        try:
            response = await handler(request)
            if response.status == 401:
                counters["unauthorized"] += 1
        except DomainError as e:  # raised outside a declared route's own mapping
            response = domain_error_response(e)
        except web.HTTPException as e:
            if e.status == 401:
                counters["unauthorized"] += 1
            counters[f"responses_{e.status // 100}xx"] += 1
            if api and e.status >= 400 and e.content_type != "application/json":
                response = json_error(e.status, e.reason)
                for header in ("Allow", "WWW-Authenticate"):
                    if header in e.headers:
                        response.headers[header] = e.headers[header]
                return response
            raise
        except StoreFailure as e:
            # The state store cannot take the change (state dir full, I/O error): the journal has logged the
            # failed commit; the client gets a 503 it can retry, the log no traceback.
            counters["responses_5xx"] += 1
            counters["store_errors"] += 1
            log.error("store-unavailable", method=request.method, path=request.path, error=str(e))
            return self._error(request, 503, f"the state store cannot take changes now: {e}")
        counters[f"responses_{response.status // 100}xx"] += 1
        return response

    async def _count_bytes(self, request: web.Request, response: web.StreamResponse) -> None:
        if request.method != "HEAD" and response.content_length:
            self._status.counters["bytes_out"] += response.content_length

    def _error(self, request: web.Request, status: int, message: str) -> web.Response:
        if request.path.startswith("/api/"):
            return json_error(status, message)
        return web.Response(status=status, text=message + "\n")

    def boot_routes(self) -> Iterable[Route]:
        yield Route("GET", "/boot/files/{path:.+}", self._file,
                    "A file from the boot root (iPXE, pxelinux, the installer kernel and initrd); HEAD and single "
                    "byte ranges supported",
                    {200: Answer("the file", media="application/octet-stream"),
                     206: Answer("the requested byte range"),
                     400: Answer("a refused path (dot segments, escaped separators, NUL, backslash)"),
                     404: Answer("no such file, a hidden file, or a symlink leading out of the root"),
                     416: Answer("the range cannot be satisfied")},
                    params={"path": Param("a path under the boot root")})
        yield Route("GET", "/boot/{mac}.ipxe", self._boot_script,
                    "The machine's iPXE boot script: install, boot the local disk, or wait and ask again",
                    {200: Answer("an iPXE script", media="text/plain", text=True),
                     404: Answer("not a MAC address")})

    async def _boot_script(self, call: Call[None]) -> web.StreamResponse:
        request = call.request
        if self.responder is None:
            return self._error(request, 404, "boot scripts are not served here")
        try:
            mac = normalize_mac(request.match_info["mac"])
        except InvalidName:
            return self._error(request, 404, "not a MAC address; ask for /boot/<mac>.ipxe")
        sockname = request.transport.get_extra_info("sockname") if request.transport else None
        # URLs in the script use the address and port this machine reached us at.
        local, port = (sockname[0], int(sockname[1])) if sockname else (self._host, self._port)
        decision, script = await self.responder.ipxe_script(mac, local, port, request.remote)
        self._status.counters["boot_scripts"] += 1
        self._status.counters[f"boot_{decision.kind}"] += 1
        return web.Response(text=script, content_type="text/plain", headers={"Cache-Control": "no-store"})

    async def _file(self, call: Call[None]) -> web.StreamResponse:
        request = call.request
        counters = self._status.counters
        try:
            parts = served_file_parts(request.raw_path, FILES_PREFIX)
        except PathRefused as e:
            counters["refused_paths"] += 1
            return self._error(request, e.status, f"refused path: {e}")
        real = os.path.realpath(os.path.join(self._root_real, *parts))
        if os.path.commonpath((real, self._root_real)) != self._root_real or real == self._root_real:
            counters["refused_paths"] += 1
            log.warning("path-escapes-root", peer=request.remote, path="/".join(parts))
            return self._error(request, 404, "not found")
        if not os.path.isfile(real):
            return self._error(request, 404, "not found")
        counters["files"] += 1
        return web.FileResponse(real, headers={"Cache-Control": "no-cache"})

    # --- Service -------------------------------------------------------------------------------

    async def start(self) -> None:
        if self._runner is not None:
            return
        self._root_real = os.path.realpath(self.boot_root)
        self.boot_root.mkdir(parents=True, exist_ok=True)
        runner = web.AppRunner(self.build_app(), access_log=None, handle_signals=False,
                               shutdown_timeout=self._shutdown_timeout,
                               keepalive_timeout=self.limits.aiohttp_keepalive)
        await runner.setup()
        self._gate = ConnectionGate(self.limits)
        site = GatedSite(runner, self._host, self._requested_port, self._gate, backlog=self.limits.backlog)
        try:
            await site.start()
        except OSError as e:
            await runner.cleanup()
            message = f"http: cannot listen on {self._host}:{self._requested_port}: {e.strerror or e}"
            self._status.state, self._status.error = "failed", message
            raise ServiceError(message) from e
        self._runner = runner
        self._port = int(runner.addresses[0][1])
        self._status.listen = [f"{self._host}:{self._port}/tcp"]
        log.info("http-listening", addr=f"{self._host}:{self._port}", boot_root=self._root_real)
        if self.tls is not None:
            # The same application (the same routes, gate and counters) over TLS: what an admin sends.
            tls = self.tls
            secure = GatedSite(runner, tls.host, tls.port, self._gate, backlog=self.limits.backlog,
                               ssl_context=tls.context)
            try:
                await secure.start()
            except OSError as e:
                await runner.cleanup()
                self._runner = None
                message = f"http: cannot listen on {tls.host}:{tls.port} (https): {e.strerror or e}"
                self._status.state, self._status.error = "failed", message
                raise ServiceError(message) from e
            server = secure._server
            self._tls_port = int(server.sockets[0].getsockname()[1]) if server is not None else tls.port
            self._status.listen.append(f"{tls.host}:{self._tls_port}/tcp (https)")
            log.info("https-listening", addr=f"{tls.host}:{self._tls_port}", fingerprint=tls.fingerprint)
        self._status.state, self._status.error = "running", None

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._api is not None and self._api.live.torrents is not None:
            await self._api.live.torrents.close()  # the torrent seeders the routes started
        self._status.state = "stopped"
        self._status.listen = []

    def status(self) -> dict[str, Any]:
        out = self._status.as_dict()
        out["boot_root"] = str(self.boot_root)
        if self.tls is not None:
            out["https"] = {"port": self._tls_port, "fingerprint": self.tls.fingerprint}
        if self._gate is not None:
            out.update(self._gate.status())
            out["counters"] = {**out.get("counters", {}), **self._gate.counters}
        return out
