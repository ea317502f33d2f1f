"""Issue 24, TLS: the admin API over HTTPS, tokens refused (and revoked) in clear, the CLI from a workstation
with the server's certificate pinned, and a satellite that pins its primary's certificate.

The real daemon runs in a server namespace with [https] on (tests/system/_daemon.py; its self-signed
certificate made at the first start); the workstation is the client namespace, a machine on the
provisioning LAN, using real clients: curl, `openssl s_client`, and the imageserver CLI itself (this
interpreter, `--server https://...`).
A tcpdump in the client namespace records every byte of the admin session: no token is in it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from appliance.tls import file_fingerprint
from lab.daemon import Daemon, daemon_env
from lab.netns import Lab, Namespace, Pair
from tests.system._daemon import API_PORT, HTTPS_PORT, Imageserver

pytestmark = [pytest.mark.system,
              pytest.mark.skipif(any(shutil.which(t) is None for t in ("curl", "openssl", "tcpdump")),
                                 reason="curl, openssl and tcpdump are needed (deps/apt-packages.txt)")]



def wait_for(what: str, check: Callable[[], object], timeout: float = 30.0) -> object:
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def curl(ns: Namespace, url: str, *args: str) -> tuple[int, str, str]:
    """(status, body, headers) of one request; -k: curl checks nothing, the test compares fingerprints."""
    r = ns.run(["curl", "-sk", "--max-time", "10", "-D", "/dev/stderr", "-o", "/dev/stdout", "-w", "\n%{http_code}",
                *args, url], check=False, timeout=20)
    body, _, code = r.stdout.rpartition("\n")
    return int(code or 0), body, r.stderr


def bearer(token: str) -> tuple[str, str]:
    return "-H", f"Authorization: Bearer {token}"


def workstation_cli(ns: Namespace, home: Path, *args: str, token: str | None = None,
                    extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The imageserver CLI on the workstation: its own config dir (known_servers), no appliance config."""
    env = daemon_env({"XDG_CONFIG_HOME": str(home), "HOME": str(home), **(extra_env or {})})
    env.pop("IMAGESERVER_CONFIG", None)
    env.pop("IMAGESERVER_URL", None)
    env.pop("IMAGESERVER_TOKEN", None)
    if token is not None:
        env["IMAGESERVER_TOKEN"] = token
    return ns.run([sys.executable, "-m", "appliance.cli", *args], env=env, check=False, timeout=60)


def s_client_fingerprint(ns: Namespace, address: str, port: int = HTTPS_PORT) -> str:
    """The SHA-256 fingerprint of the certificate the server shows, as openssl sees it."""
    shown = ns.run(["sh", "-c", f"openssl s_client -connect {address}:{port} </dev/null 2>/dev/null "
                                "| openssl x509 -noout -fingerprint -sha256"], check=False, timeout=20).stdout
    m = re.search(r"Fingerprint=([0-9A-F:]+)", shown)
    assert m, shown
    return m.group(1)


def test_admin_session_over_https_hides_the_token_and_plain_http_refuses_and_revokes_it(lab: Lab) -> None:
    pair: Pair = lab.server_client_pair()
    server = Imageserver(pair.server, pair.server_if, pair.server_ip, pair.subnet).start()
    cert = server.state_dir / "tls/cert.pem"
    key = server.state_dir / "tls/key.pem"
    assert cert.exists() and (key.stat().st_mode & 0o777) == 0o600
    fingerprint = file_fingerprint(cert)
    assert f"fingerprint={fingerprint}" in server.log()
    # The CLI on the appliance (plain HTTP on loopback, the admin token file) makes the named tokens.
    admin = server.cli("tokens", "add", "desk", "--role", "admin").strip()
    reader = server.cli("tokens", "add", "careless", "--role", "reader").strip()
    pair.client.add_address(pair.client_if, f"{pair.host(50)}/{pair.subnet.prefixlen}")
    https = f"https://{pair.server_ip}:{HTTPS_PORT}"
    plain = f"http://{pair.server_ip}:{API_PORT}"

    # openssl sees the certificate whose fingerprint the daemon logged (and init prints).
    assert s_client_fingerprint(pair.client, str(pair.server_ip)) == fingerprint

    # --- an admin session over HTTPS, with a sniffer on the LAN ----------------------------------
    pcap = lab.tmp_path("lan.pcap")
    sniffer = pair.client.popen(["tcpdump", "-i", pair.client_if, "-U", "-s", "0", "-w", str(pcap),
                                 "tcp port 8443"])
    wait_for("tcpdump to listen", lambda: pcap.exists() and pcap.stat().st_size > 0, 10)
    home = lab.tmp_path("workstation")
    home.mkdir()
    status, body, _ = curl(pair.client, https + "/api/v1/hosts", *bearer(admin))
    assert status == 200 and json.loads(body)["hosts"] == []
    first = workstation_cli(pair.client, home, "--server", https, "hosts", "add", "node7", "--mac",
                            "52:54:00:24:07:07", token=admin)
    assert first.returncode == 0, first.stderr
    assert fingerprint in first.stderr and "first connection" in first.stderr  # pinned on first use, shown
    known = (home / "imageserver/known_servers").read_text()
    assert known == f"{pair.server_ip}:{HTTPS_PORT} {fingerprint}\n"
    listed = workstation_cli(pair.client, home, "--server", https, "hosts", "list", "--json", token=admin)
    assert listed.returncode == 0 and [h["name"] for h in json.loads(listed.stdout)] == ["node7"], listed.stderr
    assert "first connection" not in listed.stderr
    # The token file instead of the environment: refused while others may read it.
    token_file = home / "imageserver/token"
    token_file.write_text(admin + "\n")
    token_file.chmod(0o644)
    loose = workstation_cli(pair.client, home, "--server", https, "status")
    assert loose.returncode == 2 and "chmod 600" in loose.stderr, loose.stderr
    token_file.chmod(0o600)
    # Every command that asks the daemon works from the workstation (reads, and changes the daemon makes).
    for command in (("status",), ("tokens", "list"), ("leases", "--all"), ("reservations", "list"),
                    ("machines", "list"), ("satellites", "list"), ("audit",), ("hosts", "show", "node7"),
                    ("addclients", "--base", "n", "--range", "1-2", "--dry-run"), ("makedhcpstatic",),
                    ("reservations", "add", "52:54:00:24:07:08", str(pair.host(30))),
                    ("reservations", "rm", "52:54:00:24:07:08"),
                    ("watch", "--until-done", "--interval", "0.2", "node7")):
        done = workstation_cli(pair.client, home, "--server", https, *command)
        assert done.returncode == 0, (command, done.stdout, done.stderr)
    time.sleep(0.5)
    sniffer.signal(signal.SIGINT)
    sniffer.wait(10)
    captured = pcap.read_bytes()
    packets = pair.client.run(["tcpdump", "-r", str(pcap), "-nn"], check=False).stdout.count("\n")
    assert packets > 20, f"the sniffer saw only {packets} packets"
    for secret in (admin, reader, server.daemon.admin_token()):
        assert secret.encode() not in captured
    assert b"node7" not in captured and b"Authorization" not in captured

    # --- offline-only commands refuse --server; a token is never sent over http:// to the LAN --------
    local_only = workstation_cli(pair.client, home, "--server", https, "images", "list", token=admin)
    assert local_only.returncode == 2 and "works on the appliance itself" in local_only.stderr
    clear = workstation_cli(pair.client, home, "--server", plain, "hosts", "list", token=admin)
    assert clear.returncode == 4 and "plain HTTP" in clear.stderr
    assert curl(pair.client, https + "/api/v1/hosts", *bearer(admin))[0] == 200  # so it was not revoked

    # --- a token sent in clear from the LAN: 403, logged, revoked -----------------------------------
    status, body, _ = curl(pair.client, plain + "/api/v1/hosts", *bearer(reader))
    assert status == 403 and "HTTPS" in json.loads(body)["error"] and "revoked" in body
    assert curl(pair.client, https + "/api/v1/hosts", *bearer(reader))[0] == 401  # not accepted afterwards
    assert "event=token-in-clear" in server.log() and "token=careless" in server.log()
    listed_tokens = server.cli("tokens", "list")
    assert "careless" not in listed_tokens and "desk" in listed_tokens
    audit = server.cli_json("audit")
    entries = audit["entries"] if isinstance(audit, dict) else audit
    assert any(e["operation"] == "revoke token seen over plain HTTP" and e["target"] == "careless"
               for e in entries), entries
    # The admin token file seen in clear: the file gets a new token; the appliance's own CLI goes on.
    old_admin = server.daemon.admin_token()
    assert curl(pair.client, plain + "/api/v1/hosts", *bearer(old_admin))[0] == 403
    assert server.daemon.admin_token() != old_admin
    assert curl(pair.client, https + "/api/v1/hosts", *bearer(old_admin))[0] == 401
    assert "node7" in server.cli("hosts", "list")
    # Without a token plain HTTP works as before for what machines need; the dashboard sends the LAN to HTTPS.
    assert curl(pair.client, plain + "/api/v1/status")[0] == 200
    status, _, headers = curl(pair.client, plain + "/")
    assert status == 302 and f"location: https://{pair.server_ip}:{HTTPS_PORT}/" in headers.lower()

    # --- a changed certificate is refused by the pinned workstation -----------------------------------
    assert server.daemon.stop() == 0
    cert.unlink()
    key.unlink()
    server.start()  # a new self-signed pair: another fingerprint
    changed = file_fingerprint(cert)
    assert changed != fingerprint
    refused = workstation_cli(pair.client, home, "--server", https, "hosts", "list", token=admin)
    assert refused.returncode == 4, refused.stderr
    assert fingerprint in refused.stderr and changed in refused.stderr and "changed" in refused.stderr
    # --ca FILE: trusts what that file names instead of the pin (here: the new self-signed certificate).
    ca = workstation_cli(pair.client, home, "--server", https, "--ca", str(cert), "hosts", "list", "--json",
                         token=admin)
    assert ca.returncode == 0 and "node7" in ca.stdout, ca.stderr


def test_satellite_with_a_wrong_pin_refuses_to_sync_and_says_why(lab: Lab) -> None:
    pair = lab.server_client_pair()
    primary = Imageserver(pair.server, pair.server_if, pair.server_ip, pair.subnet).start()
    good = file_fingerprint(primary.state_dir / "tls/cert.pem")
    token = primary.cli("satellites", "add", "edge").strip()
    sat_ip = pair.host(2)
    pair.client.add_address(pair.client_if, f"{sat_ip}/{pair.subnet.prefixlen}")
    wrong = ":".join(["AB"] * 32)

    def satellite(pin: str) -> Imageserver:
        sat = Imageserver(pair.client, pair.client_if, sat_ip, pair.subnet, pool=(160, 200), extra=(
            f'\n[satellite]\nprimary = "https://{pair.server_ip}:{HTTPS_PORT}"\nprimary_fingerprint = "{pin}"\n'
            "interval = 1\n"))
        sat.state_dir.mkdir(parents=True, mode=0o700)
        (sat.state_dir / "satellite.token").write_text(token + "\n")
        (sat.state_dir / "satellite.token").chmod(0o600)
        return sat.start()

    bad = satellite(wrong)
    link = wait_for("the satellite to refuse the primary", lambda: (lambda s: s if s["error"] else None)(
        bad.api("/api/v1/status")["services"]["satellite"]))
    assert isinstance(link, dict)
    assert link["state"] == "primary-unreachable" and link["last_contact"] is None
    assert "not the pinned one" in link["error"] and good in link["error"] and wrong in link["error"]
    assert "event=satellite-pin-mismatch" in bad.log()
    # Nothing reached the primary: it never heard from the satellite.
    (edge,) = primary.api("/api/v1/status")["satellites"]
    assert edge["seconds_since_contact"] is None, edge
    assert bad.daemon.stop() == 0

    # The right pin: the same satellite syncs.
    ok = satellite(good.lower().replace(":", ""))  # any usual spelling of the fingerprint
    wait_for("the satellite to sync", lambda: ok.api("/api/v1/status")["services"]["satellite"]["state"] == "running")
    wait_for("the primary to hear from it",
             lambda: primary.api("/api/v1/status")["satellites"][0]["seconds_since_contact"] is not None)
    assert os.path.exists(primary.state_dir / "tls/key.pem")


def test_init_makes_the_certificate_prints_its_fingerprint_and_serve_shows_it(lab: Lab) -> None:
    box, lan = lab.namespace("box"), lab.namespace("lan")
    box_if, lan_if = lab.ifname("vb"), lab.ifname("vl")
    lab.veth(box, box_if, lan, lan_if)
    subnet = lab.random_subnet()
    box_ip = subnet.network_address + 1
    box.add_address(box_if, f"{box_ip}/24")
    lan.add_address(lan_if, f"{subnet.network_address + 9}/24")
    etc = lab.tmp_path("etc")
    etc.mkdir()
    config, state = etc / "imageserver.toml", lab.tmp_path("state")
    init = box.run([sys.executable, "-m", "appliance.cli", "init", "--interface", box_if, "--yes", "--no-probe",
                    "--output", str(config), "--state-dir", str(state)], env=daemon_env(), check=False, timeout=60)
    assert init.returncode == 0, init.stdout + init.stderr
    cert, key = etc / "tls/cert.pem", etc / "tls/key.pem"
    printed = re.search(r"SHA-256 fingerprint ([0-9A-F:]{95})", init.stdout)
    assert printed and printed.group(1) == file_fingerprint(cert), init.stdout
    assert key.stat().st_mode & 0o777 == 0o600 and (etc / "tls").stat().st_mode & 0o777 == 0o700
    text = config.read_text()
    assert f'cert = "{cert}"' in text and f'key = "{key}"' in text and "\nenabled = true" in text
    # The daemon serves exactly that certificate on 443, next to plain HTTP on 80.
    daemon = Daemon(box, config, state).start()
    try:
        assert s_client_fingerprint(lan, str(box_ip), 443) == printed.group(1)
        assert curl(lan, f"https://{box_ip}/api/v1/status")[0] == 200
        assert curl(lan, f"http://{box_ip}/api/v1/status")[0] == 200
    finally:
        daemon.stop()
