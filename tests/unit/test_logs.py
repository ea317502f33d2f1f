"""Log lines: an event's fields travel as a dict on the record; text and JSON both render from it."""

from __future__ import annotations

import inspect
import io
import json
import logging
import os
import sys
from collections.abc import Iterator
from ipaddress import IPv4Address

import pytest

from appliance.daemon.logs import _JsonFormatter, _KeyValueFormatter
from state.eventlog import EventLog


class Lines:
    """An EventLog on a private logger whose lines go through a real handler with our formatter."""

    def __init__(self, formatter: logging.Formatter, name: str) -> None:
        self.stream = io.StringIO()
        handler = logging.StreamHandler(self.stream)
        handler.setFormatter(formatter)
        self.logger = logging.getLogger(name)
        self.logger.handlers[:] = [handler]
        self.logger.propagate = False
        self.logger.setLevel(logging.DEBUG)
        self.log = EventLog(self.logger)

    def lines(self) -> list[str]:
        return self.stream.getvalue().splitlines()


@pytest.fixture
def text() -> Iterator[Lines]:
    lines = Lines(_KeyValueFormatter(with_time=False), "imageserver.test-text")
    yield lines
    lines.logger.handlers.clear()


@pytest.fixture
def jsonl() -> Iterator[Lines]:
    lines = Lines(_JsonFormatter(), "imageserver.test-json")
    yield lines
    lines.logger.handlers.clear()


def test_text_lines_carry_level_short_logger_event_and_fields_in_order(text: Lines) -> None:
    text.log.info("ready", version="1", services="dhcp,tftp", port=67)
    assert text.lines() == ["level=info logger=test-text event=ready version=1 services=dhcp,tftp port=67"]


def test_values_that_are_not_one_plain_word_are_quoted_as_repr_quotes_them(text: Lines) -> None:
    reason = 'it\'s "odd" \\ here'
    text.log.warning("x", reason=reason, hint="two words", empty="", tab="a\tb", mac="aa:bb", path="/var/lib/x")
    (line,) = text.lines()
    assert line == (f"level=warning logger=test-text event=x reason={reason!r} hint='two words' empty='' "
                    "tab='a\\tb' mac=aa:bb path=/var/lib/x")


def test_a_hostile_value_cannot_forge_a_field_in_either_format(text: Lines, jsonl: Lines) -> None:
    hostile = "evil mac=02:00:00:00:00:01 level=error\nlevel=info event=forged"
    for lines in (text, jsonl):
        lines.log.info("dhcp-ack", mac="52:54:00:12:34:56", hostname=hostile)
    (line,) = text.lines()
    assert line == f"level=info logger=test-text event=dhcp-ack mac=52:54:00:12:34:56 hostname={hostile!r}"
    (obj,) = [json.loads(x) for x in jsonl.lines()]
    assert obj["hostname"] == hostile and obj["mac"] == "52:54:00:12:34:56" and obj["event"] == "dhcp-ack"


def test_json_lines_are_objects_whose_fields_never_replace_time_level_logger(jsonl: Lines) -> None:
    jsonl.log.info("install-done", hostname="node1", mac="52:54:00:12:34:56", level="fake", logger="fake")
    (line,) = jsonl.lines()
    obj = json.loads(line)
    assert obj["event"] == "install-done" and obj["hostname"] == "node1" and obj["mac"] == "52:54:00:12:34:56"
    assert obj["level"] == "info" and obj["logger"] == "imageserver.test-json" and isinstance(obj["time"], float)
    assert "message" not in obj


def test_json_keeps_numbers_and_null_and_writes_other_values_as_their_text(jsonl: Lines) -> None:
    jsonl.log.info("quarantined", ip=IPv4Address("10.0.0.5"), count=3, ratio=0.5, ok=True, hostname=None,
                   huge=float("inf"))
    obj = json.loads(jsonl.lines()[0])
    assert (obj["ip"], obj["count"], obj["ratio"], obj["ok"], obj["hostname"], obj["huge"]) == (
        "10.0.0.5", 3, 0.5, True, None, "inf")


def test_a_record_without_fields_keeps_its_message_as_text(jsonl: Lines, text: Lines) -> None:
    jsonl.logger.warning("Unclosed client session %s k=v", "x")
    text.logger.warning("plain %s", "words")
    assert json.loads(jsonl.lines()[0])["message"] == "Unclosed client session x k=v"
    assert "k" not in json.loads(jsonl.lines()[0])
    assert text.lines() == ["level=warning logger=test-text plain words"]


def test_exceptions_carry_their_traceback_on_the_same_line(text: Lines, jsonl: Lines) -> None:
    for lines in (text, jsonl):
        try:
            raise ValueError("boom")
        except ValueError:
            lines.log.exception("packet-failed", mac="aa")
    (line,) = text.lines()
    assert line.startswith("level=error logger=test-text event=packet-failed mac=aa traceback=\"Traceback")
    assert "ValueError: boom" in json.loads(jsonl.lines()[0])["traceback"]


def test_any_handler_sees_the_key_value_text_and_the_record_names_the_calling_line(
        caplog: pytest.LogCaptureFixture) -> None:
    log = EventLog("imageserver.test-caplog")
    with caplog.at_level(logging.DEBUG, logger="imageserver.test-caplog"):
        call_line = inspect.stack()[0].lineno + 1
        log.debug("dhcp-renew", mac="aa", ip=IPv4Address("10.0.0.9"))
        log.log(logging.INFO, "ready", version="1")
    first, second = caplog.records
    assert first.getMessage() == "event=dhcp-renew mac=aa ip=10.0.0.9"
    assert (first.filename, first.lineno) == ("test_logs.py", call_line)
    assert first.funcName == "test_any_handler_sees_the_key_value_text_and_the_record_names_the_calling_line"
    assert second.levelno == logging.INFO and second.getMessage() == "event=ready version=1"
    assert (second.filename, second.lineno) == ("test_logs.py", call_line + 1)


def test_disabled_levels_build_nothing(jsonl: Lines) -> None:
    jsonl.logger.setLevel(logging.INFO)

    class Exploding:
        def __str__(self) -> str:
            raise AssertionError("rendered although debug is off")

    jsonl.log.debug("dhcp-renew", mac=Exploding())
    assert jsonl.lines() == []


def test_lines_to_the_journal_carry_their_syslog_priority(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    """journald files a stream line under the priority of its "<N>" prefix: `journalctl -p err` finds errors."""
    from appliance.daemon import logs

    stream = (tmp_path / "stderr").open("w")
    st = os.fstat(stream.fileno())
    monkeypatch.setattr(sys, "stderr", stream)
    monkeypatch.setenv("JOURNAL_STREAM", f"{st.st_dev}:{st.st_ino}")
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        logs.setup_logging("debug")
        log = logging.getLogger("imageserver.test-journal")
        for level in (logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR, logging.CRITICAL):
            log.log(level, "at %s", logging.getLevelName(level))
        stream.flush()
    finally:
        root.handlers[:], _ = saved
        root.setLevel(saved[1])
        stream.close()
    lines = (tmp_path / "stderr").read_text().splitlines()
    assert lines == ["<7>level=debug logger=test-journal at DEBUG", "<6>level=info logger=test-journal at INFO",
                     "<4>level=warning logger=test-journal at WARNING", "<3>level=error logger=test-journal at ERROR",
                     "<2>level=critical logger=test-journal at CRITICAL"]


def test_only_the_journals_own_stream_is_taken_for_the_journal(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    """JOURNAL_STREAM inherited by a command whose stderr goes elsewhere (a file, a pipe) is not the journal:
    its lines keep their timestamp and get no priority prefix."""
    from appliance.daemon.logs import stderr_is_journal

    stream = (tmp_path / "stderr").open("w")
    monkeypatch.setattr(sys, "stderr", stream)
    st = os.fstat(stream.fileno())
    assert stderr_is_journal({"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"})
    assert not stderr_is_journal({"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino + 1}"})
    assert not stderr_is_journal({"JOURNAL_STREAM": "garbage"})
    assert not stderr_is_journal({})
    stream.close()
