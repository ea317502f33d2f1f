"""Issue 14, items 1 and 2: images and install credentials reach only the machine they are for.

Each attack runs against the real daemon (`imageserver serve`, its supervised rsync daemon, HTTP and
TFTP) in a server namespace; the client namespace holds a stranger with a real DHCP lease (dhclient)
and the addresses of two machines due to install (node1: image web, node2: image other). Clients are
the real ones: rsync, curl, atftp.

- the stranger lists the rsync modules (nothing) and pulls an image (refused), also with node1's
  rsync password; node1 pulls its own image with its credentials (etc/shadow comes with it, as it
  must) and not node2's; once node1 reports done its rsync credentials are gone;
- GET /install/<mac>/script from another address (even with the nonce or the token) or without a
  credential is refused and the host's state is unchanged; the machine's own fetch works;
- the install token is in neither /boot/<mac>.ipxe (curl) nor pxelinux.cfg/01-<mac> (atftp);
- a used token (after done) or an expired one gets no script, no rsync access and reports nothing (the
  machine's next PXE boot gets a fresh one); an install token cannot ask for a
  reinstall, report updates, or report install events for another host;
- with [http] admin_networks, GET /api/v1/hosts (and leases, machines) from the LAN is 403 while
  /api/v1/status answers;
- (issue 24 hole 2) a host's update token is good only from the host's own address;
- (issue 24 hole 5) /hosts follows admin_networks too.
"""

from __future__ import annotations

import json
import re
import shutil
import time
from dataclasses import dataclass
from ipaddress import IPv4Address
from pathlib import Path

import pytest

from domain.hosts import new_host_op
from lab.clients import Dhclient
from lab.netns import Lab, Namespace
from state.credentials import rsync_password, update_rsync_password, update_token
from state.db import connect, db_path
from state.images import ImageVersion, insert_version
from tests.system._daemon import API_PORT, Imageserver

pytestmark = [pytest.mark.system,
              pytest.mark.skipif(shutil.which("rsync") is None or shutil.which("atftp") is None,
                                 reason="rsync and atftp are needed")]

RSYNC_PORT = 8873
TFTP_PORT = 6969
MAC1, MAC2, MAC3 = "52:54:00:14:01:01", "52:54:00:14:01:02", "52:54:00:14:01:03"
SHADOW = "root:$6$secret-hash-of-the-master:19000:0:99999:7:::\n"


@dataclass
class World:
    lab: Lab
    server: Imageserver
    client: Namespace
    stranger: IPv4Address  # leased by dhclient
    node1: IPv4Address
    node2: IPv4Address
    node3: IPv4Address  # its install token was issued two days ago
    tmp: Path

    @property
    def base(self) -> str:
        return f"http://{self.server.address}:{API_PORT}"

    def token(self, name: str) -> str:
        with self.server.db() as conn:
            row = conn.execute("SELECT install_token FROM hosts WHERE name = ?", (name,)).fetchone()
        assert row is not None and row[0]
        return str(row[0])

    def state(self, name: str) -> str:
        with self.server.db() as conn:
            return str(conn.execute("SELECT state FROM hosts WHERE name = ?", (name,)).fetchone()[0])

    def curl(self, source: IPv4Address, path: str, *args: str) -> tuple[int, str]:
        out = self.tmp / f"curl-{time.monotonic_ns()}"
        r = self.client.run(["curl", "-s", "--max-time", "10", "--interface", str(source), "-o", str(out),
                             "-w", "%{http_code}", *args, self.base + path], check=False, timeout=20)
        return int(r.stdout or 0), out.read_text() if out.exists() else ""

    def post(self, source: IPv4Address, path: str, body: dict[str, object], token: str) -> int:
        return self.curl(source, path, "-X", "POST", "-H", f"Authorization: Bearer {token}",
                         "-H", "Content-Type: application/json", "--data", json.dumps(body))[0]

    def rsync(self, source: IPv4Address, url: str, dest: Path, password: str | None = None
              ) -> tuple[int, str]:
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
        if password is not None:
            env["RSYNC_PASSWORD"] = password
        r = self.client.run(["rsync", "-a", "--contimeout=5", "--timeout=10", f"--address={source}", url,
                             f"{dest}/"], check=False, timeout=30, env=env)
        return r.returncode, r.stdout + r.stderr

    def module(self, module: str, user: str | None = None) -> str:
        return f"rsync://{user + '@' if user else ''}{self.server.address}:{RSYNC_PORT}/{module}/"


def image(root: Path, hostname: str) -> None:
    (root / "etc/ssh").mkdir(parents=True)
    (root / "etc/hostname").write_text(hostname + "\n")
    (root / "etc/shadow").write_text(SHADOW)
    (root / "etc/ssh/ssh_host_ed25519_key").write_text("-----BEGIN OPENSSH PRIVATE KEY-----\nmaster\n")


@pytest.fixture
def world(lab: Lab) -> World:
    pair = lab.server_client_pair()
    server = Imageserver(pair.server, pair.server_if, pair.server_ip, pair.subnet,
                         extra=f"\n[rsyncd]\nport = {RSYNC_PORT}\n")
    text = server.config.read_text()
    text = text.replace("[tftp]\nenabled = false", f"[tftp]\nport = {TFTP_PORT}")
    # Admin reads only from the appliance itself; the provisioning LAN gets /api/v1/status.
    text = text.replace("[http]\n", '[http]\nadmin_networks = ["127.0.0.1/32"]\n')
    server.config.write_text(text)
    node1, node2, node3 = pair.host(20), pair.host(21), pair.host(22)
    now = time.time()
    conn = connect(db_path(server.state_dir))
    try:
        for name in ("web", "other"):
            tree = server.state_dir / "images" / name / "v1"
            image(tree, f"{name}-master")
            insert_version(conn, ImageVersion(name, 1, str(tree), now, source="test"))
        for host, mac, img, ip in (("node1", MAC1, "web", node1), ("node2", MAC2, "other", node2),
                                   ("node3", MAC3, "web", node3)):
            new_host_op(host, mac, img, ip, now)(conn)
        conn.execute("UPDATE hosts SET token_issued = ? WHERE name = 'node3'", (now - 2 * 86400,))
    finally:
        conn.close()
    (server.state_dir / "scripts").mkdir()
    (server.state_dir / "scripts/web.master").write_text("#!/bin/sh\necho installing $HOSTNAME\n")
    server.start()
    lease = Dhclient(pair.client, pair.client_if).obtain()  # the stranger: a plain machine with a lease
    for ip in (node1, node2, node3):
        pair.client.add_address(pair.client_if, f"{ip}/{pair.subnet.prefixlen}")
    tmp = lab.tmp_path("client")
    tmp.mkdir()
    world = World(lab, server, pair.client, lease.ip, node1, node2, node3, tmp)
    deadline = time.monotonic() + 10
    while world.server.api("/api/v1/status")["services"]["rsyncd"]["state"] != "running":
        assert time.monotonic() < deadline, "rsyncd never ran"
        time.sleep(0.1)
    return world


def wait_for(what: str, check, timeout: float = 8.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


# ------------------------------------------------------------------ item 1: rsync


def test_rsync_serves_an_image_only_to_the_machine_installing_it_with_its_credentials(world: World) -> None:
    w = world
    conf = (w.server.state_dir / "rsyncd.conf").read_text()
    secrets = w.server.state_dir / "rsyncd.secrets"
    assert "list = no" in conf and f"secrets file = {secrets}" in conf
    assert secrets.stat().st_mode & 0o777 == 0o600 and secrets.stat().st_uid == 0

    # The stranger lists modules: nothing (no module name, no comment).
    code, out = w.rsync(w.stranger, f"rsync://{w.server.address}:{RSYNC_PORT}/", w.tmp / "list")
    assert "web" not in out and "other" not in out, out
    # ... pulls an image: refused, with no password, and with node1's (it is not node1's address).
    password1 = rsync_password(w.token("node1"))
    for user, password in ((None, None), ("node1", password1)):
        dest = w.tmp / f"stolen-{user}"
        code, out = w.rsync(w.stranger, w.module("web_v1", user), dest, password)
        assert code != 0 and not (dest / "etc/shadow").exists(), out
        code, out = w.rsync(w.stranger, w.module("web", user), dest, password)
        assert code != 0 and not (dest / "etc/shadow").exists(), out

    # node1, from its own address, without its password: refused; with it: its image.
    code, out = w.rsync(w.node1, w.module("web_v1"), w.tmp / "anon1")
    assert code != 0 and not (w.tmp / "anon1/etc").exists(), out
    code, out = w.rsync(w.node1, w.module("web_v1", "node1"), w.tmp / "wrongpw", "not-the-password-at-all")
    assert code != 0 and not (w.tmp / "wrongpw/etc").exists(), out
    code, out = w.rsync(w.node1, w.module("web_v1", "node1"), w.tmp / "mine", password1)
    assert code == 0, out
    assert (w.tmp / "mine/etc/shadow").read_text() == SHADOW
    # ... not node2's image, with its own credentials or from its own address.
    code, out = w.rsync(w.node1, w.module("other_v1", "node1"), w.tmp / "theirs", password1)
    assert code != 0 and not (w.tmp / "theirs/etc").exists(), out

    # node1's install is done: its credentials end (the config is rewritten live).
    assert w.post(w.node1, f"/install/{MAC1}/events", {"stage": "done"}, w.token("node1")) == 200
    assert w.state("node1") == "installed"

    def refused() -> bool:
        shutil.rmtree(w.tmp / "after", ignore_errors=True)
        return w.rsync(w.node1, w.module("web_v1", "node1"), w.tmp / "after", password1)[0] != 0

    wait_for("node1's rsync access to end", refused)
    assert "node1:" not in secrets.read_text()
    # node2 still installs: its own image, from its address.
    code, out = w.rsync(w.node2, w.module("other_v1", "node2"), w.tmp / "node2", rsync_password(w.token("node2")))
    assert code == 0 and (w.tmp / "node2/etc/hostname").read_text() == "other-master\n", out


# ------------------------------------------------------------------ item 2: install tokens


def test_the_install_script_is_only_for_its_machine_and_boot_files_carry_no_token(world: World) -> None:
    w = world
    token = w.token("node1")
    # Anyone may fetch the boot files: they carry the fetch nonce, never the token.
    code, ipxe_stranger = w.curl(w.stranger, f"/boot/{MAC1}.ipxe")
    assert code == 200 and "INSTALL_NONCE=" in ipxe_stranger, ipxe_stranger
    assert token not in ipxe_stranger and "INSTALL_TOKEN" not in ipxe_stranger
    cfg = w.tmp / "pxelinux.cfg"
    r = w.client.run(["atftp", "-g", "-r", f"pxelinux.cfg/01-{MAC1.replace(':', '-')}", "-l", str(cfg),
                      str(w.server.address), str(TFTP_PORT)], check=False, timeout=20)
    assert r.returncode == 0 and "APPEND " in cfg.read_text(), r.stdout + r.stderr
    assert token not in cfg.read_text() and "INSTALL_TOKEN" not in cfg.read_text()
    stranger_nonce = re.search(r"INSTALL_NONCE=(\S+)", ipxe_stranger).group(1)  # type: ignore[union-attr]

    # The stranger asks for node1's script: without a credential, with the nonce it got, even with the
    # token itself: refused (not node1's address), and the host stays as it was.
    for credential in (None, stranger_nonce, token):
        args = ("-H", f"Authorization: Bearer {credential}") if credential else ()
        code, body = w.curl(w.stranger, f"/install/{MAC1}/script", *args)
        assert code == 403 and "INSTALL_TOKEN" not in body, (credential, code, body)
    # From node1's address: without a credential, or with the nonce handed to another address: refused.
    code, body = w.curl(w.node1, f"/install/{MAC1}/script")
    assert code == 401 and "INSTALL_TOKEN" not in body, body
    code, body = w.curl(w.node1, f"/install/{MAC1}/script", "-H", f"Authorization: Bearer {stranger_nonce}")
    assert code == 401, body
    assert w.state("node1") == "assigned"

    # The machine itself: boots (its boot script's nonce is bound to its address) and fetches its script.
    code, ipxe = w.curl(w.node1, f"/boot/{MAC1}.ipxe")
    nonce = re.search(r"INSTALL_NONCE=(\S+)", ipxe).group(1)  # type: ignore[union-attr]
    code, script = w.curl(w.node1, f"/install/{MAC1}/script", "-H", f"Authorization: Bearer {nonce}")
    assert code == 200 and f"INSTALL_TOKEN='{token}'" in script, script
    assert "RSYNC_PASSWORD=" in script and "UPDATE_TOKEN=" in script
    assert w.state("node1") == "assigned", "a GET changes no state"
    assert w.post(w.node1, f"/install/{MAC1}/events", {"stage": "installer"}, token) == 200
    assert w.state("node1") == "installing", "the first authenticated report does"


def test_an_install_token_is_good_for_one_install_of_one_host_only(world: World) -> None:
    w = world
    token1, token2 = w.token("node1"), w.token("node2")
    # Not another host's events, not a reinstall, not the update API.
    assert w.post(w.stranger, f"/install/{MAC2}/events", {"stage": "done"}, token1) == 401
    assert w.state("node2") == "assigned"
    assert w.post(w.stranger, "/api/v1/hosts/node1/autoinstall", {}, token1) == 401
    assert w.post(w.stranger, "/api/v1/hosts/node2/autoinstall", {}, token1) == 401
    assert w.post(w.stranger, "/api/v1/hosts/node1/update-events", {"stage": "done"}, token1) == 401
    with w.server.db() as conn:
        events = conn.execute("SELECT count(*) FROM update_events").fetchone()[0]
    assert events == 0

    # One install: once node1 is installed its token is used up.
    assert w.post(w.node1, f"/install/{MAC1}/events", {"stage": "done"}, token1) == 200
    assert w.state("node1") == "installed"
    code, body = w.curl(w.node1, f"/install/{MAC1}/script", "-H", f"Authorization: Bearer {token1}")
    assert code == 409 and "INSTALL_TOKEN" not in body, body
    assert w.post(w.node1, f"/install/{MAC1}/events", {"stage": "failed", "detail": "x"}, token1) == 401
    assert w.state("node1") == "installed"
    # ... and the installed system's own update token (written into updateclient.conf) is another.
    assert w.post(w.node1, "/api/v1/hosts/node1/autoinstall", {}, token1) == 401
    assert w.state("node2") == "assigned" and token2 == w.token("node2")


def test_admin_networks_keep_the_host_lists_from_the_lan_and_status_stays_public(world: World) -> None:
    w = world
    for path in ("/api/v1/hosts", "/api/v1/leases", "/api/v1/machines", "/api/v1/hosts/node1"):
        code, body = w.curl(w.stranger, path)
        assert code == 403 and MAC1 not in body, (path, code, body)
    code, body = w.curl(w.stranger, "/api/v1/status")
    assert code == 200 and "services" in json.loads(body)
    # The appliance itself (127.0.0.1, inside admin_networks) reads them.
    assert any(h["mac"] == MAC1 for h in w.server.api("/api/v1/hosts")["hosts"])
    # A host's own update target stays reachable from the LAN (updateclient needs it).
    code, body = w.curl(w.stranger, "/api/v1/hosts/node1/update-target")
    assert code == 200 and "rsync_password" not in body, body


# ------------------------------------------------------------------ issue 24 hole 5: /hosts


def test_the_hosts_file_follows_admin_networks(world: World) -> None:
    """/hosts (the /etc/hosts lines of every host) named every host and address to the LAN although
    admin_networks was set: only /api/ paths counted as admin reads."""
    w = world
    code, body = w.curl(w.stranger, "/hosts")
    assert code == 403 and "node1" not in body and str(w.node1) not in body, (code, body)
    assert "admin_networks" in json.loads(body)["error"]
    code, body = w.curl(w.stranger, "/api/v1/status")
    assert code == 200 and "node1" not in body
    # The appliance itself (inside admin_networks) reads it.
    lines = w.server.daemon.api_text("/hosts")
    assert f"{w.node1}\tnode1" in lines or f"{w.node1} node1" in lines, lines


def test_an_expired_install_token_opens_nothing_and_the_next_boot_gets_a_fresh_one(world: World) -> None:
    w = world
    old = w.token("node3")
    code, body = w.curl(w.node3, f"/install/{MAC3}/script", "-H", f"Authorization: Bearer {old}")
    assert code == 401 and "expired" in body, body
    assert w.post(w.node3, f"/install/{MAC3}/events", {"stage": "rsync"}, old) == 401
    code, out = w.rsync(w.node3, w.module("web_v1", "node3"), w.tmp / "expired", rsync_password(old))
    assert code != 0 and not (w.tmp / "expired/etc").exists(), out
    assert "node3:" not in (w.server.state_dir / "rsyncd.secrets").read_text()
    # The machine PXE-boots again: a fresh token (so a fresh nonce), and its install goes on.
    code, ipxe = w.curl(w.node3, f"/boot/{MAC3}.ipxe")
    new = w.token("node3")
    assert new != old and new not in ipxe
    nonce = re.search(r"INSTALL_NONCE=(\S+)", ipxe).group(1)  # type: ignore[union-attr]
    code, script = w.curl(w.node3, f"/install/{MAC3}/script", "-H", f"Authorization: Bearer {nonce}")
    assert code == 200 and f"INSTALL_TOKEN='{new}'" in script, script
    assert w.post(w.node3, f"/install/{MAC3}/events", {"stage": "rsync"}, new) == 200


# ------------------------------------------------------------------ issue 24 hole 2: the update token


def test_the_update_token_works_only_from_the_hosts_own_address(world: World) -> None:
    """node2's update token (updateclient.conf's TOKEN=) copied to a stranger: update-target is 403 with no
    rsync password (before: 200 with one, and the stranger copied the image's etc/shadow), no rsync grant
    for the stranger, no report, no reinstall. From node2's own address it works as before."""
    w = world
    install = w.token("node2")
    update, password = update_token(install), update_rsync_password(install)
    auth = ("-H", f"Authorization: Bearer {update}")
    code, body = w.curl(w.stranger, "/api/v1/hosts/node2/update-target", *auth)
    assert code == 403 and "rsync_password" not in body and password not in body, (code, body)
    assert "own address" in json.loads(body)["error"]
    code, out = w.rsync(w.stranger, w.module("other_v1", "node2"), w.tmp / "stolen", password)
    assert code != 0 and not (w.tmp / "stolen/etc").exists(), out
    assert w.post(w.stranger, "/api/v1/hosts/node2/update-events", {"stage": "done"}, update) == 403
    assert w.post(w.stranger, "/api/v1/hosts/node2/autoinstall", {}, update) == 403
    assert w.state("node2") == "assigned" and w.token("node2") == install
    with w.server.db() as conn:
        assert conn.execute("SELECT count(*) FROM update_events").fetchone()[0] == 0
    assert "event=update-refused hostname=node2" in w.server.log()

    # node2 itself: its target with the rsync credentials, which open its image to its address only.
    code, body = w.curl(w.node2, "/api/v1/hosts/node2/update-target", *auth)
    assert code == 200 and json.loads(body)["rsync_password"] == password, body

    def pulled() -> bool:
        shutil.rmtree(w.tmp / "update", ignore_errors=True)
        return w.rsync(w.node2, w.module("other_v1", "node2"), w.tmp / "update", password)[0] == 0

    wait_for("node2's update grant", pulled)
    assert (w.tmp / "update/etc/hostname").read_text() == "other-master\n"
    code, out = w.rsync(w.stranger, w.module("other_v1", "node2"), w.tmp / "stolen2", password)
    assert code != 0 and not (w.tmp / "stolen2/etc").exists(), out
    assert w.post(w.node2, "/api/v1/hosts/node2/update-events", {"stage": "start"}, update) == 200


# ------------------------------------------------------------------ issue 24 hole 6: password guessing


def test_rsync_password_guessing_is_logged_rate_limited_and_counted_in_metrics(world: World) -> None:
    """Wrong passwords for a module the address may read: each is counted (status and /metrics), a few are
    logged per interval and the rest summed up in one log-suppressed line. Before: no line, no counter."""
    w = world
    guesses = 30
    for i in range(guesses):
        code, out = w.rsync(w.node1, w.module("web_v1", "node1"), w.tmp / "guess", f"guess-{i:04d}-wrong-password")
        assert code != 0 and not (w.tmp / "guess/etc").exists(), out

    def counted() -> int:
        return int(w.server.api("/api/v1/status")["services"]["rsyncd"]["counters"].get("auth_failed", 0))

    wait_for("every failed authentication to be counted", lambda: counted() >= guesses)
    assert counted() == guesses
    metrics = w.server.daemon.api_text("/metrics")
    assert f'imageserver_service_events_total{{service="rsyncd",event="auth_failed"}} {guesses}' in metrics, \
        [line for line in metrics.splitlines() if "rsyncd" in line]
    lines = [line for line in w.server.log().splitlines() if "event=rsync-auth-failed" in line]
    assert 1 <= len(lines) <= 10, lines  # rate-limited: a few per interval, not one per guess
    assert f"client={w.node1}" in lines[0] and "module=web_v1" in lines[0], lines[0]
    # The rest are summed up once the interval is over, even with no further try.
    wait_for("the summary of the suppressed failures",
             lambda: "event=log-suppressed key=rsync-auth-failed" in w.server.log(), timeout=15)
