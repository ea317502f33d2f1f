"""Per-install and per-host credentials, derived from the host's install token (no extra columns).

One secret per install: the install token (hosts.install_token, minted by add/reinstall). Everything
else is an HMAC of it, so it needs no storage and dies with it when a reinstall replaces the token:

- the fetch nonce, in the boot script / pxelinux config / kernel command line: HMAC(token, mac|ip) with
  the address the boot file was fetched from. It only opens GET /install/<mac>/script, and only from
  that address, which must be the one leased or reserved for the MAC. It cannot be turned into the
  token, so a copy of the boot file (anyone may fetch /boot/<mac>.ipxe) is worth nothing elsewhere.
- the rsync password of the install (user = the host name), in the script only.
- the torrent key: in the tracker and web-seed URLs of the host's torrent (services/torrents.py).
- the update token: updateclient's credential on the installed system (TOKEN= in updateclient.conf),
  written by the script. It is not the install token: an installed system cannot report into an
  install, and a leaked install token cannot ask for a reinstall.

A machine no host has, booted to be inspected ([discovery] inspect), has no install token: its boot file
carries the inspect nonce, HMAC(the daemon's inspect key, mac|ip) with the address the boot file was asked
from. It opens only POST /inspect/<mac>/inventory, from the address leased to the MAC, while the machine
has no inventory (one inspection). The key is made when the daemon starts and kept in memory only: a
machine that booted before a restart is refused and inspected again at its next boot.

The install token itself is "used" once the host is installed or failed (`install_token_live`).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import sqlite3
from dataclasses import dataclass
from ipaddress import IPv4Address

from state.hosts import due_with_token
from state.lease_rows import durable_binding

INSTALL_STATES = ("new", "assigned", "installing")
# The one strength for every secret the imageserver mints (admin, install, satellite tokens, multicast keys):
# 32 random bytes.
TOKEN_BYTES = 32


def new_token(*, hexadecimal: bool = False) -> str:
    """A fresh secret, URL-safe (it goes into boot scripts, kernel command lines and HTTP headers); in hex
    digits where a reader expects only those (the multicast session key, checked by the installer)."""
    return secrets.token_hex(TOKEN_BYTES) if hexadecimal else secrets.token_urlsafe(TOKEN_BYTES)

# An install token is good for this long after it was issued (at add, reinstall, or the boot that
# needed one); a machine that boots after that gets a fresh one. Long enough for a slow image copy.
INSTALL_TOKEN_SECONDS = 24 * 3600.0


def _derive(token: str, purpose: str) -> str:
    return hmac.new(token.encode(), purpose.encode(), hashlib.sha256).hexdigest()[:40]


def fetch_nonce(token: str, mac: str, ip: str) -> str:
    return "n" + _derive(token, f"fetch|{mac.lower()}|{ip}")


def inspect_nonce(key: str, mac: str, ip: str) -> str:
    return "i" + _derive(key, f"inspect|{mac.lower()}|{ip}")


def rsync_password(token: str) -> str:
    return _derive(token, "rsync")


def torrent_key(token: str) -> str:
    """The install's key in its torrent's tracker and web-seed URLs (they carry no header)."""
    return "t" + _derive(token, "torrent")


def update_token(token: str) -> str:
    return "u" + _derive(token, "update")


def update_rsync_password(token: str) -> str:
    return _derive(token, "update-rsync")


def same(a: str | None, b: str | None) -> bool:
    return bool(a and b) and hmac.compare_digest(str(a).encode(), str(b).encode())


def install_token_live(state: str) -> bool:
    """An install token opens install routes only while the host is due to install (one install)."""
    return state in INSTALL_STATES


def token_expired(issued: float | None, now: float, max_age: float = INSTALL_TOKEN_SECONDS) -> bool:
    """Past its lifetime (a token from before token_issued existed has no known age: not expired)."""
    return issued is not None and now - issued > max_age


@dataclass(frozen=True, slots=True)
class RsyncClient:
    """One machine allowed to pull one image: `user`/`password` for rsync's auth, from `ip` only."""

    user: str
    password: str
    ip: str
    image: str
    version: int | None  # None: every version of the image (an update may move between versions)


def host_address(conn: sqlite3.Connection, mac: str | None, ip: int | None) -> IPv4Address | None:
    """A host's address: its own, else its reservation, else its lease (as stored)."""
    if ip is not None:
        return IPv4Address(ip)
    if not mac:
        return None
    binding = durable_binding(conn, mac)
    return binding[0] if binding is not None else None


def installing_clients(conn: sqlite3.Connection, now: float,
                       max_age: float = INSTALL_TOKEN_SECONDS) -> list[RsyncClient]:
    """Hosts due to install, with a live token and an address: each may pull its own image version."""
    out = []
    for h in due_with_token(conn):
        if h.install_token is None or h.image is None or token_expired(h.token_issued, now, max_age):
            continue
        address = host_address(conn, h.mac, int(h.ip) if h.ip is not None else None)
        if address is not None:
            out.append(RsyncClient(h.name, rsync_password(h.install_token), str(address), h.image, h.version))
    return out


@dataclass(slots=True)
class RsyncGrants:
    """Short-lived rsync access for updates, in memory: granted when an installed host asks for its update
    target with its update token, for that host's address and image, until `until` (then gone)."""

    grants: dict[str, tuple[RsyncClient, float]]

    @classmethod
    def empty(cls) -> RsyncGrants:
        return cls({})

    def grant(self, client: RsyncClient, until: float) -> None:
        self.grants[client.user] = (client, until)

    def active(self, now: float) -> list[RsyncClient]:
        for user in [u for u, (_, until) in self.grants.items() if until <= now]:
            del self.grants[user]
        return [client for client, _ in self.grants.values()]
