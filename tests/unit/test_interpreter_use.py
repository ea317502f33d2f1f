"""Every process that runs project code uses the venv's interpreter, and the version has one source.

On a fresh box the `python3` on PATH is an interpreter without aiohttp or dnslib: a daemon, CLI or helper
started as a bare `python3 -m appliance.cli ...` dies there with ModuleNotFoundError, while it passes on a
machine that happens to have the packages installed system-wide. So the tree is scanned for that shape.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

from appliance.daemon.runtime import VERSION

ROOT = Path(__file__).resolve().parents[2]
SKIP_DIRS = {".git", ".venv", "build", "node_modules", ".pytest_cache", ".ruff_cache"}
BARE = r"python(?:3(?:\.\d+)?)?"
# An interpreter word where a shell would run it (line start, after ; & | ( `, exec, nsenter or env), then a flag
# or a script path.
SHELL_LAUNCH = re.compile(r"(?:^|[;&|(`]\s*|\bexec\s+|\bnsenter\b.*?\s|\benv\s+(?:\S+=\S+\s+)*)"
                          rf"({BARE})\s+(?:-[mcuBI]|\S+\.py\b)")
ARGV_WORD = re.compile(rf"^{BARE}$")


def project_files(suffix: str) -> list[Path]:
    return sorted(p for p in ROOT.rglob(f"*{suffix}")
                  if not SKIP_DIRS.intersection(p.relative_to(ROOT).parts) and p != Path(__file__).resolve())


def shown(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else path.name


def docstring_nodes(tree: ast.AST) -> set[int]:
    """Docstrings tell a person how to run a script; they start nothing."""
    ids: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                ids.add(id(first.value))
    return ids


def argv_interpreters(node: ast.List | ast.Tuple) -> list[ast.Constant]:
    """`["python3", ...]`, or `[..., "python3", "-m"|"-c"|"x.py", ...]` after a launcher such as nsenter or env."""
    items = node.elts
    hits = []
    for i, item in enumerate(items):
        if not (isinstance(item, ast.Constant) and isinstance(item.value, str) and ARGV_WORD.match(item.value)):
            continue
        after = items[i + 1] if i + 1 < len(items) else None
        flag_next = (isinstance(after, ast.Constant) and isinstance(after.value, str)
                     and (after.value.startswith("-") or after.value.endswith(".py")))
        if i == 0 or flag_next:
            hits.append(item)
    return hits


def bare_launches_in_python(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    docs = docstring_nodes(tree)
    hits: list[ast.Constant] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.List | ast.Tuple):
            hits.extend(argv_interpreters(node))
        elif (isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs
              and any(SHELL_LAUNCH.search(line) for line in node.value.splitlines())):
            hits.append(node)
    hits.sort(key=lambda n: n.lineno)
    return [f"{shown(path)}:{node.lineno}: {node.value.strip()[:80]!r}" for node in hits]


def bare_launches_in_shell(path: Path) -> list[str]:
    found = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        code = line.split("#", 1)[0]
        if SHELL_LAUNCH.search(code.strip()):
            found.append(f"{shown(path)}:{number}: {line.strip()[:80]!r}")
    return found


def test_no_python_file_starts_a_bare_python_interpreter() -> None:
    found = [hit for path in project_files(".py") for hit in bare_launches_in_python(path)]
    assert not found, "use sys.executable (the venv's interpreter), not a bare python3:\n" + "\n".join(found)


def test_no_shell_script_starts_a_bare_python_interpreter() -> None:
    found = [hit for path in project_files(".sh") for hit in bare_launches_in_shell(path)]
    assert not found, "shell scripts must not run project code with a bare python3:\n" + "\n".join(found)


def test_the_scanner_catches_each_shape_it_is_meant_to(tmp_path: Path) -> None:
    """The check above can fail: each known bad shape is found, the good ones are not."""
    sample = tmp_path / "sample.py"
    sample.write_text(
        '"""Run: python3 -m tests.fuzz.campaign (a docstring: fine)."""\n'
        'import sys\n'
        'a = ["python3", "-m", "appliance.cli"]\n'
        'b = f"mount x && exec python3 -m appliance.cli serve"\n'
        'c = "nsenter --mount=/proc/1/ns/mnt python3 -c pass"\n'
        'd = [sys.executable, "-m", "appliance.cli"]\n'
        'e = "users:((\\"python3\\",pid=900,fd=7))"\n'
        'f = Holder(900, "python3")\n'
        'g = ("dnsperf", "python")\n'
        'h = ["env", "PATH=/x", "python3", "-m", "appliance.cli"]\n'
    )
    hits = bare_launches_in_python(sample)
    assert [h.split(":")[1] for h in hits] == ["3", "4", "5", "10"], hits


def test_version_comes_from_the_package_metadata() -> None:
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert VERSION == metadata.version("imageserver") == declared
    out = subprocess.run([sys.executable, "-m", "appliance.cli", "--version"], capture_output=True, text=True,
                         cwd=ROOT, check=True, timeout=60).stdout
    assert out.strip() == f"imageserver {declared}"


def test_no_second_copy_of_the_version_in_the_product() -> None:
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    literal = re.compile(rf"""["']{re.escape(declared)}["']""")
    copies = [str(p.relative_to(ROOT)) for layer in ("appliance", "services", "protocols", "state")
              for p in (ROOT / layer).rglob("*.py") if literal.search(p.read_text())]
    assert not copies, f"version {declared} hard-coded in {copies}; read it with importlib.metadata"
