"""The HTTP API as served matches the OpenAPI document it serves, and /metrics passes promtool.

One real daemon (`imageserver serve`, DHCP, TFTP, HTTP and its supervised rsync daemon) in a server
namespace, brought into every state through its own interfaces with real peers: udhcpc and raw DHCP
packets take, release and decline leases and show PXE machines; hosts are added over the API and
reach every state (new, assigned, installing, installed, failed) by real installer reports; a host
pulls its image with rsync; curl fetches boot files over HTTP and TFTP; the rsync daemon is killed once
and restarted by the supervisor.

Every exchange (curl; tests/system/_contract.py) is validated against GET /api/v1/openapi.json with
openapi-core: the status is documented, the content type is documented for it, the body validates, and
an object schema that lists properties lists all the fields the server sends. Every documented GET is
called, and every write with valid and invalid bodies. Whatever generates the document, this keeps it
true to the server.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any
from urllib.parse import quote_from_bytes

import pytest

from lab.clients import Udhcpc
from lab.netns import Lab, Namespace, Pair, lab_unavailable_reason
from protocols import torrent as bt
from state.db import connect, db_path
from state.images import ImageVersion, insert_version
from tests.system._contract import Contract, Exchange, operations
from tests.system._daemon import API_PORT, Imageserver, env

pytestmark = [pytest.mark.system,
              pytest.mark.skipif(any(shutil.which(b) is None for b in ("curl", "rsync", "udhcpc")),
                                 reason="curl, rsync and udhcpc are needed")]

RSYNC_PORT = 8873
BOOT_FILE = b"\x5a" * 65536
# One host per state; the MACs are the hosts', the addresses fixed (outside the pool) and put on the
# client's interface, so each "machine" asks from its own address.
HOSTS = {"node-new": ("52:54:00:15:00:01", None), "node-assigned": ("52:54:00:15:00:02", 21),
         "node-installing": ("52:54:00:15:00:03", 22), "node-installed": ("52:54:00:15:00:04", 23),
         "node-failed": ("52:54:00:15:00:05", 24)}
PXE_MAC, RELEASED_MAC, DECLINED_MAC = "52:54:00:15:01:01", "52:54:00:15:01:02", "52:54:00:15:01:03"


@dataclass
class World:
    pair: Pair
    server: Imageserver
    contract: Contract
    admin: str
    tmp: Path
    scripts: dict[str, dict[str, str]] = field(default_factory=dict)  # per host: its script's variables

    @property
    def local(self) -> str:
        return f"http://127.0.0.1:{API_PORT}"

    @property
    def lan(self) -> str:
        return f"http://{self.pair.server_ip}:{API_PORT}"

    def ip(self, name: str) -> str:
        number = HOSTS[name][1]
        assert number is not None
        return str(self.pair.host(number))

    def admin_call(self, method: str, path: str, expect: int, body: object = None, **kw: Any) -> Exchange:
        return self.contract.call(self.pair.server, method, self.local + path, expect=expect, body=body,
                                  token=self.admin, **kw)

    def get(self, path: str, expect: int = 200, ns: Namespace | None = None, **kw: Any) -> Exchange:
        """From the appliance itself (127.0.0.1, with its admin token as the CLI there: reads need a token), or
        from the LAN when `ns` is the client."""
        base = self.local if ns is None else self.lan
        if ns is None:
            kw.setdefault("token", self.admin)
        return self.contract.call(ns or self.pair.server, "get", base + path, expect=expect, **kw)

    def install_token(self, name: str) -> str:
        return self.scripts[name]["INSTALL_TOKEN"]

    def boot(self, name: str) -> None:
        """What the machine does at PXE boot: its boot script (with the fetch nonce), then its install
        script from its own address; the script's variables are its credentials from here on."""
        mac, source = HOSTS[name][0], self.ip(name)
        script = self.get(f"/boot/{mac}.ipxe", ns=self.pair.client, source=source).text()
        nonce = re.search(r"INSTALL_NONCE=(\S+)", script)
        assert nonce, (script, self.contract.problems)
        text = self.contract.call(self.pair.client, "get", f"{self.lan}/install/{mac}/script", expect=200,
                                  token=nonce.group(1), source=source).text()
        self.scripts[name] = dict(re.findall(r"^([A-Z_]+)='([^']*)'; export \1$", text, re.M))
        assert "INSTALL_TOKEN" in self.scripts[name], text

    def report(self, name: str, body: dict[str, object], expect: int = 200) -> None:
        mac = HOSTS[name][0]
        self.contract.call(self.pair.client, "post", f"{self.lan}/install/{mac}/events", expect=expect, body=body,
                           token=self.install_token(name), source=self.ip(name))

    def rawdhcp(self, specs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        out = self.pair.client.run([sys.executable, "-m", "tests.system._rawdhcp", self.pair.client_if, "discover",
                                    json.dumps(specs)], env=env(), timeout=60).stdout
        return json.loads(out)


def _wait(what: str, check: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


@pytest.fixture(scope="module")
def world(lab_sweep: list[str]) -> Iterator[World]:
    reason = lab_unavailable_reason()
    if reason:
        pytest.skip(reason)
    with Lab() as lab:
        yield _build(lab)


def _build(lab: Lab) -> World:
    pair = lab.server_client_pair()
    server = Imageserver(pair.server, pair.server_if, pair.server_ip, pair.subnet,
                         extra=f"\n[rsyncd]\nport = {RSYNC_PORT}\n")
    server.config.write_text(server.config.read_text().replace("[tftp]\nenabled = false", "[tftp]\nenabled = true"))
    conn = connect(db_path(server.state_dir))
    try:  # two captured versions of one image, as getimage leaves them
        for version in (1, 2):
            tree = server.state_dir / "images" / "web" / f"v{version}"
            (tree / "etc").mkdir(parents=True)
            (tree / "etc/hostname").write_text(f"web-master-{version}\n")
            (tree / "motd").write_text(f"version {version}\n")  # a top-level file: the web seed's case
            insert_version(conn, ImageVersion("web", version, str(tree), time.time(), source="rsync://192.0.2.9/",
                                              files=2, bytes=16, note=f"version {version}"))
        conn.commit()
    finally:
        conn.close()
    (server.state_dir / "scripts").mkdir()
    (server.state_dir / "scripts/web.master").write_text("#!/bin/sh\necho installing $HOSTNAME\n")
    (server.state_dir / "boot").mkdir(exist_ok=True)
    (server.state_dir / "boot/probe.bin").write_bytes(BOOT_FILE)
    server.start()
    _wait("rsyncd running", lambda: server.api("/api/v1/status")["services"]["rsyncd"]["state"] == "running")
    tmp = lab.tmp_path("contract")
    tmp.mkdir()
    document = json.loads(server.daemon.api_text("/api/v1/openapi.json"))  # a reader's read (the admin token)
    w = World(pair, server, Contract(document, tmp), (server.state_dir / "admin.token").read_text().strip(), tmp)

    # Leases: a real client's (active), a PXE ROM's (active, a machine with arch and UUID), one released
    # (ended) and one declined (quarantined); then garbage, which the DHCP server counts as malformed.
    Udhcpc(pair.client, pair.client_if).obtain()
    server_id = pair.server_ip.packed.hex()
    pxe = {"60": b"PXEClient:Arch:00007:UNDI:003016".hex(), "93": "0007", "97": "00" + "11" * 16}
    taken = w.rawdhcp([{"mac": PXE_MAC, "options": pxe, "request": True},
                       {"mac": RELEASED_MAC, "request": True}, {"mac": DECLINED_MAC, "request": True}])
    assert all(t["ack"] for t in taken), taken
    released, declined = (str(t["ack"]["yiaddr"]) for t in taken[1:])
    w.rawdhcp([{"mac": RELEASED_MAC, "type": 7, "ciaddr": released, "options": {"54": server_id}, "timeout": 0.3},
               {"mac": DECLINED_MAC, "type": 4, "timeout": 0.3,
                "options": {"50": IPv4Address(declined).packed.hex(), "54": server_id}}])
    pair.client.run([sys.executable, "-m", "tests.system._rawdhcp", pair.client_if, "garbage", "20"], env=env())
    for name, (_, number) in HOSTS.items():  # after udhcpc, which sets the interface's addresses its way
        if number is not None:
            pair.client.add_address(pair.client_if, f"{w.ip(name)}/{pair.subnet.prefixlen}")

    # Hosts, over the API, one per state, with real installer reports from each host's own address.
    for name, (mac, number) in HOSTS.items():
        body: dict[str, object] = {"name": name, "mac": mac}
        if number is not None:
            body |= {"image": "web", "ip": w.ip(name)}
        w.admin_call("post", "/api/v1/hosts", 201, body)
    for name, (_, number) in HOSTS.items():
        if number is not None:
            w.boot(name)
    w.report("node-installing", {"stage": "partition"})
    own = w.scripts["node-installing"]
    url = own["RSYNC_URL"].replace("rsync://", f"rsync://{own['RSYNC_USER']}@")
    code = pair.client.run(["rsync", "-a", "--contimeout=5", "--timeout=10", f"--address={w.ip('node-installing')}",
                            url, f"{tmp}/pulled/"], check=False, timeout=30,
                           env={"PATH": os.environ["PATH"], "RSYNC_PASSWORD": own["RSYNC_PASSWORD"]})
    assert code.returncode == 0 and (tmp / "pulled/etc/hostname").exists(), code.stdout + code.stderr
    w.report("node-installing", {"stage": "progress", "bytes": 8, "total": 16})
    for stage in ("partition", "rsync", "done"):
        w.report("node-installed", {"stage": stage})
    w.report("node-failed", {"stage": "partition"})
    w.report("node-failed", {"stage": "failed", "detail": "mkfs.ext4: /dev/sda1: no such device"})

    # Boot files over TFTP and HTTP, as a ROM and iPXE fetch them.
    got = pair.client.run(["curl", "-sS", "--fail", "--max-time", "20", "-o", "/dev/null", "-w", "%{size_download}",
                           f"tftp://{pair.server_ip}/probe.bin"]).stdout
    assert int(got) == len(BOOT_FILE)
    # The supervisor restarts a killed rsync daemon (the restart counter moves).
    pid = int((server.state_dir / "rsyncd.pid").read_text().split()[0])
    os.kill(pid, signal.SIGKILL)
    _wait("rsyncd restarted", lambda: (lambda s: s["counters"].get("restarts", 0) >= 1 and s["state"] == "running")(
        server.api("/api/v1/status")["services"]["rsyncd"]))
    return w


def test_every_documented_get_answers_as_the_document_says(world: World) -> None:
    w, client = world, world.pair.client
    some_lease_mac = PXE_MAC
    for path in ("/api/v1/status", "/api/v1/openapi.json", "/api/v1/machines", "/api/v1/machines?limit=2",
                 "/api/v1/machines?unknown=1", f"/api/v1/machines/{some_lease_mac}",
                 f"/api/v1/machines/{HOSTS['node-installed'][0]}", "/api/v1/leases", "/api/v1/leases?all=1",
                 "/api/v1/reservations", "/api/v1/hosts", "/api/v1/images", "/api/v1/pools", "/metrics", "/hosts",
                 "/api/v1/tokens", "/api/v1/audit", "/api/v1/audit?limit=2",
                 "/", "/static/dashboard.js", "/client/prepareclient", "/client/updateclient"):
        w.get(path)
    for name in HOSTS:
        w.get(f"/api/v1/hosts/{name}")
        w.get(f"/api/v1/hosts/{name}/script")
    installed = "node-installed"
    w.get(f"/api/v1/hosts/{installed}/update-target")
    w.get(f"/api/v1/hosts/{installed}/update-target?image=web&version=1")
    w.get(f"/api/v1/hosts/{installed}/update-target", ns=client, source=w.ip(installed),
          token=w.scripts[installed]["UPDATE_TOKEN"])
    w.get(f"/boot/{HOSTS['node-installed'][0]}.ipxe", ns=client, source=w.ip(installed))
    w.get(f"/boot/{PXE_MAC}.ipxe", ns=client)
    w.get("/boot/files/probe.bin", ns=client)
    w.get("/boot/files/probe.bin", 206, ns=client, headers={"Range": "bytes=0-99"})
    # The errors each route documents.
    for path, status in (("/api/v1/machines?limit=0", 400), ("/api/v1/machines?offset=-1", 400),
                         ("/api/v1/machines/not-a-mac", 400), ("/api/v1/machines/52:54:00:99:99:99", 404),
                         ("/api/v1/hosts/nobody", 404), ("/api/v1/hosts/nobody/script", 404),
                         ("/api/v1/hosts/nobody/update-target", 404),
                         ("/api/v1/hosts/node-new/update-target", 409),
                         ("/api/v1/hosts/node-installed/update-target?image=web&version=9", 409),
                         ("/api/v1/hosts/node-installed/update-target?version=x", 400),
                         ("/api/v1/hosts/node-installed/update-target?image=bad%20name", 400),
                         ("/static/nothing.js", 404), ("/client/nothing", 404), ("/boot/not-a-mac.ipxe", 404),
                         ("/boot/files/missing.bin", 404), ("/boot/files/..%2fadmin.token", 400)):
        w.get(path, status)
    w.get("/boot/files/probe.bin", 416, headers={"Range": f"bytes={len(BOOT_FILE) + 10}-"})
    mac = HOSTS["node-assigned"][0]
    for source, token, status in ((w.ip("node-assigned"), None, 401), (w.ip("node-assigned"), "wrong", 401),
                                  (w.ip("node-installed"), w.install_token("node-assigned"), 403)):
        w.contract.call(client, "get", f"{w.lan}/install/{mac}/script", expect=status, token=token, source=source)
    w.contract.call(client, "get", f"{w.lan}/install/{HOSTS['node-installed'][0]}/script", expect=409,
                    token=w.install_token("node-installed"), source=w.ip("node-installed"))
    w.contract.call(client, "get", f"{w.lan}/install/52:54:00:99:99:99/script", expect=404, token="x")
    # A satellite's config, with its token (tests/system/test_satellite.py has the whole role).
    sat = w.admin_call("post", "/api/v1/satellites", 201, {"name": "edge-get"}).json()
    w.get("/satellite/v1/config", ns=client, token=sat["token"])
    w.get("/satellite/v1/config", 401, ns=client, token="sat-wrong")
    # Multicast seats (this daemon has [multicast] off; tests/system/test_multicast.py has the sessions).
    for source, token, status in ((w.ip("node-assigned"), w.install_token("node-assigned"), 409),
                                  (w.ip("node-assigned"), "wrong", 401),
                                  (w.ip("node-installed"), w.install_token("node-assigned"), 403)):
        w.contract.call(client, "get", f"{w.lan}/install/{mac}/multicast", expect=status, token=token, source=source)

    # BitTorrent: the host's .torrent (its install token, its address), then its tracker and web seed with
    # the key in the torrent's URLs (tests/system/test_torrent_install.py has the swarm).
    torrent = f"{w.lan}/install/{mac}/torrent"
    got = w.contract.call(client, "get", torrent, expect=200, token=w.install_token("node-assigned"),
                          source=w.ip("node-assigned"))
    w.contract.call(client, "get", torrent + "?webseed=1", expect=200, token=w.install_token("node-assigned"),
                    source=w.ip("node-assigned"))
    for source, token, status in ((w.ip("node-assigned"), "wrong", 401),
                                  (w.ip("node-installed"), w.install_token("node-assigned"), 403)):
        w.contract.call(client, "get", torrent, expect=status, token=token, source=source)
    w.contract.call(client, "get", f"{w.lan}/install/{HOSTS['node-installed'][0]}/torrent", expect=404,
                    token=w.install_token("node-installed"), source=w.ip("node-installed"))
    meta = bt.bdecode(got.body)
    assert isinstance(meta, dict), meta
    announce_url = meta[b"announce"].decode()
    base = announce_url.removesuffix("/announce")
    info_hash = bt.infohash(bt.bencode(meta[b"info"]))
    query = f"info_hash={quote_from_bytes(info_hash)}&peer_id=-XX0000-{'a' * 12}&port=6999&left=23"
    w.contract.call(client, "get", f"{announce_url}?{query}", expect=200, source=w.ip("node-assigned"))
    w.contract.call(client, "get", f"{announce_url}?peer_id=x", expect=400, source=w.ip("node-assigned"))
    w.contract.call(client, "get", f"{base[:-4]}0000/announce?{query}", expect=401, source=w.ip("node-assigned"))
    w.contract.call(client, "get", f"{announce_url}?{query}", expect=403, source=w.ip("node-installed"))
    seed = f"{base}/seed/web_v2"
    w.contract.call(client, "get", f"{seed}/motd", expect=200, source=w.ip("node-assigned"))
    w.contract.call(client, "get", f"{seed}/motd", expect=206, source=w.ip("node-assigned"),
                    headers={"Range": "bytes=0-3"})
    w.contract.call(client, "get", f"{seed}/nothing", expect=404, source=w.ip("node-assigned"))
    w.contract.call(client, "get", f"{base[:-4]}0000/seed/web_v2/motd", expect=401,
                    source=w.ip("node-assigned"))

    w.admin_call("get", "/api/v1/hosts/node-new/bmc", 404)  # a host without a BMC (the writes give it one)
    w.get("/api/v1/profiles")
    w.get("/api/v1/profiles/nobody", 404)  # the writes add one and read it
    # no installer posted an inventory yet (the writes post one); no root-device hints yet
    w.admin_call("get", f"/api/v1/machines/{HOSTS['node-new'][0]}/inventory", 404)
    w.admin_call("get", "/api/v1/machines/not-a-mac/inventory", 400)
    w.admin_call("get", "/api/v1/hosts/node-new/root-device", 200)
    w.admin_call("get", "/api/v1/images/web/root-device", 200)
    w.admin_call("get", "/api/v1/images/nosuch/root-device", 404)
    w.admin_call("get", "/api/v1/profiles/nobody/root-device", 404)  # the writes read an existing one's
    w.contract.call(w.pair.server, "get", w.local + "/api/v1/hosts/node-new/bmc", expect=401)

    gets = {op for op in operations(w.contract.document) if op[0] == "get"}
    assert gets - w.contract.exercised == set(), "documented GET routes this test does not call: add a case"
    assert not w.contract.problems, "\n".join(w.contract.problems)


def _families(text: str) -> tuple[dict[str, str], dict[str, list[tuple[str, float]]]]:
    kinds = dict(re.findall(r"^# TYPE (\S+) (\S+)$", text, re.M))
    samples: dict[str, list[tuple[str, float]]] = {name: [] for name in kinds}
    for line in text.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        series, value = line.rsplit(" ", 1)
        name = re.split(r"[{ ]", series, maxsplit=1)[0]
        family = next((f for f in (name, re.sub(r"_(bucket|sum|count)$", "", name)) if f in kinds), name)
        samples.setdefault(family, []).append((series, float(value)))
    return kinds, samples


def test_metrics_of_a_daemon_in_every_state_pass_promtool_with_every_family_sampled(world: World) -> None:
    seen = len(world.contract.problems)
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (package prometheus, in deps/apt-packages.txt)")
    body = world.get("/metrics").text()
    result = world.pair.server.run([promtool, "check", "metrics"], input=body, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    kinds, samples = _families(body)
    assert len(kinds) >= 20, kinds
    assert [f for f, s in samples.items() if not s] == [], "families without a sample"
    assert set(samples) == set(kinds), "samples of undeclared families"

    def value(series: str) -> float:
        return next(v for s, v in (x for xs in samples.values() for x in xs) if s == series)

    for state in ("new", "assigned", "installing", "installed", "failed"):
        assert value(f'imageserver_hosts{{state="{state}"}}') == 1, state
    assert value('imageserver_installs_total{outcome="done"}') == 1
    assert value('imageserver_installs_total{outcome="failed"}') == 1
    assert value("imageserver_install_duration_seconds_count") == 1
    subnet = str(world.pair.subnet)
    assert value(f'imageserver_dhcp_pool_active_leases{{subnet="{subnet}"}}') >= 2
    assert value('imageserver_dhcp_problems_total{outcome="malformed"}') >= 1
    assert value('imageserver_tftp_transfers_finished_total{outcome="completed"}') == 1
    assert value("imageserver_rsyncd_restarts_total") >= 1
    assert value("imageserver_rsyncd_sent_bytes_total") > 0
    pools = world.get("/api/v1/pools").json()["pools"]
    assert pools[0]["quarantined"] == 1 and pools[0]["reserved"] >= 4, pools
    assert not world.contract.problems[seen:], "\n".join(world.contract.problems[seen:])


def test_writes_with_valid_and_invalid_bodies_answer_as_the_document_says(world: World) -> None:
    w = world
    client, lan = w.pair.client, w.lan
    seen = len(w.contract.problems)
    spare = str(w.pair.host(30))
    # Reservations.
    w.admin_call("post", "/api/v1/reservations", 201, {"mac": "52:54:00:15:02:01", "ip": spare, "hostname": "spare"})
    w.admin_call("post", "/api/v1/reservations", 400, {"mac": "zz", "ip": spare})
    w.admin_call("post", "/api/v1/reservations", 400, raw=b"{not json")
    w.admin_call("post", "/api/v1/reservations", 409, {"mac": "52:54:00:15:02:02", "ip": spare})
    w.contract.call(w.pair.server, "post", w.local + "/api/v1/reservations", expect=401,
                    body={"mac": "52:54:00:15:02:03", "ip": str(w.pair.host(31))})
    w.admin_call("delete", "/api/v1/reservations/52:54:00:15:02:01", 200)
    w.admin_call("delete", "/api/v1/reservations/52:54:00:15:02:01", 404)
    w.admin_call("delete", "/api/v1/reservations/not-a-mac", 400)
    # Hosts.
    w.admin_call("post", "/api/v1/hosts", 201, {"name": "node-extra", "mac": "52:54:00:15:03:01", "image": "web",
                                                "version": 1, "ip": str(w.pair.host(32))})
    w.admin_call("post", "/api/v1/hosts", 409, {"name": "node-extra", "mac": "52:54:00:15:03:02"})
    w.admin_call("post", "/api/v1/hosts", 400, {"name": "bad name!", "mac": "52:54:00:15:03:03"})
    w.admin_call("post", "/api/v1/hosts", 400, {"mac": "52:54:00:15:03:04"})
    w.admin_call("patch", "/api/v1/hosts/node-extra", 200, {"version": 2, "ip": None})
    w.admin_call("patch", "/api/v1/hosts/node-extra", 400, {"version": "two"})
    w.admin_call("patch", "/api/v1/hosts/nobody", 404, {"version": 2})
    w.admin_call("patch", "/api/v1/hosts/node-extra", 409, {"mac": HOSTS["node-new"][0]})
    w.admin_call("put", "/api/v1/hosts/node-extra/script", 200, {"script": "#!/bin/sh\necho mine\n"})
    w.admin_call("put", "/api/v1/hosts/node-extra/script", 400, {"script": 7})
    w.admin_call("put", "/api/v1/hosts/nobody/script", 404, {"script": None})
    w.admin_call("post", "/api/v1/hosts/node-extra/reinstall", 200)
    w.admin_call("post", "/api/v1/hosts/nobody/reinstall", 404)
    # Its BMC, and power through it (nothing serves Redfish on port 9 here: that host's error, answered 200).
    bmc = {"address": "http://127.0.0.1:9", "username": "admin", "password": "pw-contract"}
    w.admin_call("put", "/api/v1/hosts/node-extra/bmc", 200, bmc)
    w.admin_call("put", "/api/v1/hosts/node-extra/bmc", 400, {**bmc, "address": "telnet://127.0.0.1"})
    w.admin_call("put", "/api/v1/hosts/node-extra/bmc", 400, {"address": "ipmi://x"})
    w.admin_call("put", "/api/v1/hosts/nobody/bmc", 404, bmc)
    assert "password" not in w.admin_call("get", "/api/v1/hosts/node-extra/bmc", 200).json()
    w.admin_call("post", "/api/v1/power", 200, {"hosts": ["node-extra", "nobody"], "action": "status"})
    w.admin_call("post", "/api/v1/power", 400, {"hosts": ["node-extra"], "action": "explode"})
    w.admin_call("post", "/api/v1/power", 400, {"hosts": "node-extra", "action": "status"})
    w.contract.call(w.pair.server, "post", w.local + "/api/v1/power", expect=401,
                    body={"hosts": ["node-extra"], "action": "off"})
    w.admin_call("delete", "/api/v1/hosts/node-extra/bmc", 200)
    w.admin_call("delete", "/api/v1/hosts/node-extra/bmc", 404)
    # Profiles: added, changed, a host inheriting it (shown with where each value comes from), removal refused
    # while it is used (409 naming the host), then removed.
    w.admin_call("post", "/api/v1/profiles", 201, {"name": "compute", "image": "web", "transport": "bittorrent",
                                                   "kernel_args": "quiet", "bmc_address": "ipmi://{host}-bmc",
                                                   "bmc_username": "admin", "bmc_password": "pw-profile"})
    w.admin_call("post", "/api/v1/profiles", 409, {"name": "compute"})
    w.admin_call("post", "/api/v1/profiles", 400, {"name": "compute2", "version": 0})
    w.admin_call("post", "/api/v1/profiles", 400, {"image": "web"})
    w.admin_call("patch", "/api/v1/profiles/compute", 200, {"version": 1, "kernel_args": None})
    w.admin_call("patch", "/api/v1/profiles/compute", 400, {"transport": "pigeon"})
    w.admin_call("patch", "/api/v1/profiles/nobody", 404, {"version": 1})
    # a profile's root-device hints (one set per disk of a RAID layout), and a host added with a profile that
    # does not exist (404)
    w.admin_call("get", "/api/v1/profiles/compute/root-device", 200)
    w.admin_call("put", "/api/v1/profiles/compute/root-device", 200, {"hints": "serial=A;serial=B"})
    w.admin_call("put", "/api/v1/profiles/compute/root-device", 400, {"hints": "serial=A;colour=red"})
    w.admin_call("put", "/api/v1/profiles/nobody/root-device", 404, {"hints": "largest"})
    w.admin_call("post", "/api/v1/hosts", 404, {"name": "node-x", "mac": "52:54:00:15:03:05", "profile": "nobody"})
    w.admin_call("patch", "/api/v1/hosts/node-extra", 200, {"profile": "compute", "image": None})
    shown = w.get("/api/v1/hosts/node-extra").json()
    assert shown["effective"]["image"] == {"value": "web", "source": "profile compute"}, shown["effective"]
    assert shown["effective"]["root_device"] == {"value": "serial=A;serial=B", "source": "profile compute"}
    w.admin_call("delete", "/api/v1/profiles/compute/root-device", 200)
    w.admin_call("delete", "/api/v1/profiles/nobody/root-device", 404)
    assert "pw-profile" not in json.dumps(w.admin_call("get", "/api/v1/profiles/compute", 200).json())
    w.admin_call("patch", "/api/v1/hosts/node-extra", 404, {"profile": "nobody"})
    refused = w.admin_call("delete", "/api/v1/profiles/compute", 409).json()
    assert refused["hosts"] == ["node-extra"], refused
    w.admin_call("patch", "/api/v1/hosts/node-extra", 200, {"profile": None, "image": "web"})
    w.admin_call("delete", "/api/v1/profiles/compute", 200)
    w.admin_call("delete", "/api/v1/profiles/compute", 404)
    # Bulk: per host its result, 200 whenever the request is well formed; 400 for one that is not.
    got = w.admin_call("post", "/api/v1/bulk/set", 200, {"range": "node-extra,nobody",
                                                         "changes": {"transport": "rsync"}}).json()
    assert sorted((r["host"], r["ok"], r["status"]) for r in got["results"]) == [("nobody", False, 404),
                                                                                 ("node-extra", True, 200)]
    w.admin_call("post", "/api/v1/bulk/set", 400, {"hosts": ["node-extra"]})
    w.admin_call("post", "/api/v1/bulk/reinstall", 200, {"hosts": ["node-extra", "nobody"]})
    w.admin_call("post", "/api/v1/bulk/reinstall", 400, {"range": "node[1-"})
    w.admin_call("post", "/api/v1/bulk/remove", 200, {"hosts": ["nobody"]})
    w.admin_call("post", "/api/v1/bulk/remove", 400, {})
    w.admin_call("delete", "/api/v1/hosts/node-extra", 200)
    w.admin_call("delete", "/api/v1/hosts/node-extra", 404)
    # addclients: a dry run, the real one, and a clash.
    plan = {"base": "rack", "range": "1-3", "image": "web", "first_ip": str(w.pair.host(40))}
    w.admin_call("post", "/api/v1/addclients", 200, {**plan, "dry_run": True})
    w.admin_call("post", "/api/v1/addclients", 200, plan)
    w.admin_call("post", "/api/v1/addclients", 400, {**plan, "image": "../../x"})
    w.admin_call("post", "/api/v1/addclients", 404, {**plan, "profile": "nobody"})
    w.admin_call("post", "/api/v1/addclients", 409, {"base": "rack", "range": "1-1", "first_ip": w.ip("node-failed")})
    # A seen machine becomes a host.
    w.admin_call("post", f"/api/v1/machines/{PXE_MAC}/assign", 200, {"next": True})
    w.admin_call("post", f"/api/v1/machines/{PXE_MAC}/assign", 409, {"host": "rack2"})
    w.admin_call("post", f"/api/v1/machines/{RELEASED_MAC}/assign", 400, {})
    w.admin_call("post", f"/api/v1/machines/{RELEASED_MAC}/assign", 404, {"host": "nobody"})
    # Install reports: malformed, wrong token, unknown MAC.
    w.report("node-assigned", {"stage": 5}, expect=400)
    w.contract.call(client, "post", f"{lan}/install/{HOSTS['node-assigned'][0]}/events", expect=401,
                    body={"stage": "partition"}, token="wrong", source=w.ip("node-assigned"))
    w.contract.call(client, "post", f"{lan}/install/52:54:00:99:99:99/events", expect=404,
                    body={"stage": "partition"}, token="wrong")
    # Hardware: root-device hints per host and image, an installer's inventory (answered with its root device)
    # only with its install token from its own address, and the stored inventory.
    w.admin_call("put", "/api/v1/hosts/node-assigned/root-device", 200, {"hints": "serial=DISK-A"})
    w.admin_call("put", "/api/v1/hosts/node-assigned/root-device", 400, {"hints": "colour=red"})
    w.admin_call("put", "/api/v1/hosts/nobody/root-device", 404, {"hints": "largest"})
    inv_mac, inv_url = HOSTS["node-assigned"][0], f"{lan}/install/{HOSTS['node-assigned'][0]}/inventory"
    inventory = {"disks": [{"name": "/dev/sda", "size": 1 << 30, "serial": "DISK-B"},
                           {"name": "/dev/vda", "size": 1 << 30, "serial": "DISK-A"}],
                 "interfaces": [{"name": "eth0", "mac_address": inv_mac, "speed_mbps": 1000}]}
    answer = w.contract.call(client, "post", inv_url, expect=200, body=inventory,
                             token=w.install_token("node-assigned"), source=w.ip("node-assigned")).json()
    assert answer["root_device"] == "/dev/vda", answer
    w.contract.call(client, "post", inv_url, expect=400, body={"disks": "many"}, valid_request=False,
                    token=w.install_token("node-assigned"), source=w.ip("node-assigned"))
    w.contract.call(client, "post", inv_url, expect=401, body=inventory, token="wrong", source=w.ip("node-assigned"))
    w.contract.call(client, "post", inv_url, expect=403, body=inventory, token=w.install_token("node-assigned"),
                    source=w.ip("node-installed"))
    w.contract.call(client, "post", f"{lan}/install/52:54:00:99:99:99/inventory", expect=404, body=inventory,
                    token="wrong")
    # An inspection's inventory: refused while [discovery] inspect is off (its default)
    w.contract.call(client, "post", f"{lan}/inspect/52:54:00:99:99:98/inventory", expect=403, body=inventory,
                    token="i0")
    stored = w.admin_call("get", f"/api/v1/machines/{inv_mac}/inventory", 200).json()
    assert [d["serial"] for d in stored["inventory"]["disks"]] == ["DISK-B", "DISK-A"], stored
    w.admin_call("delete", "/api/v1/hosts/node-assigned/root-device", 200)
    w.admin_call("delete", "/api/v1/hosts/nobody/root-device", 404)
    w.admin_call("put", "/api/v1/images/web/root-device", 200, {"hints": "size>=1G,largest"})
    w.admin_call("put", "/api/v1/images/web/root-device", 400, {"hints": "size>=lots"})
    w.admin_call("put", "/api/v1/images/nosuch/root-device", 404, {"hints": "largest"})
    w.admin_call("delete", "/api/v1/images/web/root-device", 200)
    w.admin_call("delete", "/api/v1/images/nosuch/root-device", 404)
    # Named tokens: added (shown once), a clash, a bad role, listed without secrets, a reader refused a change
    # (403) and a read without a token (401), revoked (refused at once).
    reader = w.admin_call("post", "/api/v1/tokens", 201, {"name": "desk", "role": "reader"}).json()
    w.admin_call("post", "/api/v1/tokens", 409, {"name": "desk", "role": "reader"})
    w.admin_call("post", "/api/v1/tokens", 400, {"name": "desk2", "role": "root"})
    listed = w.get("/api/v1/tokens").json()["tokens"]
    assert [(t["name"], t["role"]) for t in listed] == [("admin", "admin"), ("desk", "reader")]
    assert reader["token"] not in json.dumps(listed)
    w.get("/api/v1/hosts", token=reader["token"])
    w.get("/api/v1/hosts", 401, token="ist-wrong")
    w.contract.call(w.pair.server, "post", w.local + "/api/v1/tokens", expect=403, body={"name": "x", "role": "admin"},
                    token=reader["token"])
    w.admin_call("delete", "/api/v1/tokens/desk", 200)
    w.admin_call("delete", "/api/v1/tokens/desk", 404)
    w.get("/api/v1/hosts", 401, token=reader["token"])
    # Satellites: added (its token once), clashes, bad names, reports with its token, removed.
    sat = w.admin_call("post", "/api/v1/satellites", 201, {"name": "edge"}).json()
    w.admin_call("post", "/api/v1/satellites", 409, {"name": "edge"})
    w.admin_call("post", "/api/v1/satellites", 400, {"name": "Bad Name"})
    w.contract.call(w.pair.server, "post", w.local + "/api/v1/satellites", expect=401, body={"name": "edge2"})
    w.contract.call(client, "post", f"{lan}/satellite/v1/reports", expect=200, token=sat["token"],
                    body={"events": [], "versions": ["web_v1"], "backlog": 0})
    w.contract.call(client, "post", f"{lan}/satellite/v1/reports", expect=400, token=sat["token"],
                    body={"events": "many"}, valid_request=False)
    w.contract.call(client, "post", f"{lan}/satellite/v1/reports", expect=401, token="sat-wrong", body={})
    w.admin_call("delete", "/api/v1/satellites/edge", 200)
    w.admin_call("delete", "/api/v1/satellites/edge", 404)
    # Multicast seats: off on this daemon (409); a wrong token, another address, an unknown MAC.
    mc_mac = HOSTS["node-assigned"][0]
    for source, token, status in ((w.ip("node-assigned"), w.install_token("node-assigned"), 409),
                                  (w.ip("node-assigned"), "wrong", 401),
                                  (w.ip("node-installed"), w.install_token("node-assigned"), 403)):
        w.contract.call(client, "post", f"{lan}/install/{mc_mac}/multicast", expect=status, token=token,
                        source=source)
    w.contract.call(client, "post", f"{lan}/install/52:54:00:99:99:99/multicast", expect=404, token="wrong")
    # updateclient's reports and --autoinstall, with the host's update token from its own address.
    installed = "node-installed"
    utoken = w.scripts[installed]["UPDATE_TOKEN"]
    for body, status in (({"stage": "start", "image": "web", "version": 1}, 200),
                         ({"stage": "done", "image": "web", "version": 1}, 200), ({"stage": "sideways"}, 400)):
        w.contract.call(client, "post", f"{lan}/api/v1/hosts/{installed}/update-events", expect=status, body=body,
                        token=utoken, source=w.ip(installed))
    w.contract.call(client, "post", f"{lan}/api/v1/hosts/{installed}/update-events", expect=401,
                    body={"stage": "start"}, token="wrong", source=w.ip(installed))
    w.admin_call("post", "/api/v1/hosts/nobody/update-events", 404, {"stage": "start"})
    w.contract.call(client, "post", f"{lan}/api/v1/hosts/{installed}/autoinstall", expect=200, token=utoken,
                    source=w.ip(installed))
    w.admin_call("post", "/api/v1/hosts/node-new/autoinstall", 409)
    w.admin_call("post", "/api/v1/hosts/nobody/autoinstall", 404)
    # The daemon's own operations; makedhcpstatic last (it turns the active leases into reservations).
    w.admin_call("post", "/api/v1/reload", 202)
    w.contract.call(w.pair.server, "post", w.local + "/api/v1/reload", expect=401)
    w.admin_call("post", "/api/v1/makedhcpstatic", 200)
    w.contract.call(w.pair.server, "post", w.local + "/api/v1/makedhcpstatic", expect=401, token="wrong")

    missing = operations(w.contract.document) - w.contract.exercised
    assert missing == set(), "documented operations this module does not call: add a case"
    assert not w.contract.problems[seen:], "\n".join(w.contract.problems[seen:])
