"""`imageserver watch`: every page of the API is read (not only the first 1,000 hosts); on a terminal the view
fits the screen (a header and one page of hosts, each line cut to the width, pages in turn); --json prints one
JSON object per host change."""

from __future__ import annotations

import argparse
import json
from typing import Any

import pytest

from appliance.cli.commands import watch


def fleet(n: int, state: str = "installed") -> list[dict[str, Any]]:
    return [{"name": f"node{i:04d}", "state": state, "progress": {"stage": "done"}} for i in range(n)]


class PagedApi:
    """The hosts API's paging: ?limit= at most 1000, next_offset until the last page."""

    def __init__(self, hosts: list[dict[str, Any]]) -> None:
        self.hosts, self.asked = hosts, []

    def get(self, path: str) -> dict[str, Any]:
        query = dict(p.split("=") for p in path.split("?")[1].split("&"))
        limit, offset = min(int(query["limit"]), 1000), int(query["offset"])
        self.asked.append(offset)
        page = self.hosts[offset:offset + limit]
        nxt = offset + len(page) if offset + len(page) < len(self.hosts) else None
        return {"hosts": page, "total": len(self.hosts), "offset": offset, "limit": limit, "next_offset": nxt}


def test_every_page_is_read() -> None:
    api = PagedApi(fleet(2500))
    assert len(watch.all_hosts(api)) == 2500  # type: ignore[arg-type]
    assert api.asked == [0, 1000, 2000]


def test_the_screen_fits_the_terminal_and_pages_through_every_host() -> None:
    hosts = fleet(95) + fleet(5, "failed")
    seen: set[str] = set()
    page = 0
    for _ in range(5):
        lines, drawn = watch.screen(hosts, rows=25, cols=60, page=page)
        assert len(lines) <= 25 and all(len(line) <= 60 for line in lines)
        assert lines[0].startswith(f"hosts {drawn * 24 + 1}-") and "installed 95 \u00b7 failed 5" in lines[0]
        seen.update(line.split()[0] for line in lines[1:])
        page = drawn + 1
    assert seen == {h["name"] for h in hosts}  # 100 hosts, 24 a page: five pages show them all
    lines, drawn = watch.screen(hosts, rows=25, cols=60, page=5)
    assert drawn == 0  # after the last page, the first again
    small, _ = watch.screen(fleet(3), rows=25, cols=200, page=7)
    assert len(small) == 4 and small[0].startswith("3 hosts")


def test_json_lines_one_object_per_change(monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    rounds = [fleet(3, "installing"), fleet(2, "installing") + fleet(3, "installed")[2:],
              fleet(3, "installed")]

    class Api:
        def get(self, path: str) -> dict[str, Any]:
            hosts = rounds.pop(0) if len(rounds) > 1 else rounds[0]
            return {"hosts": hosts, "next_offset": None}

    monkeypatch.setattr(watch, "load", lambda args: None)
    monkeypatch.setattr(watch.ApiClient, "from_config", staticmethod(lambda cfg: Api()))
    parser = argparse.ArgumentParser()
    watch.register(parser.add_subparsers())
    args = parser.parse_args(["watch", "--json", "--until-done", "--interval", "0", "node[0000-0002]"])
    assert watch.run(args) == 0
    out = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(o["name"], o["state"]) for o in out] == [
        ("node0000", "installing"), ("node0001", "installing"), ("node0002", "installing"),
        ("node0002", "installed"), ("node0000", "installed"), ("node0001", "installed")]
