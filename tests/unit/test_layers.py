"""The architecture is the folder layout: imports point one way (DESIGN.md), and protocols/ stays sans-IO."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
OURS = {"appliance", "services", "domain", "protocols", "state", "lab", "tests", "bench"}
# What each layer may import of ours. domain/ holds the use cases between the front ends (services'
# handlers, appliance's commands) and the model; lab/, tests/ and bench/ may import the product, never the reverse.
ALLOWED = {
    "appliance": {"appliance", "services", "domain", "protocols", "state"},
    "services": {"services", "domain", "protocols", "state"},
    "domain": {"domain", "protocols", "state"},
    "protocols": {"protocols"},
    "state": {"state", "protocols"},  # protocols' pure rules (the one MAC normaliser, host names)
}
# Sans-IO: no sockets, no event loop, no clock, no subprocesses in protocols/.
FORBIDDEN_IN_PROTOCOLS = {"asyncio", "socket", "time", "subprocess", "selectors", "threading", "aiohttp", "aiofiles"}


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    out: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.extend((node.lineno, alias.name.split(".")[0]) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.append((node.lineno, node.module.split(".")[0]))
    return out


def _modules(layer: str) -> list[Path]:
    return sorted((ROOT / layer).rglob("*.py"))


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_imports_point_one_way(layer: str) -> None:
    bad = [f"{p.relative_to(ROOT)}:{line} imports {name}"
           for p in _modules(layer) for line, name in _imports(p)
           if name in OURS and name not in ALLOWED[layer]]
    assert not bad, "\n".join(bad)


def test_protocols_do_no_io() -> None:
    bad = [f"{p.relative_to(ROOT)}:{line} imports {name}"
           for p in _modules("protocols") for line, name in _imports(p) if name in FORBIDDEN_IN_PROTOCOLS]
    assert not bad, "\n".join(bad)


def test_every_layer_has_code() -> None:
    for layer in ALLOWED:
        assert len(_modules(layer)) > 1, f"{layer}/ is empty"
