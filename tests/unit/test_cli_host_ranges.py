"""NODES: `hosts show/set/rm` take a host range (ClusterShell's NodeSet syntax) and answer per host; an unknown
host in the range is that host's error, the others are done. Offline (the daemon down), on the state database."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from appliance.cli.commands._nodes import BadNodes, expand_nodes
from tests.unit.test_cli_leases_offline import config, run  # noqa: F401  (the fixture and the runner)


def test_expand_nodes_hostlist_syntax() -> None:
    assert expand_nodes("node[001-003]") == ["node001", "node002", "node003"]
    assert expand_nodes("rack[1-2]-n[01-02]") == ["rack1-n01", "rack1-n02", "rack2-n01", "rack2-n02"]
    assert expand_nodes("node7,node1,gpu[1-2]") == ["gpu1", "gpu2", "node1", "node7"]
    assert expand_nodes("node1") == ["node1"]
    assert len(expand_nodes("node[001-300]")) == 300
    for bad in ("node[3-", "node[a-b]", "", "@compute"):
        with pytest.raises(BadNodes):
            expand_nodes(bad)


def test_set_show_rm_a_range_per_host(config: Path, capsys: pytest.CaptureFixture[str]) -> None:  # noqa: F811
    for i in (1, 2, 3):
        code, _, err = run(config, capsys, "hosts", "add", f"node{i}", "--mac", f"52:54:00:00:00:0{i}")
        assert code == 0, err
    # node4 does not exist: its own error, the three others changed; exit 1 says not all went well
    code, out, err = run(config, capsys, "hosts", "set", "node[1-4]", "--state", "failed", "--json")
    assert code == 1, err
    results = {r["host"]: r for r in json.loads(out)}
    assert [results[f"node{i}"]["ok"] for i in (1, 2, 3, 4)] == [True, True, True, False]
    assert results["node1"]["result"]["state"] == "failed"
    assert "node4" in results["node4"]["error"] and "Traceback" not in err
    code, out, _ = run(config, capsys, "hosts", "list", "--json")
    assert {h["name"]: h["state"] for h in json.loads(out)} == {f"node{i}": "failed" for i in (1, 2, 3)}

    code, out, _ = run(config, capsys, "hosts", "set", "node1,node9", "--state", "installed")
    assert code == 1
    lines = out.splitlines()
    assert lines[0].split() == ["HOST", "RESULT", "DETAIL"]
    assert lines[1].split()[:2] == ["node1", "ok"] and lines[2].split()[:2] == ["node9", "FAILED"]

    code, out, _ = run(config, capsys, "hosts", "show", "node[1-2]", "--json")
    assert code == 0 and [(r["host"], r["result"]["name"]) for r in json.loads(out)] == [
        ("node1", "node1"), ("node2", "node2")]

    code, out, _ = run(config, capsys, "hosts", "rm", "node[2-5]", "--json")
    assert code == 1
    assert [(r["host"], r["ok"]) for r in json.loads(out)] == [
        ("node2", True), ("node3", True), ("node4", False), ("node5", False)]
    code, out, _ = run(config, capsys, "hosts", "list", "--json")
    assert [h["name"] for h in json.loads(out)] == ["node1"]

    # one plain name: the output of before ranges
    code, out, _ = run(config, capsys, "hosts", "set", "node1", "--state", "failed")
    assert code == 0 and out.startswith("host node1: failed")
    code, _, err = run(config, capsys, "hosts", "set", "node[1-", "--state", "failed")
    assert code == 2 and "host range" in err and "Traceback" not in err
