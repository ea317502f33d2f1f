"""Operations on a running daemon: /metrics, the dashboard, and JSON logs, with real peers.

The imageserver runs in a server namespace (`serve --log-format json`); busybox udhcpc takes a lease from
the client namespace, curl fetches a boot file and reports an install with the host's install token, and
the metrics are scraped with curl and checked line by line by an independent exposition checker.
"""

from __future__ import annotations

import json
import re
import shutil
import time
from html.parser import HTMLParser
from pathlib import Path

import pytest

from appliance.daemon.wiring import api_route_modules
from lab.clients import Udhcpc
from lab.netns import Lab, Pair
from services.openapi import document
from tests.expocheck import Exposition, parse
from tests.system._daemon import API_PORT, Imageserver

pytestmark = pytest.mark.system

BOOT_FILE_SIZE = 256 * 1024
STATIC = Path(__file__).resolve().parents[2] / "services" / "static"

OPENAPI = document([route for module in api_route_modules() for route in module])


def start_json_daemon(pair: Pair, timeout: float = 20) -> Imageserver:
    server = Imageserver(pair.server, pair.server_if, pair.server_ip, pair.subnet)
    # TFTP on too (port 69 inside the namespace), so its transfers show in the metrics.
    text = server.config.read_text()
    assert "[tftp]\nenabled = false" in text
    server.config.write_text(text.replace("[tftp]\nenabled = false", "[tftp]\nenabled = true"))
    return server.start(timeout, "--log-format", "json")


def curl(pair: Pair, *args: str, ns: str = "server") -> str:
    where = pair.server if ns == "server" else pair.client
    return where.run(["curl", "-sS", "--fail-with-body", "--max-time", "10", *args]).stdout


def scrape(server: Imageserver, pair: Pair) -> Exposition:
    out = pair.server.run(["curl", "-sS", "--fail", "--max-time", "10", "-w", "\n%{content_type}",
                           f"http://127.0.0.1:{API_PORT}/metrics"]).stdout
    body, _, content_type = out.rpartition("\n")
    assert content_type == "text/plain; version=0.0.4; charset=utf-8"
    return parse(body)


def promtool_check(pair: Pair) -> None:
    """Prometheus' own parser and linter on a scrape (names, types, _total suffixes, HELP)."""
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (package prometheus, in deps/apt-packages.txt)")
    body = pair.server.run(["curl", "-sS", "--fail", f"http://127.0.0.1:{API_PORT}/metrics"]).stdout
    result = pair.server.run([promtool, "check", "metrics"], input=body, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def token_of(server: Imageserver) -> str:
    return (server.state_dir / "admin.token").read_text().strip()


def install_token(server: Imageserver, name: str) -> str:
    with server.db() as conn:
        row = conn.execute("SELECT install_token FROM hosts WHERE name = ?", (name,)).fetchone()
    assert row and row[0]
    return str(row[0])


def wait_for_log(server: Imageserver, pattern: str, timeout: float = 5) -> None:
    deadline = time.monotonic() + timeout
    while pattern not in server.log():
        assert time.monotonic() < deadline, f"{pattern!r} not logged: {server.log()[-2000:]}"
        time.sleep(0.05)


def test_metrics_parse_and_move_with_dhcp_boot_file_and_install_traffic(lab: Lab) -> None:
    pair = lab.server_client_pair()
    server = start_json_daemon(pair)
    before = scrape(server, pair)
    assert before.value("imageserver_service_up", service="dhcp") == 1
    assert before.value("imageserver_service_up", service="http") == 1
    subnet = str(pair.subnet)
    assert before.value("imageserver_dhcp_pool_size", subnet=subnet) == 51  # .100-.150
    assert before.value("imageserver_dhcp_pool_active_leases", subnet=subnet) == 0

    # DHCP: a real client's DISCOVER/REQUEST.
    lease = Udhcpc(pair.client, pair.client_if).obtain()
    # A boot file over HTTP from the client's side, as iPXE fetches one.
    (server.state_dir / "boot" / "probe.bin").write_bytes(b"\x5a" * BOOT_FILE_SIZE)
    fetched = pair.client.run(["curl", "-sS", "--fail", "-o", "/dev/null", "-w", "%{size_download}",
                               f"http://{pair.server_ip}:{API_PORT}/boot/files/probe.bin"]).stdout
    assert int(fetched) == BOOT_FILE_SIZE
    # The same file over TFTP, as a PXE ROM fetches iPXE.
    fetched = pair.client.run(["curl", "-sS", "--fail", "--max-time", "20", "--tftp-blksize", "1400", "-o",
                               "/dev/null", "-w", "%{size_download}", f"tftp://{pair.server_ip}/probe.bin"]).stdout
    assert int(fetched) == BOOT_FILE_SIZE
    # An install reported by "the installer": a host for the client's MAC, two stages, done.
    mac = pair.client.run(["cat", f"/sys/class/net/{pair.client_if}/address"]).stdout.strip()
    token = (server.state_dir / "admin.token").read_text().strip()
    curl(pair, "-H", f"Authorization: Bearer {token}", "-H", "Content-Type: application/json",
         "-d", json.dumps({"name": "node1", "mac": mac}), f"http://127.0.0.1:{API_PORT}/api/v1/hosts")
    # A reinstall hands out a fresh install token (what the installer's script would carry).
    curl(pair, "-X", "POST", "-H", f"Authorization: Bearer {token}",
         f"http://127.0.0.1:{API_PORT}/api/v1/hosts/node1/reinstall")
    itoken = install_token(server, "node1")
    for stage in ("partition", "rsync", "done"):
        curl(pair, "-H", f"Authorization: Bearer {itoken}", "-H", "Content-Type: application/json",
             "-d", json.dumps({"stage": stage}), f"http://{pair.server_ip}:{API_PORT}/install/{mac}/events",
             ns="client")

    # iPXE asks what to boot: an installed host boots its own disk.
    script = curl(pair, f"http://{pair.server_ip}:{API_PORT}/boot/{mac}.ipxe", ns="client")
    assert script.startswith("#!ipxe")

    after = scrape(server, pair)
    # Every DHCP exchange counted once, by type.
    for kind in ("discover", "request"):
        assert after.value("imageserver_dhcp_received_total", type=kind) >= 1
    assert after.value("imageserver_dhcp_sent_total", type="offer") >= 1
    assert after.value("imageserver_dhcp_sent_total", type="ack") >= 1
    assert after.value("imageserver_dhcp_pool_active_leases", subnet=subnet) == 1
    assert lease.ip in pair.subnet
    # The boot file moved the HTTP byte and transfer counters by what curl downloaded.
    assert after.value("imageserver_http_file_transfers_total") - before.get("imageserver_http_file_transfers_total") \
        == 1
    assert after.value("imageserver_http_sent_bytes_total") - before.get("imageserver_http_sent_bytes_total") \
        >= BOOT_FILE_SIZE
    assert after.value("imageserver_http_requests_total") > before.value("imageserver_http_requests_total")
    assert before.value("imageserver_service_up", service="tftp") == 1
    assert after.value("imageserver_tftp_sent_bytes_total") - before.get("imageserver_tftp_sent_bytes_total") \
        == BOOT_FILE_SIZE
    assert after.value("imageserver_tftp_transfers_started_total") - \
        before.get("imageserver_tftp_transfers_started_total") == 1
    assert after.value("imageserver_tftp_transfers_finished_total", outcome="completed") == 1
    # The install: outcome, duration histogram, host state.
    assert after.value("imageserver_installs_total", outcome="done") == 1
    assert after.value("imageserver_install_duration_seconds_count") == 1
    assert after.value("imageserver_hosts", state="installed") == 1
    promtool_check(pair)
    # The same numbers /api/v1/status shows (read from there, not counted again).
    status = json.loads(curl(pair, f"http://127.0.0.1:{API_PORT}/api/v1/status"))
    dhcp = status["services"]["dhcp"]["counters"]
    assert after.value("imageserver_dhcp_received_total", type="discover") == dhcp["in_discover"]
    pools = json.loads(curl(pair, "-H", f"Authorization: Bearer {server.daemon.admin_token()}",
                            f"http://127.0.0.1:{API_PORT}/api/v1/pools"))["pools"]
    assert pools == [{"subnet": subnet, "size": 51, "active": 1, "reserved": 1,
                      "quarantined": 0}]  # done made the lease static

    # JSON logs: every line an object with time, level, logger; per-machine events name the machine.
    wait_for_log(server, '"event": "install-done"')
    records = [json.loads(line) for line in server.log().splitlines() if line.strip()]
    assert all({"time", "level", "logger"} <= set(r) for r in records)
    by_event: dict[str, list[dict]] = {}
    for r in records:
        by_event.setdefault(str(r.get("event")), []).append(r)
    # Its DHCP binding, its boot script request and its install reports name the machine by MAC (and
    # hostname where known: udhcpc sends none, so the binding shows "-").
    (ack,) = [r for r in by_event["dhcp-ack"] if r.get("mac") == mac]
    assert (ack["ip"], ack["hostname"]) == (str(lease.ip), "-")
    decision = [r for r in by_event["boot-decision"] if r.get("mac") == mac][-1]
    assert (decision["hostname"], decision["kind"]) == ("node1", "local")
    reports = by_event["install-report"]
    assert [(r["mac"], r["hostname"], r["stage"]) for r in reports] == [(mac, "node1", "partition"),
                                                                        (mac, "node1", "rsync")]
    done = by_event["install-done"][-1]
    assert (done["mac"], done["hostname"], done["state"]) == (mac, "node1", "installed")
    # A message with a quoted value keeps it as one field (no word split off into "message").
    missing = by_event["installer-missing"][0]
    assert missing["hint"] == "build it with imageserver mkbootenv" and "message" not in missing


class _Refs(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.refs: list[tuple[str, str, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in ("src", "href") and value is not None:
                self.refs.append((tag, name, value))


def test_dashboard_uses_only_local_assets_and_writes_only_an_assignment_with_the_typed_token(lab: Lab) -> None:
    pair = lab.server_client_pair()
    server = Imageserver(pair.server, pair.server_if, pair.server_ip, pair.subnet).start()
    base = f"http://127.0.0.1:{API_PORT}"
    page = curl(pair, f"{base}/")
    assert page.lstrip().lower().startswith("<!doctype html>")
    refs = _Refs()
    refs.feed(page)
    assert {("script", "src", "/static/dashboard.js"), ("link", "href", "/static/dashboard.css")} <= set(refs.refs)
    for tag, attr, url in refs.refs:
        # Local only: absolute paths on this server, never another host (no CDN) or a scheme.
        assert url.startswith("/") and not url.startswith("//"), (tag, attr, url)
        curl(pair, f"{base}{url}")  # every referenced asset is served
    script = curl(pair, f"{base}/static/dashboard.js")
    assert script == (STATIC / "dashboard.js").read_text()
    assert not re.search(r"https?:|//[a-z]", re.sub(r"^\s*//.*$", "", script, flags=re.M)), "no remote URLs"
    # What the script reads: every plain path literal is a GET route under /api/v1/ without parameters ...
    paths = set(re.findall(r"[\"'`](/[^\"'`\s]*)[\"'`]", script))
    assign = "/api/v1/machines/${encodeURIComponent(mac)}/assign"
    assert paths == {"/api/v1/status", "/api/v1/pools", "/api/v1/hosts", "/api/v1/machines", "/api/v1/images",
                     assign}
    for path in paths - {assign}:
        assert set(OPENAPI["paths"][path]) >= {"get"}
        if path == "/api/v1/status":
            json.loads(curl(pair, f"{base}{path}"))  # ... the status answers JSON to anyone,
            continue
        # ... the lists only to a token (any role: the admin token is one)
        anonymous = pair.server.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", f"{base}{path}"]).stdout
        assert anonymous == "401", (path, anonymous)
        json.loads(curl(pair, "-H", f"Authorization: Bearer {token_of(server)}", f"{base}{path}"))
    # ... through fetch() calls of which only the assign one writes (POST), both with the token the operator
    # typed into this tab, and nothing writes to the page as HTML.
    assert set(OPENAPI["paths"]["/api/v1/machines/{mac}/assign"]) == {"post"}
    assert script.count("fetch(") == 2
    assert re.findall(r"\bmethod\s*:\s*\"(\w+)\"", script) == ["POST"]
    assert not re.search(r"innerHTML|outerHTML|insertAdjacentHTML|document\.write|eval\(", script)
    # The token: only from sessionStorage, only into an Authorization header; never in the served page.
    code = re.sub(r"^\s*//.*$", "", script, flags=re.M)  # the comments may name them
    assert code.count("Authorization") == 2 and "Authorization: `Bearer ${token}`" in code
    assert "headers.Authorization = `Bearer ${token}`" in code
    assert code.count("sessionStorage.getItem(") == 1
    assert "localStorage" not in code and "document.cookie" not in code
    assert token_of(server) not in page
    refused = pair.server.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST", f"{base}/"],
                              check=False).stdout
    assert refused in ("401", "405")
    assert server.proc is not None and server.proc.alive()


class _Tables(HTMLParser):
    """The text of every row of every table in a DOM dump, by table id."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self.spans: dict[str, str] = {}
        self._table: str | None = None
        self._row: list[str] | None = None
        self._cell: list[str] | None = None
        self._span: str | None = None
        self._in_body = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "table":
            self._table = a.get("id") or "?"
            self.tables[self._table] = []
        elif tag == "tbody":
            self._in_body = True
        elif tag == "tr" and self._in_body:
            self._row = []
        elif tag == "td" and self._row is not None:
            self._cell = []
        elif tag == "span" and a.get("id"):
            self._span = a["id"]
            self.spans[self._span] = ""

    def handle_endtag(self, tag: str) -> None:
        if tag == "td" and self._row is not None and self._cell is not None:
            self._row.append("".join(self._cell).strip())
            self._cell = None
        elif tag == "tr" and self._row is not None and self._table is not None:
            self.tables[self._table].append(self._row)
            self._row = None
        elif tag == "tbody":
            self._in_body = False
        elif tag == "span":
            self._span = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)
        if self._span is not None:
            self.spans[self._span] += data


def test_dashboard_renders_live_services_pools_hosts_and_install_progress_in_chromium(lab: Lab) -> None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("chromium is not installed (deps/apt-packages.txt lists it)")
    pair = lab.server_client_pair()
    server = Imageserver(pair.server, pair.server_if, pair.server_ip, pair.subnet).start()
    lease = Udhcpc(pair.client, pair.client_if).obtain()
    mac = pair.client.run(["cat", f"/sys/class/net/{pair.client_if}/address"]).stdout.strip()
    token = (server.state_dir / "admin.token").read_text().strip()
    api = f"http://127.0.0.1:{API_PORT}"
    curl(pair, "-H", f"Authorization: Bearer {token}", "-H", "Content-Type: application/json",
         "-d", json.dumps({"name": "node7", "mac": mac}), f"{api}/api/v1/hosts")
    curl(pair, "-X", "POST", "-H", f"Authorization: Bearer {token}", f"{api}/api/v1/hosts/node7/reinstall")
    itoken = install_token(server, "node7")
    for stage, done in (("partition", None), ("rsync", 3 * 1024 * 1024)):
        body = {"stage": stage} if done is None else {"stage": stage, "bytes": done, "total": 4 * 1024 * 1024}
        curl(pair, "-H", f"Authorization: Bearer {itoken}", "-H", "Content-Type: application/json",
             "-d", json.dumps(body), f"{api}/install/{mac}/events")

    profile = lab.tmp_path("chromium-profile")
    shot = lab.tmp_path("dashboard.png")
    browser = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", f"--user-data-dir={profile}",
               "--virtual-time-budget=3000"]
    dom = pair.server.run([*browser, "--dump-dom", f"{api}/"], timeout=60).stdout
    pair.server.run([*browser, "--window-size=1280,900", f"--screenshot={shot}", f"{api}/"], timeout=60)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    page = _Tables()
    page.feed(dom)
    assert "1 hosts" in page.spans["summary"] and "1 active leases" in page.spans["summary"]
    # The script ran and reached the API: the open status (services, counts). A fresh browser has no token, so
    # the lists (pools, hosts, machines) are not read and it says why; they show with a typed token in
    # tests/service/test_dashboard_browser.py (hosts with live install progress, images, machines).
    assert page.spans["updated"].startswith("type a token above"), page.spans["updated"]
    services = {row[0]: row for row in page.tables["services"]}
    assert {"dhcp", "http", "rsyncd", "bootfiles"} <= set(services)
    assert services["dhcp"][1] == "running" and "in_request=1" in services["dhcp"][3]
    assert page.tables.get("pools", []) == [] and page.tables.get("hosts", []) == []
    assert page.tables.get("machines", []) == [] and mac not in dom and "node7" not in dom
    assert lease.ip in pair.subnet
    # The same lists, read with a token, say what the page shows with one.
    (pool,) = json.loads(curl(pair, "-H", f"Authorization: Bearer {token}", f"{api}/api/v1/pools"))["pools"]
    assert pool["subnet"] == str(pair.subnet) and pool["active"] == 1 and pool["size"] == 51
    (host,) = json.loads(curl(pair, "-H", f"Authorization: Bearer {token}", f"{api}/api/v1/hosts"))["hosts"]
    assert host["name"] == "node7" and host["mac"] == mac and host["state"] == "installing"
