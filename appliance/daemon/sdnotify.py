"""systemd's notify protocol spoken directly over $NOTIFY_SOCKET (no libsystemd needed).

Outside systemd (no NOTIFY_SOCKET) every call is a no-op, so the daemon runs the same in a shell.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass


@dataclass(slots=True)
class Notifier:
    address: str | None
    watchdog_usec: int | None = None

    @classmethod
    def from_environ(cls, environ: dict[str, str] | None = None) -> Notifier:
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET") or None
        watchdog = None
        usec = env.get("WATCHDOG_USEC")
        # WATCHDOG_PID, when set, must be us: a child must not ping for its parent.
        if usec and usec.isdigit() and env.get("WATCHDOG_PID", str(os.getpid())) == str(os.getpid()):
            watchdog = int(usec)
        return cls(address, watchdog)

    @property
    def enabled(self) -> bool:
        return self.address is not None

    @property
    def watchdog_interval(self) -> float | None:
        """Seconds between WATCHDOG=1 pings: half the configured timeout, as sd_watchdog_enabled(3) advises."""
        return self.watchdog_usec / 2_000_000 if self.watchdog_usec else None

    def send(self, **fields: str | int) -> bool:
        """Send e.g. send(READY=1, STATUS="...") ; returns False (and stays quiet) if it cannot."""
        if not self.address:
            return False
        message = "\n".join(f"{k}={v}" for k, v in fields.items()).encode()
        addr = self.address
        if addr.startswith("@"):
            addr = "\0" + addr[1:]  # abstract namespace socket
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.connect(addr)
                sock.sendall(message)
            return True
        except OSError:
            return False
