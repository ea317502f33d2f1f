"""Log lines: key=value messages become JSON fields; quoted values (%r) stay one field."""

from __future__ import annotations

import json
import logging

from appliance.logs import _JsonFormatter, _KeyValueFormatter, split_fields


def _record(msg: str, *args: object) -> logging.LogRecord:
    return logging.LogRecord("imageserver.test", logging.INFO, __file__, 1, msg, args, None)


def test_quoted_values_with_spaces_quotes_and_backslashes_are_one_field() -> None:
    reason = 'it\'s "odd" \\ here'
    fields, rest = split_fields(f"event=x reason={reason!r} mac=aa:bb hint='two words'")
    assert fields == {"event": "x", "reason": reason, "mac": "aa:bb", "hint": "two words"}
    assert rest == ""


def test_words_that_are_not_fields_are_kept_in_order_as_the_message() -> None:
    fields, rest = split_fields("tftp refused peer=10.0.0.5:1234 reason='no such file' (retrying) later")
    assert fields == {"peer": "10.0.0.5:1234", "reason": "no such file"}
    assert rest == "tftp refused (retrying) later"
    assert split_fields("empty= x") == ({"empty": ""}, "x")
    assert split_fields("unterminated='abc def") == ({"unterminated": "abc def"}, "")


def test_json_lines_are_objects_whose_fields_never_replace_time_level_logger() -> None:
    line = _JsonFormatter().format(_record("event=install-done hostname=%s mac=%s level=%s", "node1",
                                           "52:54:00:12:34:56", "fake"))
    obj = json.loads(line)
    assert obj["event"] == "install-done" and obj["hostname"] == "node1" and obj["mac"] == "52:54:00:12:34:56"
    assert obj["level"] == "info" and obj["logger"] == "imageserver.test" and isinstance(obj["time"], float)
    assert "\n" not in line


def test_text_lines_carry_level_and_short_logger() -> None:
    line = _KeyValueFormatter(with_time=False).format(_record("event=ready version=%s", "1"))
    assert line == "level=info logger=test event=ready version=1"
