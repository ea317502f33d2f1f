"""No SQL outside state/: state/ is the single owner of persistence (DESIGN.md), so the API handlers, the
use cases (domain/) and the CLI read and write through state/ functions, never with statements of their own.

The tree is scanned for what SQL looks like in Python: a string that starts like a statement, and calls
of a connection's execute family or the store's raw read helpers.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LAYERS = ("appliance", "services", "domain")
STATEMENT = re.compile(r"^\s*(SELECT\s.+\sFROM|INSERT\s+(OR\s+\w+\s+)?INTO|UPDATE\s+\w+\s+SET|DELETE\s+FROM|"
                       r"CREATE\s+(TABLE|INDEX)|ALTER\s+TABLE|DROP\s+TABLE|PRAGMA\s|BEGIN(\s+IMMEDIATE)?\b|"
                       r"COMMIT\b|ROLLBACK\b)", re.S)
CALLS = {"execute", "executemany", "executescript", "read_one"}


def _strings(node: ast.AST) -> list[str]:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, ast.JoinedStr):  # an f-string: its literal parts, joined
        return ["".join(v.value for v in node.values if isinstance(v, ast.Constant) and isinstance(v.value, str))]
    return []


def sql_uses(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in CALLS:
            out.append(f"{node.lineno}: .{node.func.attr}(...)")
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "read" \
                and isinstance(node.func.value, ast.Attribute) and node.func.value.attr == "store":
            out.append(f"{node.lineno}: store.read(...)")
        for text in _strings(node):
            if STATEMENT.match(text):
                out.append(f"{node.lineno}: {text[:60]!r}")
    return out


def test_no_sql_outside_state() -> None:
    bad = [f"{p.relative_to(ROOT)}:{use}" for layer in LAYERS for p in sorted((ROOT / layer).rglob("*.py"))
           for use in sql_uses(p)]
    assert not bad, "SQL belongs in state/:\n" + "\n".join(bad)


def test_the_scan_sees_sql(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text('def f(conn, name):\n'
                      '    conn.execute("SELECT ip FROM hosts WHERE name = ?", (name,))\n'
                      '    table = "leases"\n'
                      '    q = f"DELETE FROM {table} WHERE mac = ?"\n'
                      '    return ctx.store.read("x")\n')
    found = sql_uses(sample)
    assert any(".execute" in f for f in found) and any("DELETE" in f for f in found)
    assert any("SELECT" in f for f in found) and any("store.read" in f for f in found)
