"""The satellite role: this appliance mirrors a primary's images and hosts and reports its installs back.

A satellite is a whole appliance (DHCP, TFTP, HTTP, rsync for its own subnet, from its own store);
this service is the one thing the role adds. Every `interval` seconds it:

1. moves new local install events into the durable outbox (state/outbox.py), in the transaction that
   moves the cursor;
2. sends the outbox, oldest first, in batches, to the primary's POST /satellite/v1/reports; a row leaves
   the outbox only once the primary says it applied it (its answer names the last id), so a lost answer
   means a replay, which the primary skips;
3. reads the primary's GET /satellite/v1/config, mirrors every image version it lacks (the injected
   `mirror_version`: rsync from the primary's satellite module, then register it locally under the same
   name and version number) and applies the host list (checked by domain/mirror.py, stored by state/mirror.py).

The primary away (refused, timeout, 5xx) is not an error of the satellite: installs go on from the
local store, reports wait in the outbox (capped), the status says "primary-unreachable" with the reason,
and the next round tries again, backing off to `max_interval`.

The link is HTTPS with the primary's certificate pinned (`primary_fingerprint`): a primary showing another
certificate gets nothing (not the token, not a report), and the status and the log say which certificate
it showed and which one is pinned. An http:// primary still works (the token then crosses the network in
clear: a warning at every start).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp

from domain import mirror as host_mirror
from domain.errors import Invalid
from domain.settings import SatelliteLinkConfig
from protocols import fingerprint
from services.auth import bearer_header
from services.base import ServiceStatus
from state import outbox
from state.eventlog import EventLog
from state.images import list_versions
from state.store import Store

log = EventLog("imageserver.satellite")

# (image entry of the primary's config, its "rsync" entry) -> mirrors the tree and registers the version.
MirrorVersion = Callable[[dict[str, Any], dict[str, Any]], Awaitable[None]]


REQUEST_TIMEOUT = 15.0  # seconds for one request to the primary
REPORT_BATCH = 200  # install reports sent per request


class PrimaryAway(Exception):
    """The primary did not answer as a primary does; the message says how."""


class SatelliteLink:
    name = "satellite"

    def __init__(self, settings: SatelliteLinkConfig, token: str, store: Store, mirror_version: MirrorVersion,
                 clock: Callable[[], float] = time.time, on_change: Callable[[], object] | None = None,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self.token = token
        self.monotonic = monotonic
        # Called after new versions or hosts landed (the rsync daemon's config refresh: serve them now).
        self.on_change = on_change
        self.store = store
        self.mirror_version = mirror_version
        self.clock = clock
        self._status = ServiceStatus()
        self._task: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None
        self._wake = asyncio.Event()
        self.last_contact: float | None = None
        self.last_error: str | None = None
        self.mirroring: str | None = None
        self._failed_versions: dict[str, str] = {}

    async def start(self) -> None:
        await self.store.journal.run(outbox.ensure_tables)
        pin = self.settings.primary_fingerprint
        # The primary's certificate pinned: aiohttp checks it after the handshake, before the request (and
        # its token) is sent. Without a pin an https:// primary must be trusted by the system's CAs.
        connector = aiohttp.TCPConnector(ssl=aiohttp.Fingerprint(fingerprint.digest(pin))) if pin else None
        if not self.settings.primary.startswith("https://"):
            log.warning("satellite-plain-http", primary=self.settings.primary,
                        hint="the satellite token crosses the network in clear: use https:// and "
                             "[satellite] primary_fingerprint")
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT),
            headers=bearer_header(self.token), connector=connector)
        self._status.state = "running"
        self._status.listen = []
        self._task = asyncio.create_task(self._loop(), name="satellite-link")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._session is not None:
            await self._session.close()
        self._status.state = "stopped"

    def poke(self) -> None:
        """Sync now (an install just reported, say) instead of at the next interval."""
        self._wake.set()

    async def _loop(self) -> None:
        # Local events move into the outbox every interval (the status shows the true backlog, and a
        # crash loses nothing); the primary is tried every interval while it answers, backing off
        # to max_interval while it does not.
        delay = self.settings.interval
        next_try = 0.0
        while True:
            try:
                await self.store.journal.run(outbox.collect_op(self.settings.outbox_cap))
            except Exception as e:  # a full disk must not end the link; the events stay in install_events
                log.error('satellite-collect-failed', error=str(e))
            if self._wake.is_set() or self.monotonic() >= next_try:
                try:
                    await self.sync_once()
                    delay = self.settings.interval
                except PrimaryAway as e:
                    self._away(str(e))
                    delay = min(delay * 2, self.settings.max_interval)
                except Exception as e:  # a locked store must not end the link
                    self._away(f"{type(e).__name__}: {e}")
                    log.exception('satellite-sync-failed')
                    delay = min(delay * 2, self.settings.max_interval)
                next_try = self.monotonic() + delay
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.settings.interval)

    def _away(self, reason: str) -> None:
        if self._status.state != "primary-unreachable":
            log.warning("satellite-primary-unreachable", primary=self.settings.primary, reason=reason,
                        backlog=outbox.backlog(self.store.reader))
        self._status.state = "primary-unreachable"
        self._status.error = reason
        self._status.counters["unreachable"] += 1

    async def sync_once(self) -> None:
        await self.store.journal.run(outbox.collect_op(self.settings.outbox_cap))
        await self._deliver()
        doc = await self._get("/satellite/v1/config")
        await self._mirror(doc)
        await self._deliver()  # what the mirror changed, and what arrived meanwhile
        if self._status.state != "running":
            log.info('satellite-primary-back', primary=self.settings.primary)
        self._status.state = "running"
        self._status.error = None
        self.last_contact = self.clock()

    async def _get(self, path: str) -> dict[str, Any]:
        return await self._call("GET", path, None)

    async def _call(self, method: str, path: str, body: dict[str, Any] | None) -> dict[str, Any]:
        assert self._session is not None
        url = self.settings.primary.rstrip("/") + path
        try:
            async with self._session.request(method, url, json=body) as r:
                if r.status != 200:
                    text = (await r.text())[:300]
                    raise PrimaryAway(f"{method} {path}: HTTP {r.status} {text}")
                doc = await r.json()
        except aiohttp.ServerFingerprintMismatch as e:
            reason = (f"the primary's certificate is not the pinned one: it shows SHA-256 {fingerprint.spell(e.got)}, "
                      f"[satellite] primary_fingerprint is {fingerprint.spell(e.expected)}; refusing to sync "
                      "(nothing was sent)")
            if self._status.error != reason:
                log.error("satellite-pin-mismatch", primary=self.settings.primary, got=fingerprint.spell(e.got),
                          pinned=fingerprint.spell(e.expected))
            raise PrimaryAway(reason) from None
        except (aiohttp.ClientError, TimeoutError, ValueError) as e:
            raise PrimaryAway(f"{method} {path}: {type(e).__name__}: {e}") from None
        if not isinstance(doc, dict):
            raise PrimaryAway(f"{method} {path}: the answer is not a JSON object")
        return doc

    def _versions(self) -> list[str]:
        return [v.module for v in list_versions(self.store.reader)]

    async def _deliver(self) -> None:
        while True:
            rows = outbox.pending(self.store.reader, REPORT_BATCH)
            backlog = outbox.backlog(self.store.reader)
            answer = await self._call("POST", "/satellite/v1/reports",
                                      {"events": [r.as_dict() for r in rows], "versions": self._versions(),
                                       "backlog": backlog})
            delivered = answer.get("delivered")
            if not rows:
                return
            if not isinstance(delivered, int) or delivered < rows[0].id:
                raise PrimaryAway(f"the primary applied none of outbox rows {rows[0].id}..{rows[-1].id} "
                                  f"(answer {answer})")
            await self.store.journal.run(outbox.ack_op(delivered))
            self._status.counters["reports_delivered"] += sum(1 for r in rows if r.id <= delivered)
            if len(rows) < REPORT_BATCH:
                return

    async def _mirror(self, doc: dict[str, Any]) -> None:
        images, rsync = doc.get("images"), doc.get("rsync")
        if not isinstance(images, list) or not isinstance(rsync, dict):
            raise PrimaryAway("the config document has no images/rsync")
        have = set(self._versions())
        # Oldest first: a newer version hard-links against the one before it.
        for image in sorted((i for i in images if isinstance(i, dict)),
                            key=lambda i: (str(i.get("name")), int(i.get("version") or 0))):
            module = f"{image.get('name')}_v{image.get('version')}"
            if module in have:
                continue
            self.mirroring = module
            try:
                await self.mirror_version(image, rsync)
            except PrimaryAway:
                raise
            except Exception as e:  # one bad version must not stop the others (or the host list)
                if self._failed_versions.get(module) != str(e):
                    log.error('satellite-mirror-failed', module=module, error=str(e))
                self._failed_versions[module] = str(e)
                self._status.counters["mirror_failures"] += 1
                continue
            finally:
                self.mirroring = None
            self._failed_versions.pop(module, None)
            self._status.counters["versions_mirrored"] += 1
            log.info('satellite-mirrored', module=module)
        try:
            added, changed, again, removed = await self.store.journal.run(
                host_mirror.mirror_hosts_op(doc, self.clock()))
        except Invalid as e:
            raise PrimaryAway(f"the host list: {e}") from None
        if added or changed or again or removed:
            log.info('satellite-hosts', added=added, changed=changed, reinstall=again, removed=removed)
        if (added or changed or again or removed or self.mirroring is not None or len(self._versions()) != len(have)) \
                and self.on_change is not None:
            try:
                self.on_change()
            except Exception as e:  # the rsync service's own refresh loop tries again
                log.warning('satellite-refresh-failed', error=str(e))

    def status(self) -> dict[str, Any]:
        out = self._status.as_dict()
        reader = self.store.reader
        try:
            backlog, dropped = outbox.backlog(reader), outbox.dropped(reader)
        except Exception:  # no outbox table yet (before start)
            backlog, dropped = 0, 0
        out.update({"primary": self.settings.primary, "last_contact": self.last_contact, "backlog": backlog,
                    "dropped": dropped, "versions": self._versions(), "mirroring": self.mirroring,
                    "failed_versions": dict(self._failed_versions)})
        return out
