"""The HTTPS listener's certificate: the site's own ([https] cert/key), or a self-signed one made here.

Made with pyca `cryptography` (a Python dependency of the appliance; Debian has it as python3-cryptography):
in-process, no `openssl req` to run and whose output to parse, and the same code in `init` and `serve`.
The key is ECDSA P-256 (fast to make and to handshake with; curl, OpenSSL, Python and every browser take
it), written 0600 before the certificate, both atomically; the certificate names the appliance's host
name, its address, localhost and 127.0.0.1, and is good for ten years: clients pin its fingerprint
(protocols/fingerprint.py) rather than trust a CA, so its names and dates matter little.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import ssl
from dataclasses import dataclass
from pathlib import Path

from appliance.config import Config, ConfigError
from protocols.fingerprint import fingerprint

TLS_DIR = "tls"  # <state_dir>/tls/{cert.pem,key.pem}
VALID_DAYS = 3650


@dataclass(frozen=True, slots=True)
class Certificate:
    cert: Path
    key: Path
    fingerprint: str  # SHA-256 of the (first) certificate, as OpenSSL prints it
    made: bool = False  # made just now


def paths(cfg: Config) -> tuple[Path, Path]:
    """Where [https] cert and key are: configured, or under <state_dir>/tls/."""
    https = cfg.https
    return (https.cert or cfg.state_dir / TLS_DIR / "cert.pem", https.key or cfg.state_dir / TLS_DIR / "key.pem")


def file_fingerprint(cert: Path) -> str:
    """The SHA-256 fingerprint of the first certificate in a PEM file (ValueError: none there)."""
    text = cert.read_text()
    begin, end = "-----BEGIN CERTIFICATE-----", "-----END CERTIFICATE-----"
    start = text.find(begin)
    stop = text.find(end, start)
    if start < 0 or stop < 0:
        raise ValueError(f"{cert} holds no PEM certificate")
    return fingerprint(ssl.PEM_cert_to_DER_cert(text[start:stop + len(end)]))


def ensure(cfg: Config, *, make: bool = False) -> Certificate:
    """The certificate [https] serves: the configured files (which must exist, unless `make`: init makes them
    there), or the self-signed pair under the state dir, made now if missing. ConfigError names the key when
    a configured file is missing."""
    cert, key = paths(cfg)
    own = cfg.https.cert is None and cfg.https.key is None
    if (cfg.https.cert is None) != (cfg.https.key is None):
        raise ConfigError("https.cert", "set both https.cert and https.key (or neither: a self-signed pair)")
    made = False
    if (own or make) and not cert.exists() and not key.exists():
        make_self_signed(cert, key, cfg)
        made = True
    for name, path in (("https.cert", cert), ("https.key", key)):
        if not path.is_file():
            raise ConfigError(name, f"{path}: no such file")
    try:
        return Certificate(cert, key, file_fingerprint(cert), made)
    except (OSError, ValueError) as e:
        raise ConfigError("https.cert", str(e)) from None


def server_context(certificate: Certificate) -> ssl.SSLContext:
    """The listener's TLS settings: TLS 1.2 or later, the certificate and key (ConfigError: they do not load)."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(certificate.cert, certificate.key)
    except (OSError, ssl.SSLError) as e:
        raise ConfigError("https.cert", f"{certificate.cert} / {certificate.key}: cannot load: {e}") from None
    return ctx


def make_self_signed(cert: Path, key: Path, cfg: Config) -> None:
    """A new ECDSA P-256 key (0600) and a self-signed certificate for this appliance."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    a = cfg.appliance
    private = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = [x509.DNSName(str(a.hostname)), x509.DNSName(f"{a.hostname}.{a.domain}"),
                                     x509.DNSName("localhost"), x509.IPAddress(ipaddress.IPv4Address("127.0.0.1"))]
    if a.address is not None:
        names.append(x509.IPAddress(a.address))
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{a.hostname}.{a.domain}"),
                         x509.NameAttribute(NameOID.ORGANIZATION_NAME, "imageserver (self-signed)")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
                   .public_key(private.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(minutes=5))
                   .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
                   .add_extension(x509.SubjectAlternativeName(names), critical=False)
                   .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                   .sign(private, hashes.SHA256()))
    key_pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
    for path in (cert, key):
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    _write(key, key_pem, 0o600)
    _write(cert, certificate.public_bytes(serialization.Encoding.PEM), 0o644)


def _write(path: Path, data: bytes, mode: int) -> None:
    """Atomically, with `mode` from the start (never readable by others, even for a moment)."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.fchmod(fd, mode)
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
