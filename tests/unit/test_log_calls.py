"""Every log line of ours is an event with structured fields (state/eventlog.py), none a format string:
the JSON log has its fields from the record, and nothing parses them back out of text."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LAYERS = ("appliance", "services", "domain", "state", "protocols")
LEVELS = {"debug", "info", "warning", "error", "exception", "critical", "log"}


def _sources() -> list[Path]:
    return sorted(p for layer in LAYERS for p in (ROOT / layer).rglob("*.py"))


def _is_get_logger(node: ast.AST) -> bool:
    return (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "getLogger"
            and isinstance(node.func.value, ast.Name) and node.func.value.id == "logging")


def test_module_loggers_are_event_logs() -> None:
    bad = []
    for path in _sources():
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.Assign) and _is_get_logger(node.value):
                bad.append(f"{path.relative_to(ROOT)}:{node.lineno}: use state.eventlog.EventLog(name)")
    assert not bad, "\n".join(bad)


def test_no_log_call_formats_fields_into_its_message() -> None:
    bad = []
    for path in _sources():
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in LEVELS):
                continue
            for arg in node.args:
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str) and (
                        "%" in arg.value or "=" in arg.value or " " in arg.value):
                    bad.append(f"{path.relative_to(ROOT)}:{node.lineno}: {arg.value[:60]!r}: pass fields as keywords")
    assert not bad, "\n".join(bad)
