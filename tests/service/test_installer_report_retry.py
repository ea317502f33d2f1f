"""The installer's report() (appliance/boot/installer/lib/common.sh, as init.sh uses it) under real busybox wget,
against a loopback server: "done" is retried when the imageserver is too slow to answer (its journal's fsync
behind a busy disk), and a refusal (4xx) ends the retries at once; other stages are tried once."""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.installer_sh import prelude

BUSYBOX = shutil.which("busybox")

pytestmark = pytest.mark.skipif(BUSYBOX is None, reason="busybox is not installed (deps/apt-packages.txt)")


def busybox_path(tmp_path: Path) -> Path:
    """A PATH directory of busybox applets alone, as in the installer without curl: report() takes wget."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    assert BUSYBOX is not None
    applets = subprocess.run([BUSYBOX, "--list"], capture_output=True, text=True, check=True).stdout.split()
    for applet in applets:
        (bin_dir / applet).symlink_to(BUSYBOX)
    return bin_dir


class Server:
    def __init__(self, answers: list[tuple[float, int]]) -> None:
        self.answers = answers  # per request: (delay before answering, status)
        self.bodies: list[bytes] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                outer.bodies.append(body)
                delay, status = outer.answers[min(len(outer.bodies), len(outer.answers)) - 1]
                time.sleep(delay)
                try:
                    self.send_response(status)
                    self.send_header("Content-Length", "2")
                    self.end_headers()
                    self.wfile.write(b"{}")
                except OSError:
                    pass  # the client gave up

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server_factory() -> Iterator[list[Server]]:
    made: list[Server] = []
    yield made
    for s in made:
        s.close()


def run_report(server: Server, stage: str, tmp_path: Path) -> str:
    script = (prelude("common", prog="imageserver-installer") +
              f'\nIMAGESERVER_URL={server.url} MAC=52:54:00:12:34:56 INSTALL_TOKEN=t REPORT_TIMEOUT=2\n'
              f'report {stage} "the detail"\n')
    assert BUSYBOX is not None
    result = subprocess.run([BUSYBOX, "sh", "-c", script], capture_output=True, text=True, timeout=120,
                            env={"PATH": str(busybox_path(tmp_path)), "TMPDIR": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_done_is_retried_until_a_slow_server_answers(server_factory: list[Server], tmp_path: Path) -> None:
    server = Server([(3.0, 200), (0.0, 200)])
    server_factory.append(server)
    out = run_report(server, "done", tmp_path)
    assert "could not report" not in out, out
    assert len(server.bodies) == 2 and all(b'"stage": "done"' in b for b in server.bodies), server.bodies


def test_a_refusal_ends_the_retries(server_factory: list[Server], tmp_path: Path) -> None:
    server = Server([(0.0, 401)])
    server_factory.append(server)
    out = run_report(server, "done", tmp_path)
    assert "could not report stage done" in out and "attempt 1" in out, out
    assert len(server.bodies) == 1


def test_a_progress_stage_is_tried_once(server_factory: list[Server], tmp_path: Path) -> None:
    server = Server([(0.0, 503)])
    server_factory.append(server)
    out = run_report(server, "rsync", tmp_path)
    assert "could not report stage rsync" in out, out
    assert len(server.bodies) == 1
