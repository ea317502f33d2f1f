"""Satellite state: tokens stored hashed and capped, reports applied in order and once, the outbox's cap."""

from __future__ import annotations

import json
import sqlite3
from ipaddress import IPv4Address
from pathlib import Path

import pytest

from domain import install_events
from domain import mirror as host_mirror
from domain import satellites as satellite_cases
from domain.bodies import parse_body
from domain.errors import Conflict, Invalid, NotFound
from domain.hosts import new_host_op
from domain.requests import SatelliteReports
from domain.views import view_json
from protocols.names import InvalidName
from state import outbox, satellites
from state.db import connect


@pytest.fixture
def conn(tmp_path: Path) -> sqlite3.Connection:
    c = connect(tmp_path / "imageserver.db")
    satellites.ensure_table(c)
    outbox.ensure_tables(c)
    return c


def test_a_token_is_shown_once_stored_hashed_and_opens_only_its_satellite(conn: sqlite3.Connection) -> None:
    token = satellites.add_op("edge", 1.0)(conn)
    other = satellites.add_op("rack2", 1.0)(conn)
    row = conn.execute("SELECT token_hash, rsync_secret FROM satellites WHERE name = 'edge'").fetchone()
    assert token not in tuple(row) and row[0] == satellites.token_hash(token)
    assert satellites.authenticate(conn, token) == "edge" and satellites.authenticate(conn, other) == "rack2"
    for wrong in (None, "", token[:-1], token + "x", "sat-" + "A" * 43, row[0], "x" * 10_000):
        assert satellites.authenticate(conn, wrong) is None
    with pytest.raises(satellites.SatelliteError, match="exists"):
        satellites.add_op("edge", 2.0)(conn)
    for bad in ("Edge", "-x", "a/b", "", "x" * 40):
        with pytest.raises(InvalidName, match="satellite name"):  # storage refuses it too (the rsync user)
            satellites.add_op(bad, 2.0)(conn)
        with pytest.raises(Invalid, match="satellite name"):  # the use case: the API's 400, the CLI's exit 2
            satellite_cases.add_op(bad, 2.0)
    assert satellites.remove_op("edge")(conn) and satellites.authenticate(conn, token) is None


def test_the_table_is_capped(conn: sqlite3.Connection) -> None:
    for i in range(satellites.MAX_SATELLITES):
        satellites.add_op(f"s{i}", 1.0)(conn)
    with pytest.raises(satellites.SatelliteError, match="at most"):
        satellites.add_op("one-more", 1.0)(conn)
    with pytest.raises(Conflict, match="at most"):
        satellite_cases.add_op("one-more", 1.0)(conn)


def test_the_use_cases_refuse_with_domain_errors(conn: sqlite3.Connection) -> None:
    satellite_cases.add_op("edge", 1.0)(conn)
    with pytest.raises(Conflict, match="exists"):
        satellite_cases.add_op("edge", 2.0)(conn)
    satellite_cases.remove_op("edge")(conn)
    with pytest.raises(NotFound, match="no satellite named edge"):
        satellite_cases.remove_op("edge")(conn)


def _event(eid: int, host: str, stage: str) -> dict[str, object]:
    return {"id": eid, "host": host, "mac": "52:54:00:00:00:01", "time": 100.0 + eid, "stage": stage, "detail": None}


def _reports_op(events: list[object]):  # type: ignore[no-untyped-def]
    """The primary's route: the batch parsed into its type, then the use case."""
    body = parse_body(SatelliteReports, {"events": events}, unknown="ignore")
    return satellite_cases.reports_op("edge", body.events)


def test_reports_apply_in_order_once_and_a_bad_batch_applies_nothing(conn: sqlite3.Connection) -> None:
    satellites.add_op("edge", 1.0)(conn)
    new_host_op("node1", "52:54:00:00:00:01", "web", IPv4Address("10.0.0.5"), 1.0)(conn)
    batch: list[object] = [_event(2, "node1", "done"), _event(1, "node1", "rsync"), _event(3, "ghost", "rsync")]
    assert _reports_op(batch)(conn) == (2, 1, 3)
    assert [r[0] for r in conn.execute("SELECT stage FROM install_events ORDER BY id")] == ["rsync", "done"]
    assert conn.execute("SELECT state FROM hosts WHERE name = 'node1'").fetchone()[0] == "installed"
    # A replay (the satellite missed our answer) changes nothing.
    assert _reports_op(batch)(conn) == (0, 0, 3)
    assert conn.execute("SELECT count(*) FROM install_events").fetchone()[0] == 2
    # Each refusal names the event (its index in the batch) and the key.
    for bad, words in (({"id": "4", "host": "node1", "stage": "rsync", "time": 1},
                        r'"events\[1\].id" must be an integer'),
                       ({**_event(4, "node1", "rsync"), "id": 0}, r'"events\[1\].id": Expected `int` >= 1'),
                       ({**_event(4, "node1", "rsync"), "host": "x" * 65}, r'"events\[1\].host": Expected `str`'),
                       ({**_event(4, "node1", "rsync"), "time": True}, r'"events\[1\].time" must be a number'),
                       (_event(4, "node1", "Bad Stage"), r"events\[1\]: stage 'Bad Stage'"),
                       ({**_event(4, "node1", "rsync"), "detail": "x" * 9000},
                        r'"events\[1\].detail" is longer than 8192'),
                       ("nope", r'"events\[1\]" must be an object')):
        with pytest.raises(Invalid, match=words):
            _reports_op([_event(5, "node1", "rsync"), bad])(conn)
    assert conn.execute("SELECT count(*) FROM install_events").fetchone()[0] == 2
    # An object as detail is kept as its JSON.
    assert _reports_op([{**_event(6, "node1", "failed"), "detail": {"stage": "rsync"}}])(conn) == (1, 0, 6)
    assert json.loads(conn.execute("SELECT detail FROM install_events ORDER BY id DESC").fetchone()[0]) == {
        "stage": "rsync", "reason": "no reason given"}
    # A bare relayed failure is stored as the primary's own installer's: with its stage (the last one
    # reported) and a reason.
    assert _reports_op([_event(7, "node1", "failed")])(conn) == (1, 0, 7)
    stored = json.loads(conn.execute("SELECT detail FROM install_events ORDER BY id DESC").fetchone()[0])
    assert stored == {"stage": "rsync", "reason": "no reason given"}, stored


def _local_event(conn: sqlite3.Connection, stage: str) -> None:
    conn.execute("INSERT INTO install_events(host, mac, time, stage, detail) VALUES ('n', NULL, 1, ?, NULL)", (stage,))


def test_the_outbox_copies_new_events_once_and_acks_remove_them(conn: sqlite3.Connection) -> None:
    _local_event(conn, "rsync")  # before this appliance became a satellite: not the primary's business
    assert outbox.collect_op()(conn) == 0
    for stage in ("partition", "rsync", "done"):
        _local_event(conn, stage)
    assert outbox.collect_op()(conn) == 3 and outbox.collect_op()(conn) == 0
    rows = outbox.pending(conn, 10)
    assert [r.stage for r in rows] == ["partition", "rsync", "done"]
    outbox.ack_op(rows[1].id)(conn)
    assert [r.stage for r in outbox.pending(conn, 10)] == ["done"] and outbox.backlog(conn) == 1


def test_a_full_outbox_drops_progress_before_final_reports(conn: sqlite3.Connection) -> None:
    outbox.collect_op(cap=3)(conn)
    for stage in ("rsync", "done", "rsync", "failed", "rsync", "done"):
        _local_event(conn, stage)
    outbox.collect_op(cap=3)(conn)
    assert [r.stage for r in outbox.pending(conn, 10)] == ["done", "failed", "done"]
    assert outbox.dropped(conn) == 3 and outbox.backlog(conn) == 3
    _local_event(conn, "rsync")  # all final: the new progress row is the one dropped
    outbox.collect_op(cap=3)(conn)
    assert [r.stage for r in outbox.pending(conn, 10)] == ["done", "failed", "done"] and outbox.dropped(conn) == 4


def _mirror(hosts: list[dict[str, object]], now: float, *, complete: bool = False):  # type: ignore[no-untyped-def]
    """The satellite's service: the primary's config document, checked, then applied."""
    return host_mirror.mirror_hosts_op({"hosts": hosts, "hosts_complete": complete, "images": []}, now)


def test_the_host_mirror_adds_updates_and_reinstalls_only_on_news(conn: sqlite3.Connection) -> None:
    hosts = [{"name": "node1", "mac": "52:54:00:00:00:01", "ip": "10.1.0.20", "image": "web", "version": None,
              "state": "assigned", "updated": 10.0},
             {"name": "node2", "mac": "52:54:00:00:00:02", "ip": None, "image": "web", "version": 1,
              "state": "installed", "updated": 10.0}]
    assert _mirror(hosts, 20.0)(conn) == (2, 0, 0, 0)
    rows = {r[0]: r[1:] for r in conn.execute("SELECT name, state, install_token IS NOT NULL, ip FROM hosts")}
    assert rows == {"node1": ("assigned", 1, int(IPv4Address("10.1.0.20"))), "node2": ("installed", 0, None)}
    install_events.record_op("node1", "52:54:00:00:00:01", 30.0, "done", None)(conn)
    assert _mirror(hosts, 40.0)(conn) == (0, 0, 0, 0)  # the primary's news is older than our done
    moved = [{**hosts[0], "ip": "10.1.0.21", "updated": 50.0}, hosts[1]]
    assert _mirror(moved, 60.0)(conn) == (0, 1, 1, 0)  # reinstall asked on the primary after it
    assert conn.execute("SELECT state FROM hosts WHERE name = 'node1'").fetchone()[0] == "assigned"
    for bad, words in (([{"name": "x", "state": "bogus"}], r"\"hosts\[0\].state\" 'bogus' is not a host state"),
                       ([hosts[0], {"name": "x", "state": "new", "ip": "999.1.1.1"}],
                        r"\"hosts\[1\].ip\": '999.1.1.1' is not an IPv4 address"),
                       ([{"name": "", "state": "new"}], r'"hosts\[0\].name": Expected `str` of length >= 1'),
                       ([{"name": "x", "state": "new", "version": "1"}], r'"hosts\[0\].version" must be an integer'),
                       ("nope", r'"hosts" must be a list')):
        with pytest.raises(Invalid, match=words):
            host_mirror.mirror_hosts_op({"hosts": bad}, 70.0)


def test_a_host_the_primary_removed_goes_from_the_satellite_when_the_list_is_whole(conn) -> None:
    """Only hosts that came from the primary, only from a whole list: local hosts and a cut list keep theirs."""
    def host(name: str, n: int) -> dict[str, object]:
        return {"name": name, "mac": f"52:54:00:00:00:0{n}", "ip": None, "image": "web", "version": 1,
                "state": "assigned", "updated": 10.0}

    new_host_op("local1", "52:54:00:00:00:09", "web", None, 5.0)(conn)  # the satellite's own
    assert _mirror([host("node1", 1), host("node2", 2)], 20.0, complete=True)(conn) == (2, 0, 0, 0)
    # A list cut at the primary's cap (or from a primary that does not say it is whole) removes nothing.
    assert _mirror([host("node1", 1)], 30.0, complete=False)(conn)[3] == 0
    assert {r[0] for r in conn.execute("SELECT name FROM hosts")} == {"local1", "node1", "node2"}
    assert _mirror([host("node1", 1)], 40.0, complete=True)(conn) == (0, 0, 0, 1)
    assert {r[0] for r in conn.execute("SELECT name FROM hosts")} == {"local1", "node1"}
    assert _mirror([], 50.0, complete=True)(conn)[3] == 1
    assert {r[0] for r in conn.execute("SELECT name FROM hosts")} == {"local1"}, "the satellite's own host stays"


def test_satellite_config_names_the_key_and_the_token_file_must_be_private(tmp_path: Path) -> None:
    import tomllib

    from appliance.config import ConfigError, parse_config
    from appliance.daemon.satellite import read_token

    def cfg(text: str):  # type: ignore[no-untyped-def]
        return parse_config(tomllib.loads(f'[appliance]\nstate_dir = "{tmp_path}"\n' + text))

    assert cfg("").satellite.primary == ""
    assert cfg('[satellite]\nprimary = "http://10.0.0.1/"\n').satellite.primary == "http://10.0.0.1"
    for bad, key in (('primary = "10.0.0.1"', "satellite.primary"), ("interval = 0", "satellite.interval"),
                     ("outbox_cap = 5", "satellite.outbox_cap"), ("nope = 1", "satellite.nope")):
        with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
            cfg(f"[satellite]\n{bad}\n")
    c = cfg('[satellite]\nprimary = "http://10.0.0.1"\n')
    with pytest.raises(ConfigError, match="cannot read"):
        read_token(c)
    token_file = tmp_path / "satellite.token"
    token_file.write_text("sat-abc\n")
    token_file.chmod(0o644)
    with pytest.raises(ConfigError, match="readable by others"):
        read_token(c)
    token_file.chmod(0o600)
    assert read_token(c) == "sat-abc"
    token_file.write_text("not a token\n")
    with pytest.raises(ConfigError, match="does not hold a satellite token"):
        read_token(c)


def test_the_primary_says_whether_its_host_list_is_whole(conn) -> None:
    from domain.satellites import satellite_config

    for i in range(3):
        new_host_op(f"node{i}", f"52:54:00:00:01:0{i}", "web", None, 5.0)(conn)
    assert satellite_config(conn, "rack2", 3, 873).hosts_complete
    cut = satellite_config(conn, "rack2", 2, 873)
    assert len(cut.hosts) == 2 and not cut.hosts_complete and view_json(cut)["hosts_complete"] is False
