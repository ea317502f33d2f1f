"""`imageserver serve`: the one asyncio process that runs every enabled service.

SIGTERM/SIGINT stop the services in reverse order and flush the state journal; SIGHUP re-reads the
config and hands it to services that can take it live (a bad new file is logged and ignored: the
running config stays).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import shutil
import signal
import sys
import time
from pathlib import Path
from typing import Any

from appliance.config import Config, ConfigError, load_config
from appliance.daemon import eventloop, rogue
from appliance.daemon.fdlimit import raise_nofile
from appliance.daemon.portholder import address_in_use, explain_in_use, sharers
from appliance.daemon.runtime import VERSION, ReconfigureError, Runtime
from appliance.daemon.sdnotify import Notifier
from appliance.daemon.wiring import build_services, reconfigure_services
from appliance.token import ensure_token
from domain.status import SatelliteView, Status, StoreHealth
from domain.views import view_json
from services.base import Service, ServiceError
from services.dhcp import DhcpServer
from services.ratelimit import LimitedLog
from state.db import StoreError
from state.eventlog import EventLog
from state.permissions import secure_state_dir
from state.satellites import list_satellites
from state.statelock import StateLock, StateLocked
from state.statelock import acquire as acquire_state_lock
from state.store import Store

log = EventLog("imageserver.daemon")


class Daemon:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.services: list[Service] = []
        self.runtime: Runtime | None = None
        self._stop = asyncio.Event()
        self._reloading: asyncio.Task[None] | None = None
        self._rogue_probe: asyncio.Task[None] | None = None
        self.notifier = Notifier.from_environ()
        self._lock: StateLock | None = None  # held until the process ends (released with it, kill -9 too)
        # asyncio's own errors (e.g. accept() out of descriptors, which it reports up to `backlog` times per
        # wake-up) go through this: a flood of one error is a few lines and a count, not a full disk.
        self._loop_errors = LimitedLog(EventLog("imageserver.loop"))

    def status(self) -> dict[str, Any]:
        """The status document (domain.status.Status; /api/v1/status adds the transports)."""
        rt = self.runtime
        now = time.time()
        return view_json(Status(
            version=VERSION,
            started=rt.started_at if rt else None,
            uptime=round(now - rt.started_at, 3) if rt else 0.0,
            config=str(self.config.source) if self.config.source else None,
            state_dir=str(self.config.state_dir),
            services={s.name: s.status() for s in self.services},
            counts=rt.store.counts(now) if rt is not None else {},
            # The satellites of this primary: last contact, image versions they hold, reports they buffer.
            satellites=[SatelliteView.of(s, now) for s in list_satellites(rt.store.reader)] if rt else [],
            # Whether leases can be committed now (false: state dir full or failing; new leases are refused).
            store=StoreHealth(ok=not rt.store.journal.failing, commits=rt.store.journal.commits,
                              last_error=rt.store.journal.last_error) if rt else None,
        ))

    async def run(self) -> int:
        try:
            return await self._run()
        finally:
            if self._lock is not None:
                self._lock.release()
                self._lock = None

    async def _run(self) -> int:
        cfg = self.config
        try:
            looser = secure_state_dir(cfg.state_dir)
            if looser is not None:
                log.warning("state-dir-tightened", state_dir=cfg.state_dir, old_mode=f"{looser:o}", new_mode="700")
            # One writer per state dir: a second daemon (another network namespace, a second unit) would
            # ACK leases the first one never sees, and one of them loses promised-durable leases.
            self._lock = await _take_state_lock(cfg.state_dir)
        except StateLocked as e:
            log.error("start-failed", error=str(e), holder=e.holder,
                      hint="another imageserver serves this state dir; stop it first")
            return 1
        except OSError as e:  # e.g. a full state dir cannot take the lock file's holder line
            log.error("start-failed", error=str(e), state_dir=cfg.state_dir, free_bytes=_free_bytes(cfg.state_dir))
            return 1
        try:
            store = Store(cfg.state_dir)
        except (StoreError, OSError) as e:
            # A full or broken state dir: say so and exit 1 (systemd retries), not a traceback.
            log.error("start-failed", error=str(e), state_dir=cfg.state_dir, free_bytes=_free_bytes(cfg.state_dir))
            return 1
        try:
            token = ensure_token(cfg.state_dir)
        except OSError as e:
            log.error("start-failed", error=str(e), state_dir=cfg.state_dir, free_bytes=_free_bytes(cfg.state_dir))
            await store.close()
            return 1
        self.runtime = Runtime(config=cfg, store=store, admin_token=token,
                               status=self.status, request_reload=self.request_reload)
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(self._loop_exception)
        fds = raise_nofile()
        log.info("nofile", soft=fds.soft, hard=fds.hard, before=fds.before,
                 **({"error": fds.error} if fds.error else {}))
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stop.set)
        loop.add_signal_handler(signal.SIGHUP, self.request_reload)
        started: list[Service] = []
        code = 0
        try:
            self.services = build_services(self.runtime)
            # The lease book and machine log loaded at start are long-lived: keep them out of the collector's
            # full passes. With 100,000 leases each full pass took ~100 ms (a stall of the DHCP loop) and
            # the book's per-packet work ran 1.9x slower (bench/fleet.py, scale part). Lease objects hold no
            # cycles, so refcounting still frees the ones that are replaced later.
            gc.freeze()
            for service in self.services:
                await self._start(service)
                started.append(service)
                log.info("service-started", service=service.name,
                         listen=",".join(service.status().get("listen", [])) or "-")
            log.info("ready", version=VERSION, services=",".join(s.name for s in self.services) or "none",
                     state_dir=cfg.state_dir, event_loop=eventloop.running_loop_name())
            self.notifier.send(READY=1, STATUS=self.summary())
            dhcp = next((s for s in self.services if isinstance(s, DhcpServer)), None)
            if dhcp is not None:  # another DHCP server on the segment? (in the background: see rogue.py)
                self._rogue_probe = loop.create_task(rogue.probe_and_apply(cfg, dhcp))
            watchdog = self._start_watchdog()
            await self._stop.wait()
            log.info("stopping")
            if self._rogue_probe is not None:
                self._rogue_probe.cancel()
            self.notifier.send(STOPPING=1, STATUS="stopping")
            if watchdog is not None:
                watchdog.cancel()
        except ServiceError as e:
            log.error("start-failed", error=str(e))
            code = 1
        finally:
            for service in reversed(started):
                try:
                    await service.stop()
                except Exception:
                    log.exception("stop-failed", service=service.name)
            await store.close()
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                loop.remove_signal_handler(sig)
            log.info("stopped", code=code)
        return code

    def _loop_exception(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        message = str(context.get("message", "unhandled error in the event loop"))
        key = message[:80] + (f":{type(exc).__name__}" if exc else "")
        # An OSError (EMFILE, ...) needs no traceback; a bug does.
        self._loop_errors.log(key, time.monotonic(), logging.ERROR, "loop-error", message=message,
                              error=str(exc) if exc else None,
                              exc_info=exc if isinstance(exc, BaseException) and not isinstance(exc, OSError) else None)

    async def _start(self, service: Service) -> None:
        """Start one service; a port clash names the port and who holds it. A UDP port that another
        process shares with us (both set SO_REUSEADDR) is a clash too: each would see only some requests."""
        own = os.getpid()
        try:
            await service.start()
        except ServiceError as e:
            if address_in_use(e):
                who = explain_in_use(self.config, service.name, own_pid=own)
                if who:
                    raise ServiceError(f"{e} ({who})") from e
            raise
        shared = sharers(self.config, service.name, own_pid=own)
        if shared:
            await service.stop()
            what = "; ".join(f"{proto}/{port} is also bound by " + ", ".join(map(str, who))
                             for proto, port, who in shared)
            raise ServiceError(f"{service.name}: another server shares its port ({what}); stop it first")

    def summary(self) -> str:
        """One line for systemctl status: each service and its state."""
        parts = [f"{s.name} {s.status().get('state', '?')}" for s in self.services]
        return ", ".join(parts) or "no services enabled"

    def _start_watchdog(self) -> asyncio.Task[None] | None:
        interval = self.notifier.watchdog_interval
        if interval is None:
            return None

        async def ping() -> None:
            # Pinging from the event loop itself: a wedged loop stops the pings and systemd restarts us.
            while True:
                self.notifier.send(WATCHDOG=1, STATUS=self.summary())
                await asyncio.sleep(interval)

        return asyncio.get_running_loop().create_task(ping())

    def stop(self) -> None:
        self._stop.set()

    def request_reload(self) -> None:
        if self._reloading is None or self._reloading.done():
            self._reloading = asyncio.get_running_loop().create_task(self._reload())

    async def _reload(self) -> None:
        source = self.config.source
        if source is None:
            log.warning("reload-skipped", reason="no-config-file")
            return
        try:
            new = load_config(Path(source))
        except ConfigError as e:
            log.error("reload-failed", error=str(e), hint="keeping the running config")
            return
        if new.state_dir != self.config.state_dir:
            log.error("reload-failed", error="appliance.state_dir cannot change while running; restart")
            return
        if self.runtime is not None:
            try:
                await reconfigure_services(self.runtime, new)  # all or nothing: a refusal changes no service
            except ReconfigureError as e:
                log.error("reload-failed", service=e.service, error=str(e), kept="the running config")
                return
            except Exception as e:
                log.error("reload-failed", error=str(e))
                return
        self.config = new
        log.info('reloaded', config=source)
        self.notifier.send(STATUS=self.summary())


# How long a thread may hold the GIL while another waits for it (CPython's default is 5 ms). The state
# writer needs the GIL back after every SQLite call; with the event loop busy answering a DHCP storm
# each of those waits took the full interval, so a commit (and every ACK waiting on it) took tens of ms.
# The writer's turns are short, so a shorter interval costs the event loop next to nothing.
GIL_SWITCH_INTERVAL = 0.0005


async def _take_state_lock(state_dir: Path, patience: float = 3.0) -> StateLock:
    """The state dir's lock for `serve`. Another daemon holding it is an error at once; a CLI command
    (writing offline, or checking whether a daemon runs) holds it for moments only, so it is waited for."""
    deadline = time.monotonic() + patience
    while True:
        try:
            return acquire_state_lock(state_dir, "serve")
        except StateLocked as e:
            if "role=serve" in e.holder or time.monotonic() >= deadline:
                raise
        await asyncio.sleep(0.05)


def _free_bytes(path: Path) -> int | str:
    try:
        return shutil.disk_usage(path).free
    except OSError:
        return "?"


def serve(config: Config) -> int:
    sys.setswitchinterval(GIL_SWITCH_INTERVAL)
    try:
        factory = eventloop.loop_factory(config.appliance.event_loop)[1]
    except eventloop.EventLoopUnavailable as e:
        log.error("start-failed", error=str(e))
        return 2
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(Daemon(config).run())
