"""Answers "what does this machine boot?" for the HTTP (iPXE) and TFTP (pxelinux, GRUB) servers alike.

One object shared by both servers: it reads the host, asks state.boot for the decision, fills in a
missing install token, notes the machine as seen, and renders with protocols.bootscript. Keeping
this in one place is what makes iPXE and pxelinux machines agree.

Everything here runs on the event loop thread and never blocks on the disk: reads go to the store's
reader connection, writes are queued on the journal. A freshly issued install token is kept in
memory until its write has committed, so a second request in between gets the same token.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from protocols.bootscript import (
    GRUB_BOOTSTRAP,
    BootPlan,
    BootServer,
    grub_bootstrap,
    grub_config_mac,
    pxelinux_config_mac,
    render_grub,
    render_ipxe,
    render_pxelinux,
)
from state import credentials
from state.boot import BootDecision, BootPolicy, boot_decision_for_mac
from state.credentials import fetch_nonce, inspect_nonce, new_token, token_expired
from state.eventlog import EventLog
from state.hosts import rotate_install_token_op, set_install_token_op, token_issued, touch_host_op
from state.sightings import MachineLog
from state.store import Store

log = EventLog("imageserver.boot")

_REMEMBERED_KINDS = 4096  # last decision per MAC, only to log changes once; cleared when this big


@dataclass(frozen=True, slots=True)
class BootSettings:
    """The live part of the config the boot answers depend on (replaced as a whole on SIGHUP)."""

    policy: BootPolicy = BootPolicy()
    kernel_cmdline: str = ""
    http_port: int = 80
    address: str | None = None  # [appliance] address: what TFTP answers name (HTTP uses the connection's)
    pxelinux: str = "pxelinux.0"
    via_pxelinux: bool = False  # [boot] loader = "pxelinux": BIOS iPXE machines chain pxelinux.0


class BootResponder:
    def __init__(
        self,
        store: Store,
        settings: BootSettings,
        *,
        clock: Callable[[], float],
        machines: MachineLog | None = None,
        new_token: Callable[[], str] = new_token,
    ) -> None:
        self.store = store
        self.settings = settings
        self.clock = clock
        self.machines = machines
        self._new_token = new_token
        self._pending_tokens: dict[str, str] = {}
        # The key of inspect nonces (state/credentials.py): this process's only, so a restart ends them.
        self.inspect_key = credentials.new_token()
        self._last_kind: dict[str, str] = {}

    # --- the decision --------------------------------------------------------------------------

    def decide(self, mac: str) -> BootDecision:
        """The decision as stored state says now, without side effects (for the API)."""
        return boot_decision_for_mac(self.store.reader, mac, self.settings.policy)

    def _answer(self, mac: str, via: str, peer: str | None = None) -> tuple[BootDecision, asyncio.Future[Any] | None]:
        """Decide for a booting machine: record it as seen and make sure an install has its token."""
        now = self.clock()
        decision = self.decide(mac)
        if self.machines is not None:
            self.machines.seen(mac, now)
        pending: asyncio.Future[Any] | None = None
        if decision.hostname is not None:
            self._background(self.store.journal.submit(touch_host_op(decision.hostname, now)))
        if (decision.kind == "install" and decision.install_token is not None and decision.hostname is not None
                and token_expired(token_issued(self.store.reader, decision.hostname), now)):
            # Expired: this boot gets a fresh token (compare-and-set on the old one).
            old = decision.install_token
            name = decision.hostname
            token = self._pending_tokens.get(name)
            if token is None:
                token = self._pending_tokens[name] = self._new_token()
                pending = self.store.journal.submit(rotate_install_token_op(name, old, token, now))
                pending.add_done_callback(lambda f, n=name: self._token_written(n, f))
            decision = replace(decision, install_token=token)
        if decision.kind == "install" and decision.install_token is None:
            name = decision.hostname
            assert name is not None
            token = self._pending_tokens.get(name)
            if token is None:
                token = self._pending_tokens[name] = self._new_token()
                pending = self.store.journal.submit(set_install_token_op(name, token, now))
                pending.add_done_callback(lambda f, n=name: self._token_written(n, f))
            decision = replace(decision, install_token=token)
        if decision.kind == "install" and decision.install_token is not None:
            # Anyone may fetch this file: it carries a nonce bound to the MAC and the asking address, not the token.
            nonce = fetch_nonce(decision.install_token, mac, peer or "")
            decision = replace(decision, install_token=None, fetch_nonce=nonce)
        if decision.kind == "inspect":
            decision = replace(decision, fetch_nonce=inspect_nonce(self.inspect_key, mac, peer or ""))
        self._log(decision, via)
        return decision, pending

    def _token_written(self, name: str, fut: asyncio.Future[Any]) -> None:
        self._pending_tokens.pop(name, None)
        if fut.cancelled():
            return
        if fut.exception() is not None:
            log.error("install-token-write-failed", host=name, error=str(fut.exception()))

    def _background(self, fut: asyncio.Future[Any]) -> None:
        def done(f: asyncio.Future[Any]) -> None:
            if not f.cancelled() and f.exception() is not None:
                log.warning("boot-write-failed", error=str(f.exception()))

        fut.add_done_callback(done)

    def _log(self, d: BootDecision, via: str) -> None:
        # A waiting machine asks every few seconds: log at info only when its answer changes.
        if self._last_kind.get(d.mac) != d.kind:
            if len(self._last_kind) >= _REMEMBERED_KINDS:
                self._last_kind.clear()
            self._last_kind[d.mac] = d.kind
            log.info("boot-decision", mac=d.mac, hostname=d.hostname or "-", via=via, kind=d.kind, reason=d.reason)
        else:
            log.debug("boot-decision", mac=d.mac, hostname=d.hostname or "-", via=via, kind=d.kind)

    def _server(self, address: str, http_port: int | None = None) -> BootServer:
        s = self.settings
        return BootServer(address=address, http_port=http_port or s.http_port, kernel_cmdline=s.kernel_cmdline,
                          pxelinux=s.pxelinux)

    # --- renderings ----------------------------------------------------------------------------

    async def ipxe_script(self, mac: str, local_address: str, local_port: int | None = None,
                          peer: str | None = None) -> tuple[BootDecision, str]:
        """The iPXE script for `mac`, with URLs on the address (and port) the machine reached us at."""
        decision, pending = self._answer(mac, "http", peer)
        if pending is not None:
            # The token is the installer's credential: have it on disk before handing it out.
            await asyncio.shield(pending)
        server = self._server(local_address, local_port)
        return decision, render_ipxe(decision, server, via_pxelinux=self.settings.via_pxelinux)

    def pxelinux_config(self, filename: str, peer: tuple[str, int]) -> bytes | None:
        """TFTP's dynamic content: pxelinux.cfg/01-<mac> rendered; None for every other name."""
        return self._tftp_rendering(pxelinux_config_mac(filename), "pxelinux", "tftp", peer, render_pxelinux)

    def grub_config(self, filename: str, peer: tuple[str, int]) -> bytes | None:
        """TFTP's dynamic content for GRUB behind shim: grub/grub.cfg (the same loop for every machine)
        and grub/grub.cfg-01-<mac> rendered from the decision; None for every other name."""
        if filename.removeprefix("/") == GRUB_BOOTSTRAP:
            return grub_bootstrap().encode()
        return self._tftp_rendering(grub_config_mac(filename), "grub", "tftp-grub", peer, render_grub)

    def _tftp_rendering(self, mac: str | None, loader: str, via: str, peer: tuple[str, int],
                        render: Callable[[BootPlan, BootServer], str]) -> bytes | None:
        """A boot loader's per-machine config over TFTP: its URLs name [appliance] address (TFTP has no Host)."""
        if mac is None:
            return None
        address = self.settings.address
        if address is None:
            log.warning(f"{loader}-unanswered", mac=mac, reason="[appliance] address is not set")
            return None
        decision, _ = self._answer(mac, via, peer[0])
        return render(decision, self._server(address)).encode()

    def tftp_config(self, filename: str, peer: tuple[str, int]) -> bytes | None:
        """Every TFTP name rendered per machine (pxelinux.cfg/01-<mac>, grub/...); None: a file of the boot root."""
        content = self.pxelinux_config(filename, peer)
        return content if content is not None else self.grub_config(filename, peer)
