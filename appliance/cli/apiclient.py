"""The CLI's way to the running daemon: its admin API with a bearer token, on this box or from a workstation.

On the appliance (no --server): http://<[http] listen>:<port> on loopback, with the admin token file
(<state_dir>/admin.token) unless $IMAGESERVER_TOKEN names another.

From a workstation (`--server URL` or $IMAGESERVER_URL, see appliance/cli/remote.py): the server's HTTPS
listener, with $IMAGESERVER_TOKEN or the token file in ~/.config/imageserver/. Its certificate is checked
before the token is sent: against `--ca FILE`, or pinned on first use in ~/.config/imageserver/known_servers
(a changed certificate is refused, naming both fingerprints). A token is never sent over plain HTTP to
anything but loopback (the server would refuse it and revoke it: services/auth.py).
"""

from __future__ import annotations

import http.client
import json
import os
import ssl
import sys
from dataclasses import dataclass
from ipaddress import ip_address
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from appliance.config import Config
from appliance.token import read_token
from protocols.fingerprint import fingerprint


class ApiUnavailable(ConnectionError):
    """The daemon is not running (or not reachable): offline commands may work on the store directly."""


class ApiError(RuntimeError):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status
        self.message = message


class RemoteUnavailable(RuntimeError):
    """A --server that does not answer: an error, never a reason to work on a local state dir."""


class CertificateRefused(RuntimeError):
    """The server's certificate is not the one pinned (or --ca does not trust it): nothing was sent."""


@dataclass(frozen=True, slots=True)
class Trust:
    """How an https:// server is believed: pinned fingerprints in `known_servers` (first use pins), or `ca`."""

    known_servers: Path | None = None
    ca: Path | None = None


@dataclass(frozen=True, slots=True)
class ApiClient:
    base_url: str
    token: str | None
    timeout: float = 10.0
    trust: Trust | None = None  # None: the daemon on this box (http, or https on loopback without checks)
    remote: bool = False  # --server / $IMAGESERVER_URL: no offline fallback

    @classmethod
    def from_config(cls, cfg: Config) -> ApiClient:
        """The client commands use: for --server/$IMAGESERVER_URL when given (appliance/cli/remote.py), else
        the daemon this config describes, on loopback."""
        from appliance.cli import remote  # the command line's choice, made in main()

        chosen = remote.selected()
        if chosen is not None:
            return chosen
        host = str(cfg.http.listen)
        if host == "0.0.0.0":
            host = "127.0.0.1"
        return cls(f"http://{host}:{cfg.http.port}", remote.env_token() or read_token(cfg.state_dir))

    def request(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        headers = {"Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        conn = self._connect()
        try:
            if self.token:  # reads need a token too (the reader role); the CLI on the appliance uses admin.token
                headers["Authorization"] = f"Bearer {self.token}"
            conn.request(method, urlsplit(self.base_url).path.rstrip("/") + path, body=data, headers=headers)
            resp = conn.getresponse()
            raw = resp.read()
        except (OSError, http.client.HTTPException) as e:
            raise self._unavailable(e) from None
        finally:
            conn.close()
        if resp.status >= 400:
            try:
                message = json.loads(raw).get("error", raw.decode(errors="replace"))
            except (ValueError, AttributeError):
                message = raw.decode(errors="replace")
            raise ApiError(resp.status, message)
        return json.loads(raw) if raw else None

    def _unavailable(self, e: BaseException) -> Exception:
        text = f"imageserver is not answering at {self.base_url} ({e})"
        return RemoteUnavailable(text) if self.remote else ApiUnavailable(text)

    def _connect(self) -> http.client.HTTPConnection:
        """A connection whose server is checked (https: the certificate, before anything is sent)."""
        url = urlsplit(self.base_url)
        host = url.hostname or "127.0.0.1"
        if url.scheme == "http":
            if self.token and not is_loopback(host):
                raise CertificateRefused(f"{self.base_url} is plain HTTP: a token is sent only over https:// "
                                         "(the server refuses a token in clear and revokes it)")
            conn: http.client.HTTPConnection = http.client.HTTPConnection(host, url.port or 80,
                                                                          timeout=self.timeout)
            try:
                conn.connect()
            except OSError as e:
                raise self._unavailable(e) from None
            return conn
        port = url.port or 443
        trust = self.trust or Trust()
        if trust.ca is None and trust.known_servers is None:
            raise CertificateRefused(f"{self.base_url}: neither a CA nor a pin to check its certificate against")
        ctx = ssl.create_default_context(cafile=str(trust.ca)) if trust.ca else _pinning_context()
        tls = http.client.HTTPSConnection(host, port, timeout=self.timeout, context=ctx)
        try:
            tls.connect()
        except ssl.SSLCertVerificationError as e:
            raise CertificateRefused(f"the certificate of {host}:{port} is not trusted by {trust.ca}: "
                                     f"{e.verify_message or e}; nothing was sent") from None
        except (OSError, ssl.SSLError) as e:
            raise self._unavailable(e) from None
        if trust.ca is None and trust.known_servers is not None:  # not checked by a CA: by its pin, or none
            assert isinstance(tls.sock, ssl.SSLSocket)
            der = tls.sock.getpeercert(binary_form=True)
            if der is None:
                tls.close()
                raise CertificateRefused(f"{host}:{port} showed no certificate")
            try:
                check_pin(trust.known_servers, f"{host}:{port}", fingerprint(der))
            except CertificateRefused:
                tls.close()
                raise
        return tls

    def get(self, path: str) -> Any:
        return self.request("GET", path)

    def post(self, path: str, body: Any = None) -> Any:
        return self.request("POST", path, body if body is not None else {})

    def delete(self, path: str) -> Any:
        return self.request("DELETE", path)


def _pinning_context() -> ssl.SSLContext:
    """TLS without CA checks: the certificate is checked by its pinned fingerprint instead (check_pin)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ip_address(host).is_loopback
    except ValueError:
        return False


def check_pin(known_servers: Path, server: str, seen: str) -> None:
    """The fingerprint pinned for `server` ("host:port") must be `seen`; none pinned yet: pin it now (trust
    on first use), saying so on stderr with the fingerprint to compare with what `imageserver init` printed."""
    pinned = read_pins(known_servers).get(server)
    if pinned == seen:
        return
    if pinned is not None:
        raise CertificateRefused(
            f"the certificate of {server} has changed: it shows SHA-256 {seen}, but {known_servers} pins {pinned}. "
            "Nothing was sent. If the server's certificate was replaced on purpose, delete its line from "
            f"{known_servers} (or use --ca FILE); otherwise something is posing as the server")
    known_servers.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(known_servers, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with open(fd, "a") as f:
        f.write(f"{server} {seen}\n")
    print(f"imageserver: first connection to {server}: its certificate's SHA-256 fingerprint is\n  {seen}\n"
          f"pinned in {known_servers} (compare it with what `imageserver init` printed on the server)",
          file=sys.stderr)


def read_pins(path: Path) -> dict[str, str]:
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        return {}
    out: dict[str, str] = {}
    for line in lines:
        parts = line.split()
        if len(parts) == 2 and not line.startswith("#"):
            out[parts[0]] = parts[1]
    return out
