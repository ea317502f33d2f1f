"""rsyncd.conf rendering and the daemon log folded into transfer events."""

from __future__ import annotations

import pytest

from protocols.rsyncd import Module, RsyncdConfigError, TransferLog, modules_for, render_config


def test_every_version_is_a_module_and_the_bare_name_is_the_newest() -> None:
    mods = modules_for([("web", 2, "/i/web/v2"), ("web", 10, "/i/web/v10"), ("db", 1, "/i/db/v1")])
    assert [(m.name, m.path) for m in mods] == [
        ("db", "/i/db/v1"), ("db_v1", "/i/db/v1"), ("web", "/i/web/v10"), ("web_v10", "/i/web/v10"),
        ("web_v2", "/i/web/v2")]


def test_config_is_read_only_chrooted_numeric_and_restricted() -> None:
    text = render_config([Module("web_v1", "/var/lib/imageserver/images/web/v1")], ["10.0.0.0/24", "127.0.0.1"])
    lines = [line.strip() for line in text.splitlines()]
    for expected in ("read only = yes", "use chroot = yes", "numeric ids = yes", "munge symlinks = no",
                     "hosts allow = 10.0.0.0/24 127.0.0.1", "hosts deny = *", "log file = /dev/stdout",
                     "[web_v1]", "path = /var/lib/imageserver/images/web/v1"):
        assert expected in lines, expected


def test_no_allowed_hosts_means_nobody() -> None:
    text = render_config([], [])
    assert "hosts deny = *" in text
    assert "\nhosts allow" not in text


@pytest.mark.parametrize("module", [
    Module("web]\n[evil", "/x"),
    Module("web", "/x\n[evil]\npath = /"),
    Module("web", "relative/path"),
    Module("", "/x"),
])
def test_values_that_could_break_out_of_their_line_are_refused(module: Module) -> None:
    with pytest.raises(RsyncdConfigError):
        render_config([module], ["127.0.0.1"])


LOG = """\
2026/11/25 18:25:52 [16305] rsyncd version 3.5.0 starting, listening on port 18737
2026/11/25 18:25:53 [16329] connect from UNDETERMINED (10.0.0.7)
2026/11/25 18:25:53 [16329] rsync allowed access on module web_v1 from UNDETERMINED (10.0.0.7)
2026/11/25 18:25:53 [16330] connect from UNDETERMINED (10.0.0.8)
2026/11/25 18:25:53 [16329] rsync on web_v1/ from UNDETERMINED (10.0.0.7)
2026/11/25 18:25:53 [16329] building file list
2026/11/25 18:25:53 [16330] rsync denied on module web from UNDETERMINED (10.0.0.8)
2026/11/25 18:25:55 [16329] sent 1,234,567 bytes  received 59 bytes  total size 2,000,000
2026/11/25 18:25:56 [16332] connect from UNDETERMINED (10.0.0.9)
2026/11/25 18:25:56 [16332] rsync on web_v1/nonexist from UNDETERMINED (10.0.0.9)
2026/11/25 18:25:56 [16332] rsync: [sender] link_stat "/nonexist" (in web_v1) failed: No such file (2)
2026/11/25 18:25:56 [16332] sent 100 bytes  received 8 bytes  total size 0
2026/11/25 18:25:57 [16340] connect from UNDETERMINED (10.0.0.9)
2026/11/25 18:25:57 [16340] unknown module 'nope' tried from UNDETERMINED (10.0.0.9)
2026/11/25 18:25:58 [16341] connect from UNDETERMINED (10.0.0.9)
2026/11/25 18:25:58 [16341] module-list request from UNDETERMINED (10.0.0.9)
2026/11/25 18:25:58 [16341] sent 10 bytes  received 8 bytes  total size 0
"""


def test_log_lines_become_one_event_per_transfer() -> None:
    tl = TransferLog()
    events = []
    for i, line in enumerate(LOG.splitlines()):
        events += tl.feed(line, now=100.0 + i)
    kinds = [e["event"] for e in events]
    assert kinds == ["listening", "denied", "transfer", "transfer", "unknown-module"]
    ok = events[2]
    assert ok["module"] == "web_v1" and ok["client"] == "10.0.0.7"
    assert ok["sent"] == 1234567 and ok["total"] == 2000000 and ok["errors"] == 0
    assert ok["seconds"] == 6.0  # connect at line 1, summary at line 7
    bad = events[3]
    assert bad["path"] == "/nonexist" and bad["errors"] == 1 and "link_stat" in str(bad["error"])
    assert events[1] == {"event": "denied", "module": "web", "client": "10.0.0.8"}
    assert not tl.sessions  # every session ended; nothing accumulates


def test_sessions_that_never_end_are_forgotten() -> None:
    tl = TransferLog()
    tl.feed("[5] connect from x (10.0.0.1)", now=1.0)
    tl.forget_older_than(2.0)
    assert not tl.sessions


def test_a_failed_authentication_is_an_event_and_ends_its_session() -> None:
    tl = TransferLog()
    tl.feed("2026/12/07 03:10:00 [77] connect from UNDETERMINED (10.0.0.9)", now=1.0)
    events = tl.feed("2026/12/07 03:10:00 [77] auth failed on module web_v1 from UNDETERMINED (10.0.0.9) for node1: "
                     "password mismatch", now=1.1)  # as rsync 3.5.0 writes it
    assert events == [{"event": "auth-failed", "module": "web_v1", "client": "10.0.0.9", "user": "node1",
                       "reason": "password mismatch"}]
    assert not tl.sessions
