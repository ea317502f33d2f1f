"""The supervised `rsync --daemon` that serves image versions to installing clients.

The imageserver does not speak the rsync protocol itself: it runs the real rsync daemon in the
foreground (`--no-detach`), owns its rsyncd.conf (one read-only module per image version, written
from the catalog), parses its log into one event per transfer, and restarts it with exponential
backoff when it exits. rsync re-reads its config for every connection, so a new image version is
served as soon as the rewritten file is in place: the catalog is checked every `refresh_seconds`
(a SELECT over the images table), and `refresh()` does it at once for callers that know.

A missing rsync binary is a failed service with a clear error, not a failed daemon: DHCP, TFTP and
HTTP keep running.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import os
import re
import shutil
import signal
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from protocols.rsyncd import (
    Access,
    Module,
    RsyncdConfigError,
    TransferLog,
    modules_for,
    render_config,
    render_secrets,
)
from services.base import ServiceStatus
from services.childproc import die_with_parent, reap_stale, remove_pid_file, write_pid_file
from services.procnet import listens
from services.ratelimit import LimitedLog
from state.credentials import RsyncClient
from state.eventlog import EventLog
from state.satellites import RSYNC_MODULE as SATELLITE_MODULE

log = EventLog("imageserver.rsyncd")

CONFIG_NAME = "rsyncd.conf"
SECRETS_NAME = "rsyncd.secrets"  # user:password of every machine allowed to pull now (0600)
LOCK_NAME = "rsyncd.lock"  # rsync's connection slots (`max connections`), shared by every module
PID_NAME = "rsyncd.pid"  # the running rsync, for the next start to end it if we were killed (see services/childproc.py)
_LOG_PREFIX = re.compile(r"^(?:\d{4}/\d\d/\d\d \d\d:\d\d:\d\d )?\[\d+\] ")

# (image name, version, tree path) of every registered version.
Catalog = Callable[[], Iterable[tuple[str, int, str]]]
# The machines allowed to pull right now (installing, or updating with a grant).
Clients = Callable[[], Iterable[RsyncClient]]
# (rsync user, password) of every satellite: they may read the whole images root (state/satellites.py).
SatelliteUsers = Callable[[], Iterable[tuple[str, str]]]


@dataclass(frozen=True, slots=True)
class RsyncdSettings:
    state_dir: Path
    address: str = "0.0.0.0"
    port: int = 873
    hosts_allow: tuple[str, ...] = ("127.0.0.1",)
    rsync: str = "rsync"  # a name looked up in PATH, or a path
    # argv prefix for the daemon, e.g. ("ionice", "-c3") to keep image serving from starving the disk;
    # the prefix must exec rsync (so the pid we watch is rsync's).
    launcher: tuple[str, ...] = ()
    refresh_seconds: float = 2.0
    backoff_first: float = 0.2
    backoff_max: float = 30.0
    stable_after: float = 10.0  # a daemon that ran this long resets the backoff
    failed_after: int = 5  # consecutive quick exits before the state says "failed" (it keeps retrying)
    # Transfers at once across all modules (0: no limit). Installers over the cap are refused with
    # "max connections reached" and wait in line (the autoinstall script retries with jittered backoff).
    max_connections: int = 0

    @property
    def config_path(self) -> Path:
        return self.state_dir / CONFIG_NAME

    @property
    def secrets_path(self) -> Path:
        return self.state_dir / SECRETS_NAME

    @property
    def lock_path(self) -> Path:
        return self.state_dir / LOCK_NAME

    @property
    def pid_path(self) -> Path:
        return self.state_dir / PID_NAME


def _replace(path: Path, text: str, mode: int) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def _networks(entries: Sequence[str]) -> list[ipaddress.IPv4Network] | None:
    """hosts_allow as networks; None if an entry is not one (a name: no outer bound we can check)."""
    out = []
    for entry in entries:
        try:
            out.append(ipaddress.IPv4Network(entry, strict=False))
        except ValueError:
            return None
    return out


def _inside(ip: str, networks: list[ipaddress.IPv4Network] | None) -> bool:
    if networks is None:
        return True
    try:
        address = ipaddress.IPv4Address(ip)
    except ValueError:
        return False
    return any(address in n for n in networks)


async def _pipe_reader(fd: int) -> tuple[asyncio.BaseTransport, asyncio.StreamReader]:
    """A StreamReader on the read end of a pipe (owned from here on: the transport closes it)."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    pipe = os.fdopen(fd, "rb", buffering=0)
    try:
        transport, _ = await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), pipe)
    except BaseException:
        pipe.close()
        raise
    return transport, reader


def _describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"signal {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"exit code {code}"


class RsyncdService:
    name = "rsyncd"

    def __init__(self, settings: RsyncdSettings, catalog: Catalog,
                 clock: Callable[[], float] = time.time, monotonic: Callable[[], float] = time.monotonic,
                 clients: Clients | None = None, satellites: SatelliteUsers | None = None,
                 images_root: Path | None = None) -> None:
        self.settings = settings
        self.satellites = satellites
        self.images_root = images_root
        self.catalog = catalog
        # None: modules open to hosts_allow (a bare supervisor); the appliance always passes its clients.
        self.clients = clients
        self._secrets_text: str | None = None
        self.clock = clock
        self.monotonic = monotonic
        self._status = ServiceStatus()
        self._binary: str | None = None
        self._proc: asyncio.subprocess.Process | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._refresher: asyncio.Task[None] | None = None
        self._stopping = False
        self._listening = asyncio.Event()
        self._bound: asyncio.Task[None] | None = None  # waits for the socket after rsync's "listening" line
        self._config_text: str | None = None
        self._modules = 0
        self._skipped: set[str] = set()
        self.restarts = 0
        self.last_exit: dict[str, Any] | None = None
        self._recent: deque[str] = deque(maxlen=20)
        self._transfers = TransferLog()
        self._auth_log = LimitedLog(log)
        self._auth_flush: asyncio.TimerHandle | None = None
        self._peak = 0  # most transfers seen running at once (from the log), against max_connections

    # -- lifecycle --------------------------------------------------------------------------------

    async def start(self) -> None:
        s = self.settings
        self._status.listen = [f"{s.address}:{s.port}/tcp"]
        self._binary = shutil.which(s.rsync)
        if self._binary is None:
            self._status.state = "failed"
            self._status.error = (f"rsync binary {s.rsync!r} not found in PATH (install the rsync package); "
                                  "images cannot be served, other services keep running")
            log.error("rsyncd-failed", error=self._status.error)
            return
        try:
            self.refresh()
        except OSError as e:
            self._status.state = "failed"
            self._status.error = f"cannot write {s.config_path}: {e.strerror}"
            log.error("rsyncd-failed", error=self._status.error)
            return
        # An rsync a killed imageserver left serving would hold the port (and serve the old config).
        try:
            reap_stale(s.pid_path, self._is_ours)
        except OSError as e:
            log.warning("rsyncd-stale-check-failed", error=str(e))
        self._stopping = False
        self._supervisor = asyncio.create_task(self._supervise(), name="rsyncd-supervisor")
        self._refresher = asyncio.create_task(self._refresh_loop(), name="rsyncd-refresh")
        # Return once rsync listens (or has had a fair chance to): a bad port shows up in status().
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._listening.wait(), 5.0)

    async def stop(self) -> None:
        self._stopping = True
        if self._auth_flush is not None:
            self._auth_flush.cancel()
            self._auth_flush = None
            self._auth_log.flush(float("inf"))
        for task in (self._refresher, self._bound):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        await self._terminate()
        remove_pid_file(self.settings.pid_path)
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor
        self._status.state = "stopped"

    async def _terminate(self) -> None:
        proc = self._proc
        if proc is None or proc.returncode is not None:
            return
        # The daemon's process group holds its per-connection children too: stopping means all of them.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), 5.0)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()

    # -- the config -------------------------------------------------------------------------------

    def set_hosts_allow(self, hosts_allow: tuple[str, ...]) -> None:
        """Take a new allow list live (SIGHUP): the next connection is checked against it."""
        self.settings = replace(self.settings, hosts_allow=hosts_allow)
        if self._binary is not None:
            self.refresh()

    def refresh(self) -> bool:
        """Rewrite rsyncd.conf from the catalog if it changed; True if the file was replaced."""
        versions = []
        for name, version, path in self.catalog():
            key = f"{name}_v{version}"
            if not os.path.isdir(path):
                if key not in self._skipped:
                    log.warning("rsyncd-module-skipped", module=key, reason=f"tree {path} is missing")
                    self._skipped.add(key)
                continue
            self._skipped.discard(key)
            versions.append((name, version, path))
        modules = modules_for(versions)
        sat_users = list(self.satellites()) if self.satellites is not None and self.images_root is not None else []
        if sat_users:
            assert self.images_root is not None
            modules.append(Module(SATELLITE_MODULE, str(self.images_root), "image trees for satellites"))
        access, secrets = self._access(modules, sat_users)
        secrets_file = str(self.settings.secrets_path) if access is not None else None
        limits = {"max_connections": self.settings.max_connections, "lock_file": str(self.settings.lock_path)}
        good = []
        for m in modules:
            try:
                render_config([m], self.settings.hosts_allow, access=access, secrets_file=secrets_file, **limits)
                good.append(m)
            except RsyncdConfigError as e:
                log.warning("rsyncd-module-skipped", module=m.name, reason=str(e))
        text = render_config(good, self.settings.hosts_allow, access=access, secrets_file=secrets_file, **limits)
        path = self.settings.config_path
        path.parent.mkdir(parents=True, exist_ok=True)
        if secrets is not None and secrets != self._secrets_text:
            # Before the config that names it: a new client's password is in place when its module opens.
            _replace(self.settings.secrets_path, secrets, 0o600)
            self._secrets_text = secrets
        if text == self._config_text:
            return False
        # rsync reads the file per connection: replace it atomically so no client reads half a file.
        _replace(path, text, 0o644)
        self._config_text = text
        self._modules = len(good)
        log.info("rsyncd-config", modules=len(good), clients=len(secrets.splitlines()) if secrets else 0, path=path)
        return True

    def _access(self, modules: list[Module], satellite_users: Sequence[tuple[str, str]] = ()
                ) -> tuple[dict[str, Access] | None, str | None]:
        """Per module: the users and addresses of the machines allowed to pull it, and the secrets text."""
        if self.clients is None:
            return None, None
        allowed = _networks(self.settings.hosts_allow)
        passwords: dict[str, str] = {}
        users: dict[str, list[str]] = {m.name: [] for m in modules}
        addresses: dict[str, list[str]] = {m.name: [] for m in modules}
        for c in self.clients():
            if not _inside(c.ip, allowed):
                continue  # [rsyncd] hosts_allow stays the outer bound
            for m in modules:
                if m.image == c.image and (c.version is None or c.version == m.version):
                    passwords[c.user] = c.password
                    if c.user not in users[m.name]:
                        users[m.name].append(c.user)
                    if c.ip not in addresses[m.name]:
                        addresses[m.name].append(c.ip)
        if SATELLITE_MODULE in users:
            # Satellites pull from anywhere inside hosts_allow (they sit in other racks); a user name a
            # host already has would share its password line, so such a satellite is left out.
            for user, password in satellite_users:
                if user in passwords:
                    log.warning("rsyncd-satellite-skipped", user=user, reason="a host has this rsync user")
                    continue
                passwords[user] = password
                users[SATELLITE_MODULE].append(user)
            addresses[SATELLITE_MODULE] = list(self.settings.hosts_allow)
        try:
            secrets = render_secrets(passwords)
        except RsyncdConfigError as e:
            log.warning("rsyncd-clients-skipped", reason=str(e))
            secrets, users = "", {}
        return {name: Access(tuple(users.get(name, ())), tuple(addresses[name])) for name in addresses}, secrets

    async def _refresh_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.refresh_seconds)
            try:
                self.refresh()
            except Exception as e:  # a locked database or a full disk must not stop the supervisor
                log.error("rsyncd-config-failed", error=str(e))

    # -- supervision ------------------------------------------------------------------------------

    def _argv(self) -> list[str]:
        s = self.settings
        assert self._binary is not None
        return [*s.launcher, self._binary, "--daemon", "--no-detach", f"--config={s.config_path}",
                f"--address={s.address}", f"--port={s.port}"]

    async def _supervise(self) -> None:
        quick_failures = 0
        while not self._stopping:
            started = self.monotonic()
            log_pipe: tuple[asyncio.BaseTransport, asyncio.StreamReader] | None = None
            try:
                # rsync opens its `log file = /dev/stdout`: that must be a pipe, not the socketpair some
                # event loops (uvloop) give a child for PIPE, which /proc/self/fd cannot open (ENXIO).
                read_end, write_end = os.pipe()
                try:
                    self._proc = await asyncio.create_subprocess_exec(
                        *self._argv(), stdin=asyncio.subprocess.DEVNULL, stdout=write_end,
                        stderr=asyncio.subprocess.STDOUT, start_new_session=True,
                        # kill -9 of the imageserver must not leave rsync serving (and holding the port).
                        preexec_fn=die_with_parent())
                except BaseException:
                    os.close(read_end)
                    raise
                finally:
                    os.close(write_end)
                log_pipe = await _pipe_reader(read_end)
            except OSError as e:
                code: int | None = None
                reason = f"cannot run {self._binary}: {e.strerror}"
            else:
                self._recent.clear()
                try:
                    write_pid_file(self.settings.pid_path, self._proc.pid)
                except OSError as e:
                    log.warning("rsyncd-pid-file-failed", error=str(e))
                # "running" only once rsync says it listens (see _on_event): a client that trusts the
                # status must not race the bind.
                self._status.state = "starting" if quick_failures < self.settings.failed_after else "failed"
                log.info("rsyncd-started", pid=self._proc.pid, port=self.settings.port, restarts=self.restarts)
                assert log_pipe is not None
                try:
                    await self._read_log(log_pipe[1])
                finally:
                    log_pipe[0].close()
                code = await self._proc.wait()
                reason = _describe_exit(code)
            if self._stopping:
                break
            ran = self.monotonic() - started
            # The last lines say why ("bind() failed: Address already in use" comes before "rsync error").
            tail = " | ".join(_LOG_PREFIX.sub("", line) for line in list(self._recent)[-3:])
            self.last_exit = {"code": code, "reason": reason, "at": self.clock(), "ran_seconds": round(ran, 3),
                              "output": list(self._recent)[-5:]}
            self._listening.clear()
            quick_failures = 0 if ran >= self.settings.stable_after else quick_failures + 1
            delay = min(self.settings.backoff_first * 2 ** max(0, quick_failures - 1), self.settings.backoff_max)
            self.restarts += 1
            self._status.counters["restarts"] += 1
            self._status.state = "failed" if quick_failures >= self.settings.failed_after else "restarting"
            self._status.error = f"rsync daemon ended ({reason}) after {ran:.1f} s" + (f": {tail}" if tail else "")
            log.warning("rsyncd-exited", reason=reason, ran=f"{ran:.1f}", restart_in=f"{delay:.2f}", last_output=tail)
            await asyncio.sleep(delay)

    def _is_ours(self, argv: Sequence[str]) -> bool:
        """The command line of an rsync daemon we started on this state dir's config."""
        return ("--daemon" in argv and f"--config={self.settings.config_path}" in argv
                and any(os.path.basename(a).startswith("rsync") for a in argv))

    async def _read_log(self, stdout: asyncio.StreamReader) -> None:
        while True:
            try:
                raw = await stdout.readline()
            except ValueError:  # a line longer than the stream limit: skip it
                continue
            if not raw:
                return
            line = raw.decode(errors="replace").rstrip("\n")
            self._recent.append(line)
            for ev in self._transfers.feed(line, self.monotonic()):
                self._on_event(ev)
            self._peak = max(self._peak, self._transfers.active())
            self._transfers.forget_older_than(self.monotonic() - 86400)

    def _on_event(self, ev: dict[str, Any]) -> None:
        kind = ev.pop("event")
        if kind == "listening":
            self._bound = asyncio.create_task(self._when_bound(int(ev["port"]), str(ev["version"])),
                                              name="rsyncd-bound")
            return
        if kind == "auth-failed":
            # Password guessing comes fast (~30 tries a second from one address): each is counted, a few
            # are logged per interval and the rest summed up in one line (the key is fixed, not the peer).
            self._status.counters["auth_failed"] += 1
            now = self.monotonic()
            if not self._auth_log.log("rsync-auth-failed", now, logging.WARNING, "rsync-auth-failed", **ev):
                self._flush_auth_log_later()
            return
        self._status.counters[kind] += 1
        if kind == "transfer":
            self._status.counters["bytes_sent"] += int(ev["sent"])
            if ev.get("errors"):
                self._status.counters["transfer_errors"] += 1
            log.info("rsync-transfer", **ev)
        elif kind == "busy":  # a mass reboot makes many: expected, the client waits in line
            log.info("rsync-busy", **ev)
        else:
            log.warning(f"rsync-{kind}", **ev)

    def _flush_auth_log_later(self) -> None:
        """The suppressed failures' summary line is written when the interval ends, even if no try follows."""
        if self._auth_flush is not None:
            return

        def flush() -> None:
            self._auth_flush = None
            self._auth_log.flush(self.monotonic())

        interval = self._auth_log.limiter.interval
        self._auth_flush = asyncio.get_running_loop().call_later(interval + 0.1, flush)

    async def _when_bound(self, port: int, version: str) -> None:
        """"running" once the socket listens. rsync logs "listening on port N" before it binds
        (clientserver.c: the log line, then start_accept_loop), so a client that trusted the line could
        meet a refused connection on a loaded box."""
        proc = self._proc
        while proc is None or not listens(proc.pid, port):
            if proc is None or proc.returncode is not None or proc is not self._proc:
                return  # it ended (a bind failure): the supervisor reports why
            await asyncio.sleep(0.02)
        self._listening.set()
        self._status.state = "running"
        self._status.error = None
        log.info("rsyncd-listening", port=port, version=version)

    # -- status -----------------------------------------------------------------------------------

    @property
    def pid(self) -> int | None:
        proc = self._proc
        return proc.pid if proc is not None and proc.returncode is None else None

    def status(self) -> dict[str, Any]:
        out = self._status.as_dict()
        out.update({
            "pid": self.pid,
            "restarts": self.restarts,
            "last_exit": self.last_exit,
            "modules": self._modules,
            "max_connections": self.settings.max_connections,
            "transfers_active": self._transfers.active(),
            "transfers_peak": self._peak,
            "config": str(self.settings.config_path),
        })
        return out
