"""Root fixtures: a guard on the host's /etc for every session, the network lab, a cached Debian kernel."""

from __future__ import annotations

import shutil
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab import diagnostics
from lab.hostguard import HostSnapshot
from lab.netns import Lab, lab_unavailable_reason, open_labs, sweep_stale_labs
from tests.scheduling import longest_first

# Lines a test prints that start with this are repeated in the session's summary (also from xdist workers):
# the e2e tests' power-on -> installed -> login times, which issue notes and CI logs quote.
TIMING_PREFIX = "[timing]"


class TimingSummary:
    """Collects the "[timing]" lines of passed and failed tests' stdout; prints them at the end."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when != "call":
            return
        for name, content in report.sections:
            if "stdout" in name:
                self.lines.extend(f"{report.nodeid.split('::')[-1]}: {line.strip()}" for line in content.splitlines()
                                  if line.strip().startswith(TIMING_PREFIX))

    def pytest_terminal_summary(self, terminalreporter) -> None:
        if self.lines:
            terminalreporter.section("timings (e2e)")
            for line in self.lines:
                terminalreporter.write_line(line)


def pytest_configure(config: pytest.Config) -> None:
    config.pluginmanager.register(TimingSummary(), "imageserver-timings")
    # pytest-xdist (3.x) otherwise re-sorts the loadfile/loadscope work units by their number of tests, most
    # first: the one-test QEMU files, the longest of the suite, would start last (tests/scheduling.py).
    if hasattr(config.option, "loadscopereorder"):
        config.option.loadscopereorder = False


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The long test files first (tests/scheduling.py): each xdist worker collects in this order, and the
    loadfile scheduler queues the files as they come in it."""
    longest_first(items)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):
    """A failed test whose lab is still open (a fixture's) shows its processes, consoles and daemon logs
    (lab/diagnostics.py), so a failure explains itself without a rerun. Runs before teardown, while the
    lab's files exist; a `with Lab()` block that a failure leaves adds the same text to the exception."""
    outcome = yield
    report: pytest.TestReport = outcome.get_result()
    if report.failed and report.when in ("setup", "call") and not lab_unavailable_reason():
        text = diagnostics.report(open_labs())
        if text:
            report.sections.append(("lab diagnostics", text))


# Kernels and initrds for tests are cached here so repeated runs do not download again.
TEST_BOOTENV_CACHE = Path("/var/cache/imageserver/test")


@pytest.fixture(scope="session", autouse=True)
def host_etc_guard() -> Iterator[HostSnapshot]:
    """Fail the session loudly if /etc/resolv.conf, hosts, hostname or the hostname changed (LAB.md)."""
    before = HostSnapshot.take()
    yield before
    before.assert_unchanged("this test session")


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


@pytest.fixture(scope="session")
def lab_sweep() -> Iterator[list[str]]:
    """Once per session: remove lab namespaces and files whose owning test process is gone, and turn
    SIGTERM (a CI timeout) into KeyboardInterrupt so labs are still torn down."""
    previous = signal.getsignal(signal.SIGTERM)
    if previous is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _interrupt)
    yield [] if lab_unavailable_reason() else sweep_stale_labs()
    if previous is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


@pytest.fixture
def lab(lab_sweep: list[str]) -> Iterator[Lab]:
    """A Lab (namespaces, links, processes) torn down after the test, also when it fails."""
    reason = lab_unavailable_reason()
    if reason:
        pytest.skip(reason)
    with Lab() as new_lab:
        yield new_lab


@pytest.fixture(scope="session")
def bootenv_cache() -> Path:
    TEST_BOOTENV_CACHE.mkdir(parents=True, exist_ok=True)
    return TEST_BOOTENV_CACHE


@pytest.fixture(scope="session")
def debian_kernel(bootenv_cache: Path):  # -> appliance.boot.bootenv.Kernel
    """The newest Debian amd64 kernel, downloaded once (apt-get download, not installed) and cached."""
    if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
        pytest.skip("apt-get and dpkg-deb are needed to fetch a Debian kernel")
    from appliance.boot.bootenv import fetch_kernel

    return fetch_kernel(bootenv_cache)
