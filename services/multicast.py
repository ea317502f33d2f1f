"""Multicast install sessions: one udp-sender per image version, for every installer that joined in time.

A session starts when the first installer of a version asks for a seat (POST /install/<mac>/multicast,
with its install token, from its own address). The sender then waits for the others: it starts when
`min_receivers` joined (the hosts due to install that version by multicast, at least the ones that asked)
and `min_wait` passed, or `start_window` seconds after the first receiver appeared, whichever comes
first. An installer that asks after the transfer began gets no seat and pulls by rsync; so does one the
sender dropped for being too slow (`retries_until_drop`): one slow machine costs the others a few
seconds, not the whole install.

The stream is `tar | openssl enc | tee (sha256) | udp-sender`, run by bash under our supervision (it dies
with us). Sessions, receivers per session and finished sessions kept for their digest are all capped.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import shutil
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from domain.settings import MulticastConfig
from protocols import udpcast
from services.base import ServiceError, ServiceStatus
from services.childproc import die_with_parent
from state.credentials import new_token
from state.eventlog import EventLog

log = EventLog("imageserver.multicast")

TOOLS = ("udp-sender", "openssl", "tar", "bash", "sha256sum", "tee", "mkfifo")
KEEP_FINISHED = 16  # finished sessions kept for their digest and the status page
LOG_TAIL = 20


class MulticastError(RuntimeError):
    """No seat: the message says why (the installer pulls by rsync instead)."""


@dataclass
class Session:
    id: str
    image: str
    version: int
    tree: Path
    slot: int
    portbase: int
    key: str
    created: float
    expected: int
    state: str = "waiting"  # waiting -> sending -> done | failed
    hosts: set[str] = field(default_factory=set)
    connected: dict[int, str] = field(default_factory=dict)  # udpcast client number -> address
    dropped: list[str] = field(default_factory=list)
    sha256: str | None = None
    error: str | None = None
    finished: float | None = None
    tail: list[str] = field(default_factory=list)
    proc: asyncio.subprocess.Process | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"session": self.id, "image": self.image, "version": self.version, "state": self.state,
                "portbase": self.portbase, "hosts": sorted(self.hosts), "expected": self.expected,
                "receivers": sorted(self.connected.values()), "dropped": list(self.dropped),
                "sha256": self.sha256, "error": self.error, "created": self.created, "finished": self.finished}


def missing_tools() -> list[str]:
    return [t for t in TOOLS if shutil.which(t) is None]


class MulticastService:
    name = "multicast"

    def __init__(self, settings: MulticastConfig, *, interface: str, state_dir: Path,
                 clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.interface = interface  # [appliance] interface: udpcast sends on it
        self.state_dir = state_dir
        self.clock = clock
        self.st = ServiceStatus()
        self.sessions: dict[str, Session] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    # ---------------------------------------------------------------- lifecycle

    @property
    def work_dir(self) -> Path:
        return self.state_dir / "multicast"

    async def start(self) -> None:
        missing = missing_tools()
        if missing:
            self.st.state, self.st.error = "failed", f"missing {', '.join(missing)} (Debian packages udpcast, openssl)"
            raise ServiceError(f"multicast: {self.st.error}")
        udpcast.check_portbase(self.settings.portbase)
        shutil.rmtree(self.work_dir, ignore_errors=True)  # keys of a previous run are worthless now
        self.work_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.st.state = "running"
        self.st.listen = [f"{self.settings.rdv_address} udp/{self.settings.portbase}+ on {self.interface}"]

    async def stop(self) -> None:
        for s in self.sessions.values():
            if s.proc is not None and s.proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(s.proc.pid, signal.SIGTERM)
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        shutil.rmtree(self.work_dir, ignore_errors=True)
        self.st.state = "stopped"

    def status(self) -> dict[str, Any]:
        out = self.st.as_dict()
        out["sessions"] = [s.as_dict() for s in self.sessions.values()]
        return out

    # ---------------------------------------------------------------- seats

    def join(self, host: str, image: str, version: int, tree: Path, expected: int) -> Session:
        """A seat for `host` in the session sending image/version: the waiting one, or a new one."""
        if self.st.state != "running":
            raise MulticastError("multicast is not running on this imageserver")
        for s in self.sessions.values():
            if (s.image, s.version) == (image, version) and s.state in ("waiting", "sending"):
                if host in s.hosts:
                    return s  # asked again (a retried request): the same seat
                if s.state != "waiting":
                    raise MulticastError(f"the multicast of {image} v{version} has started; pull by rsync")
                if len(s.hosts) >= self.settings.max_receivers:
                    raise MulticastError(f"the multicast of {image} v{version} is full "
                                         f"({self.settings.max_receivers} receivers)")
                s.hosts.add(host)
                return s
        session = self._new_session(image, version, tree, expected)
        session.hosts.add(host)
        return session

    def session_of(self, host: str) -> Session | None:
        """The newest session `host` holds a seat in."""
        mine = [s for s in self.sessions.values() if host in s.hosts]
        return max(mine, key=lambda s: s.created) if mine else None

    def _new_session(self, image: str, version: int, tree: Path, expected: int) -> Session:
        active = [s for s in self.sessions.values() if s.state in ("waiting", "sending")]
        if len(active) >= self.settings.max_sessions:
            raise MulticastError(f"{len(active)} multicast sessions are running (max_sessions); pull by rsync")
        used = {s.slot for s in active}
        slot = next(i for i in range(self.settings.max_sessions) if i not in used)
        # The id names the session in logs and its work directory (16 hex digits, as before); the key is the secret.
        session = Session(id=new_token(hexadecimal=True)[:16], image=image, version=version, tree=tree, slot=slot,
                          portbase=self.settings.portbase + 2 * slot, key=new_token(hexadecimal=True),
                          created=self.clock(), expected=max(1, expected))
        self._forget_finished()
        self.sessions[session.id] = session
        task = asyncio.get_running_loop().create_task(self._run(session))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        log.info('multicast-session', session=session.id, image=image, version=version, portbase=session.portbase,
                 expected=session.expected)
        return session

    def _forget_finished(self) -> None:
        finished = sorted((s for s in self.sessions.values() if s.state in ("done", "failed")),
                          key=lambda s: s.finished or 0)
        for s in finished[:max(0, len(finished) - KEEP_FINISHED + 1)]:
            del self.sessions[s.id]

    # ---------------------------------------------------------------- the sender

    def pipeline(self, session: Session, directory: Path) -> str:
        """The bash pipeline for one session: the stream, its digest, udp-sender."""
        s = self.settings
        plan = udpcast.SenderPlan(interface=self.interface, portbase=session.portbase,
                                  min_receivers=session.expected, min_wait=s.min_wait, max_wait=s.start_window,
                                  start_timeout=s.start_timeout, retries_until_drop=s.retries_until_drop,
                                  max_bitrate=s.max_bitrate)
        key, fifo, part, digest = (directory / n for n in ("key", "ciphertext", "sha256.part", "sha256"))
        sender = [*udpcast.sender_argv(plan), "--mcast-rdv-address", str(s.rdv_address)]

        def cmd(argv: Sequence[str]) -> str:
            return " ".join(shlex.quote(a) for a in argv)

        return "\n".join([
            "set -o pipefail",
            f"mkfifo {shlex.quote(str(fifo))}",
            f"sha256sum <{shlex.quote(str(fifo))} >{shlex.quote(str(part))} & hasher=$!",
            f"{cmd(udpcast.tar_create_argv(str(session.tree)))} | {cmd(udpcast.encrypt_argv(str(key)))} | "
            f"tee {shlex.quote(str(fifo))} | {cmd(sender)}",
            "rc=$?",
            "wait $hasher",
            f'[ $rc = 0 ] && mv {shlex.quote(str(part))} {shlex.quote(str(digest))}',
            "exit $rc",
        ])

    async def _run(self, session: Session) -> None:
        directory = self.work_dir / session.id
        directory.mkdir(mode=0o700)
        key_file = directory / "key"
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(session.key)
        try:
            proc = await asyncio.create_subprocess_exec(
                "bash", "-c", self.pipeline(session, directory), stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE, start_new_session=True,
                preexec_fn=die_with_parent())
            session.proc = proc
            assert proc.stderr is not None
            async for raw in proc.stderr:
                self._on_line(session, raw.decode(errors="replace").rstrip())
            code = await proc.wait()
            if code == 0 and (directory / "sha256").exists():
                session.sha256 = (directory / "sha256").read_text().split()[0]
                session.state = "done"
            else:
                session.state = "failed"
                session.error = f"sender exited {code}: " + " | ".join(session.tail[-3:])
        except OSError as e:
            session.state, session.error = "failed", f"cannot run the sender: {e}"
        finally:
            session.finished = self.clock()
            with contextlib.suppress(OSError):
                key_file.unlink()  # the key is of no use once the stream is over
            self.st.counters[f"sessions_{session.state}"] += 1
            log.info(f"multicast-{session.state}", session=session.id, image=session.image, version=session.version,
                     receivers=len(session.connected), dropped=len(session.dropped), error=session.error)

    def _on_line(self, session: Session, line: str) -> None:
        if not line:
            return
        session.tail = [*session.tail[-(LOG_TAIL - 1):], line]
        ev = udpcast.parse_sender_line(line)
        if ev is None:
            return
        if ev.kind == "connected" and ev.client is not None and ev.address is not None:
            session.connected[ev.client] = ev.address
        elif ev.kind == "started":
            session.state = "sending"
            log.info('multicast-start', session=session.id, receivers=len(session.connected))
        elif ev.kind == "dropped" and ev.client is not None:
            address = session.connected.get(ev.client, f"#{ev.client}")
            session.dropped.append(address)
            self.st.counters["receivers_dropped"] += 1
            log.warning('multicast-drop', session=session.id, receiver=address, reason='slow')
