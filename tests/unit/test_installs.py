"""The install state machine and its text views, on an in-memory-like store (plain SQLite, no daemon)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from appliance.cli.installview import host_detail, progress_bar, progress_line
from domain import install_events, install_script
from domain.hosts import new_host_op
from protocols.install_report import InvalidReport, check_stage
from state import installs
from state.db import connect
from state.hosts import host_by_name


@pytest.fixture
def conn(tmp_path: Path):  # -> sqlite3.Connection
    c = connect(tmp_path / "db.sqlite")
    new_host_op("node1", "52:54:00:00:00:01", "demo", None, 100.0)(c)
    c.execute("INSERT INTO images(name, version, path, created) VALUES ('demo', 3, '/x', 0)")
    yield c
    c.close()


def _state(conn) -> str:
    return conn.execute("SELECT state FROM hosts WHERE name = 'node1'").fetchone()[0]


def test_a_host_goes_assigned_installing_installed(conn) -> None:
    host = host_by_name(conn, "node1")
    assert host is not None and host.state == "assigned" and host.install_token
    assert installs.resolve_version(conn, host) == 3
    assert install_events.record_op("node1", host.mac, 101.0, "installer", None)(conn) == "installing"
    assert _state(conn) == "installing"  # the first authenticated report starts the install (a GET does not)
    install_events.record_op("node1", host.mac, 105.0, "rsync",
                             install_events.event_detail("copy", 50, 200))(conn)
    assert install_events.record_op("node1", host.mac, 110.0, "done", None, 3)(conn) == "installed"
    assert conn.execute("SELECT running_version FROM hosts").fetchone()[0] == 3
    events = installs.timeline(conn, "node1")
    assert [e["stage"] for e in events] == ["installer", "rsync", "done"]
    summary = install_events.summary(events, now=200.0)
    assert summary["stage"] == "done" and summary["elapsed"] == 9.0  # from the installer's start to done
    assert (summary["bytes"], summary["total"]) == (50, 200)


def test_failure_takes_its_stage_from_the_report_or_the_last_stage(conn) -> None:
    install_events.record_op("node1", None, 101.0, "partition", None)(conn)
    install_events.record_op("node1", None, 102.0, "failed",
                             install_events.event_detail("sfdisk: disk too small"))(conn)
    assert _state(conn) == "failed"
    failure = install_events.summary(installs.timeline(conn, "node1"), 103.0)["failure"]
    assert failure == {"stage": "partition", "reason": "sfdisk: disk too small"}
    installs.reinstall_op("node1", "new-token", 104.0)(conn)
    assert _state(conn) == "assigned"
    install_events.record_op("node1", None, 105.0, "failed",
                             install_events.event_detail("stage: rsync\nreason: no space left\nlog tail..."))(conn)
    events = installs.timeline(conn, "node1")
    assert install_events.summary(events, 106.0)["failure"] == {"stage": "rsync", "reason": "no space left"}
    assert [e["stage"] for e in install_events.current_install(events)] == ["reinstall", "failed"]


def test_an_installer_that_starts_again_mid_install_is_a_new_attempt(conn) -> None:
    """A machine that crashed mid-copy and was powered on again: its progress is the new attempt's."""
    install_events.record_op("node1", None, 100.0, "installer", None)(conn)
    install_events.record_op("node1", None, 101.0, "rsync", install_events.event_detail("copy", 900, 1000))(conn)
    install_events.record_op("node1", None, 150.0, "installer", None)(conn)  # powered on again
    install_events.record_op("node1", None, 151.0, "partition", None)(conn)
    events = installs.timeline(conn, "node1")
    assert [e["stage"] for e in install_events.current_install(events)] == ["installer", "partition"]
    summary = install_events.summary(events, now=160.0)
    assert summary["started"] == 150.0 and summary["elapsed"] == 10.0
    assert "bytes" not in summary, "the crashed attempt's copy progress is not this attempt's"
    installs.reinstall_op("node1", "new-token", 170.0)(conn)
    install_events.record_op("node1", None, 171.0, "installer", None)(conn)
    events = installs.timeline(conn, "node1")
    assert [e["stage"] for e in install_events.current_install(events)] == ["reinstall", "installer"]


def test_script_variables_are_quoted_and_odd_values_refused() -> None:
    script = install_script.with_variables("#!/bin/sh\necho hi\n", {"HOSTNAME": "node1", "DNS": "10.0.0.1 10.0.0.2",
                                                              "GATEWAY": None})
    assert script.splitlines()[0] == "#!/bin/sh"
    assert "HOSTNAME='node1'; export HOSTNAME" in script and "GATEWAY" not in script
    assert script.endswith("echo hi\n")
    with pytest.raises(install_script.ScriptError):
        install_script.with_variables("echo\n", {"HOSTNAME": "x'; rm -rf /; '"})


def test_stage_names_and_detail_size_are_checked() -> None:
    assert check_stage("rsync") == "rsync"
    for bad in ("", "Rsync", "a b", "x" * 40, None, 3):
        with pytest.raises(InvalidReport):
            check_stage(bad)
    detail = json.loads(install_events.event_detail("y" * 20000) or "{}")
    assert len(json.dumps(detail)) <= install_events.MAX_DETAIL and detail["text"].endswith("y")
    with pytest.raises(InvalidReport):
        install_events.event_detail(None, -1)


def test_views_render_progress_and_failure() -> None:
    assert progress_bar(50, 200, width=8) == "[##......]  25%"
    host = {"name": "node1", "state": "installing", "progress": {"stage": "rsync", "bytes": 1 << 20,
                                                                 "total": 4 << 20, "elapsed": 3.2}}
    line = progress_line(host)
    assert "rsync" in line and "25%" in line and "1.0 MiB/4.0 MiB" in line
    failed = {"name": "tiny", "state": "failed", "mac": "m", "image": "demo", "version": None,
              "progress": {"stage": "failed", "failure": {"stage": "partition", "reason": "too small"}},
              "timeline": [{"time": 1.0, "stage": "failed", "detail": {"text": "stage: partition"}}]}
    text = host_detail(failed)
    assert "failure    stage partition: too small" in text and "failed" in text
