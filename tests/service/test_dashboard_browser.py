"""The dashboard in a real browser: headless Chromium, driven by Selenium through chromedriver, against the
real daemon (`imageserver serve`) on 127.0.0.1. Nothing is mocked: the page polls the daemon's API, install
reports go through /install/{mac}/events with the host's install token, a waiting machine is one that asked
for its boot script, and the assign button posts to the admin API with the token typed into the page.

Proves: the page loads with no console errors; a host's install progress shows live as reports arrive;
images and versions show, a new version live; assigning a waiting machine (token typed once, kept in
sessionStorage only) makes it a host, with clear errors for a missing or wrong token and an unknown host;
on a phone-sized screen nothing is wider than the screen. Screenshots: the test's tmp dir and
test-artifacts/ under the repo root (git-ignored).
"""

from __future__ import annotations

import json
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from appliance.images.catalog import Catalog

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
TOKEN_KEY = "imageserver.admin-token"
INSTALLING = "52:54:00:d0:00:07"  # node7: the host whose install the page follows
WAITING = "52:54:00:d0:00:42"  # a machine that asked to boot and has no host yet: assigned by a click
STILL_WAITING = "52:54:00:d0:00:43"  # another, left waiting (the screenshots show its assign form)


def _missing() -> str | None:
    if not CHROMIUM.exists():
        return f"{CHROMIUM} is missing: apt-get install chromium (deps/apt-packages.txt)"
    if not CHROMEDRIVER.exists():
        return f"{CHROMEDRIVER} is missing: apt-get install chromium-driver (deps/apt-packages.txt)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed: pip install -e '.[test]' (pyproject.toml)"
    return None


pytestmark = pytest.mark.skipif(_missing() is not None, reason=_missing() or "")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Daemon:
    base: str
    state_dir: Path
    admin_token: str

    def call(self, method: str, path: str, body: dict[str, Any] | None = None, token: str | None = None) -> Any:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.base + path, data=data, method=method, headers=headers)
        with urllib.request.urlopen(request, timeout=10) as response:
            text = response.read().decode()
        return json.loads(text) if text.lstrip().startswith(("{", "[")) else text

    def admin(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        return self.call(method, path, body, self.admin_token)

    def install_token(self, host: str) -> str:
        conn = sqlite3.connect(f"file:{self.state_dir / 'imageserver.db'}?mode=ro", uri=True, timeout=10)
        try:
            row = conn.execute("SELECT install_token FROM hosts WHERE name = ?", (host,)).fetchone()
        finally:
            conn.close()
        assert row and row[0], f"host {host} has no install token"
        return str(row[0])

    def report(self, mac: str, token: str, **event: Any) -> None:
        self.call("POST", f"/install/{mac}/events", event, token)


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Daemon]:
    """`imageserver serve` with HTTP on 127.0.0.1 only: no DHCP, TFTP, DNS or rsync daemon listening."""
    with serve(tmp_path) as running:
        yield running


@contextmanager
def serve(tmp_path: Path, more_config: str = "") -> Iterator[Daemon]:
    """The daemon of the `daemon` fixture, its configuration file ending in `more_config`."""
    port = free_port()
    state = tmp_path / "state"
    cfg = tmp_path / "imageserver.toml"
    cfg.write_text(f"""
[appliance]
state_dir = "{state}"
[tftp]
enabled = false
[rsyncd]
enabled = false
[http]
listen = "127.0.0.1"
port = {port}
{more_config}""")
    log = tmp_path / "daemon.log"
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "appliance.cli", "serve", "--config", str(cfg)], cwd=ROOT,
                                stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 20
        while "event=ready" not in log.read_text():
            assert proc.poll() is None, f"daemon exited: {log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"daemon not ready: {log.read_text()[-3000:]}"
            time.sleep(0.05)
        yield Daemon(f"http://127.0.0.1:{port}", state, (state / "admin.token").read_text().strip())
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 # No name resolves: whatever the browser might try on its own stays off the network.
                 "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1", "--window-size=1280,1000",
                 f"--user-data-dir={tmp_path / 'chromium-profile'}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = Service(str(CHROMEDRIVER), log_output=str(tmp_path / "chromedriver.log"))
    driver = webdriver.Chrome(service=service, options=options)
    try:
        yield driver
    finally:
        driver.quit()


class Console:
    """Every browser console entry so far (get_log hands each entry out once)."""

    def __init__(self, driver: Any) -> None:
        self.driver = driver
        self.entries: list[dict[str, Any]] = []

    def severe(self) -> list[str]:
        self.entries += self.driver.get_log("browser")
        return [e["message"] for e in self.entries if e["level"] == "SEVERE"]


def table(driver: Any, table_id: str) -> list[list[str]]:
    """The text of each body row's cells (data cells only: the phone layout's labels are CSS, not text)."""
    return driver.execute_script(
        "return Array.from(document.querySelectorAll(`#${arguments[0]} tbody tr`), "
        "tr => Array.from(tr.cells, td => td.textContent.trim()))", table_id)


def text(driver: Any, element_id: str) -> str:
    return driver.execute_script("return document.getElementById(arguments[0]).textContent", element_id)


def wait_for(driver: Any, check: Callable[[], Any], what: str, timeout: float = 8) -> Any:
    """Poll the page until `check` is truthy (the dashboard refreshes every 2 s)."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            tables = {t: table(driver, t) for t in ("hosts", "discovered", "images", "machines")}
            raise AssertionError(f"the page did not show {what} within {timeout} s: {tables}")
        time.sleep(0.1)


def host_row(driver: Any, name: str) -> list[str] | None:
    return next((r for r in table(driver, "hosts") if r and r[0] == name), None)


def register_version(state_dir: Path, name: str, motd: str) -> None:
    """A new image version as getimage registers one (offline catalog, its own connection; WAL)."""
    catalog = Catalog(state_dir)
    try:
        staged = catalog.new_staging(name)
        (staged / "etc").mkdir()
        (staged / "etc/motd").write_text(motd)
        catalog.register(name, staged, source="rsync://192.0.2.10/root", layout_json=None)
    finally:
        catalog.close()
    # No disk layout: installable only by the operator's own script (hosts refuse it otherwise).
    (state_dir / "scripts").mkdir(exist_ok=True)
    (state_dir / "scripts" / f"{name}.master").write_text("#!/bin/sh\necho test image\n")


def screenshot(driver: Any, tmp_path: Path, name: str) -> None:
    shot = tmp_path / name
    assert driver.save_screenshot(str(shot)), f"no screenshot {name}"
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    ARTIFACTS.mkdir(exist_ok=True)
    shutil.copyfile(shot, ARTIFACTS / name)


def test_dashboard_in_chromium_shows_live_install_images_and_assigns_a_waiting_machine(
        daemon: Daemon, browser: Any, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    driver = browser
    # What the operator will see: an image with one version, a host about to install it, free host names
    # from addclients, and a machine that asked for its boot script and waits (discovery policy "hold").
    register_version(daemon.state_dir, "web", "one\n")
    daemon.admin("POST", "/api/v1/hosts", {"name": "node7", "mac": INSTALLING, "image": "web"})
    daemon.admin("POST", "/api/v1/hosts/node7/reinstall")
    itoken = daemon.install_token("node7")
    daemon.admin("POST", "/api/v1/addclients", {"base": "rack", "range": "1-2"})
    for mac in (WAITING, STILL_WAITING):
        assert daemon.call("GET", f"/boot/{mac}.ipxe").startswith("#!ipxe")
        time.sleep(0.01)  # first seen in this order: the waiting list is in arrival order

    driver.get(daemon.base + "/")
    console = Console(driver)
    token_field = driver.find_element(By.ID, "token")
    # No token: the open status only; the lists need a token (the page asks for one, sends no list request).
    wait_for(driver, lambda: text(driver, "updated").startswith("type a token above"), "the token hint")
    assert driver.title == "imageserver"
    services = {r[0]: r[1] for r in table(driver, "services")}
    assert services.get("http") == "running", services
    assert host_row(driver, "node7") is None and table(driver, "images") == []
    assert console.severe() == [], "console errors without a token"
    # A wrong token: the server's 401 is shown, and the token is not kept.
    token_field.send_keys("not-the-token")
    driver.find_element(By.ID, "token-keep").click()
    wait_for(driver, lambda: "refused (HTTP 401)" in text(driver, "token-state"), "the 401 error")
    assert driver.execute_script(f"return sessionStorage.getItem('{TOKEN_KEY}')") is None
    assert host_row(driver, "node7") is None
    # The right token (the admin token is a reader too): the lists.
    token_field.send_keys(daemon.admin_token)
    driver.find_element(By.ID, "token-keep").click()
    wait_for(driver, lambda: text(driver, "updated").startswith("updated"), "a successful refresh")
    assert wait_for(driver, lambda: host_row(driver, "node7"), "host node7")[4] == "assigned"

    # Live install progress: each report shows at the next poll, while the page stays open.
    daemon.report(INSTALLING, itoken, stage="partition")
    row = wait_for(driver, lambda: (r := host_row(driver, "node7")) and r[5].startswith("partition") and r,
                   "node7 partitioning")
    assert row[4] == "installing"
    daemon.report(INSTALLING, itoken, stage="rsync", bytes=3 << 20, total=4 << 20)
    wait_for(driver, lambda: (r := host_row(driver, "node7")) and "3.0 MiB of 4.0 MiB" in r[5],
             "node7's copy progress")
    bar = driver.find_element(By.CSS_SELECTOR, "#hosts tbody .bar > span")
    assert bar.value_of_css_property("width") != "0px"
    daemon.report(INSTALLING, itoken, stage="done")
    wait_for(driver, lambda: (r := host_row(driver, "node7")) and r[4] == "installed", "node7 installed")

    # Images and versions: v1 newest, then v2 registered while the page is open takes over node7.
    images = wait_for(driver, lambda: table(driver, "images"), "the image catalog")
    assert [r[:2] for r in images] == [["web", "v1 newest"]] and images[0][6] == "node7"
    register_version(daemon.state_dir, "web", "two\n")
    images = wait_for(driver, lambda: len(t := table(driver, "images")) == 2 and t, "web v2")
    assert [(r[1], r[6]) for r in images] == [("v2 newest", "node7"), ("v1", "-")]
    refused = [m for m in console.severe() if "/api/v1/" in m and "401" in m]  # the wrong token's reads
    assert refused and [m for m in console.severe() if m not in refused] == [], "console errors while reading"

    # The waiting machine, with its assign form; the free host names are offered.
    wait_for(driver, lambda: [r[0] for r in table(driver, "discovered")] == [WAITING, STILL_WAITING],
             "the waiting machines")
    offered = driver.execute_script("return Array.from(document.querySelectorAll('#free-hosts option'), o => o.value)")
    assert offered == ["rack1", "rack2"]
    form = driver.find_element(By.CSS_SELECTOR, f'#discovered form[data-mac="{WAITING}"]')
    host_field = form.find_element(By.TAG_NAME, "input")
    button = form.find_element(By.TAG_NAME, "button")
    message = form.find_element(By.CLASS_NAME, "assign-message")

    # The token forgotten (the lists stay as last read): nothing is sent, the operator is told what to do.
    driver.find_element(By.ID, "token-forget").click()
    assert text(driver, "token-state") == "not set"
    button.click()
    wait_for(driver, lambda: message.text == "type the admin token above first", "the missing-token hint")
    # The right token again, and a host name that does not exist: the API's 404 reason, verbatim.
    token_field.send_keys(daemon.admin_token)
    driver.find_element(By.ID, "token-keep").click()
    assert text(driver, "token-state") == "kept for this tab"
    host_field.send_keys("nosuch")
    polled = text(driver, "updated")
    wait_for(driver, lambda: text(driver, "updated") != polled, "a poll")  # the typed name must survive it
    assert host_field.get_attribute("value") == "nosuch"
    button.click()
    wait_for(driver, lambda: message.text == "not assigned (HTTP 404): no host named 'nosuch'", "the 404 error")
    # Empty field: the next free host. The click changes the machine's state on the server.
    host_field.clear()
    button.click()
    wait_for(driver, lambda: text(driver, "assign-status") == f"{WAITING} is now host rack1 (new)", "the assignment")
    hosts = {h["name"]: h for h in daemon.admin("GET", "/api/v1/hosts")["hosts"]}
    assert hosts["rack1"]["mac"] == WAITING and hosts["rack2"]["mac"] is None
    wait_for(driver, lambda: [r[0] for r in table(driver, "discovered")] == [STILL_WAITING], "one machine waiting")
    machine = next(r for r in table(driver, "machines") if r[0] == WAITING)
    assert machine[5] == "rack1 (new)"
    assert host_row(driver, "rack1") is not None and host_row(driver, "rack1")[1] == WAITING

    # The token lives in this tab's sessionStorage only: not in the page, a URL, localStorage or a cookie.
    assert driver.execute_script(f"return sessionStorage.getItem('{TOKEN_KEY}')") == daemon.admin_token
    assert driver.execute_script("return localStorage.length") == 0 and driver.get_cookies() == []
    assert daemon.admin_token not in driver.page_source and daemon.admin_token not in driver.current_url
    assert token_field.get_attribute("value") == ""
    # The only console errors: the browser's own notes of the refused requests (the wrong token's reads: 401;
    # the unknown host: 404) above.
    expected = f"{daemon.base}/api/v1/machines/{quote(WAITING, safe='')}/assign - Failed to load resource"
    unexpected = [m for m in console.severe() if not (m.startswith(expected) and "404" in m) and m not in refused]
    assert unexpected == [], "console errors"
    screenshot(driver, tmp_path, "dashboard.png")

    # A phone: cards instead of table rows, nothing wider than the screen.
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                           {"width": 390, "height": 844, "deviceScaleFactor": 2, "mobile": True})
    wait_for(driver, lambda: driver.execute_script("return window.innerWidth") == 390, "the phone viewport")
    layout = driver.execute_script(
        "const td = document.querySelector('#hosts tbody td');"
        "return {scroll: document.documentElement.scrollWidth, display: getComputedStyle(td).display,"
        " label: getComputedStyle(td, '::before').content, height: document.documentElement.scrollHeight}")
    assert layout["scroll"] <= 390, layout
    assert layout["display"] == "block" and layout["label"] == '"host"', layout
    field = driver.find_element(By.CSS_SELECTOR, f'#discovered form[data-mac="{STILL_WAITING}"] input')
    assert field.is_displayed() and field.rect["x"] + field.rect["width"] <= 390, field.rect
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                           {"width": 390, "height": min(int(layout["height"]), 6000), "deviceScaleFactor": 1,
                            "mobile": True})
    screenshot(driver, tmp_path, "dashboard-phone.png")
    assert [m for m in console.severe() if not m.startswith(expected) and m not in refused] == []
