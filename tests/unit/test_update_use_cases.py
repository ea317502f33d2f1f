"""domain/updates.py: which version updateclient syncs a host to, and what a report may say (the rules the
update routes call; the routes themselves are tested in tests/service/test_update_api.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from domain import updates
from domain.errors import Conflict, Invalid, NotFound
from domain.hosts import new_host_op
from state.db import connect


@pytest.fixture
def conn(tmp_path: Path):  # -> sqlite3.Connection
    c = connect(tmp_path / "db.sqlite")
    new_host_op("web1", "52:54:00:00:00:01", "web", None, 100.0)(c)
    new_host_op("bare", "52:54:00:00:00:02", None, None, 100.0)(c)
    for name, version in (("web", 1), ("web", 2), ("db", 5)):
        c.execute("INSERT INTO images(name, version, path, created) VALUES (?, ?, '/x', 0)", (name, version))
    yield c
    c.close()


def test_the_target_is_the_assignment_or_the_version_named(conn) -> None:
    assert updates.update_target(conn, "web1") == updates.UpdateTarget("web1", "web", 2, True)  # the newest
    assert updates.update_target(conn, "web1", None, "v1") == updates.UpdateTarget("web1", "web", 1, False)
    assert updates.update_target(conn, "web1", "db") == updates.UpdateTarget("web1", "db", 5, False)
    assert updates.update_target(conn, "web1", "web", 2).module == "web_v2"


def test_a_target_that_cannot_be_named_is_a_conflict_and_an_unknown_host_not_found(conn) -> None:
    with pytest.raises(NotFound, match="no host named 'nobody'"):
        updates.update_target(conn, "nobody")
    refused = [(("bare",), "has no image"), (("web1", "web", 9), r"no version 9 \(captured: v1, v2\)"),
               (("web1", "nope"), "has no captured version")]
    for args, why in refused:
        with pytest.raises(Conflict, match=why):
            updates.update_target(conn, *args)
    for version in ("0", "v-1", "x", True):  # a malformed request: the API's 400, naming the query's key
        with pytest.raises(Invalid, match=r'^"version" must be a positive integer \(N or vN\), not '):
            updates.update_target(conn, "web1", None, version)
    with pytest.raises(Invalid, match=r'^"image": '):  # a malformed image name is the request's fault too
        updates.update_target(conn, "web1", "../x")


def test_a_report_is_checked_and_its_detail_kept_short() -> None:
    assert updates.check_report("done", "web", "v2", None) == updates.UpdateReport("done", "web", 2, None)
    long = updates.check_report("failed", None, None, "x" * 9000 + "end")
    assert long.detail is not None and len(long.detail) == updates.MAX_DETAIL and long.detail.endswith("end")
    for stage, image, version, detail, why in (("begin", None, None, None, "stage must be one of"),
                                               ("autoinstall", None, None, None, "POST .../autoinstall"),
                                               ("start", "bad name!", None, None, "image"),
                                               ("start", None, True, None, "not a positive integer"),
                                               ("start", None, None, 7, "detail must be a string")):
        with pytest.raises(Invalid, match=why):
            updates.check_report(stage, image, version, detail)
