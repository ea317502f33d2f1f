"""Request bodies parsed into their dataclasses: shape errors name the key, machines' bodies tolerate new keys."""

from __future__ import annotations

from ipaddress import IPv4Address

import pytest

from domain.bodies import parse_body
from domain.errors import Invalid
from domain.hosts import AddHost
from domain.requests import AssignBody, HostChange, InstallEvent, SatelliteReports, UpdateEvent


def refused(cls: type, body: object, **kw: str) -> str:
    with pytest.raises(Invalid) as caught:
        parse_body(cls, body, **kw)  # type: ignore[arg-type]
    return str(caught.value)


def test_a_body_that_fits_becomes_its_dataclass() -> None:
    event = parse_body(InstallEvent, {"stage": "rsync", "detail": {"text": "copy"}, "bytes": 5, "total": 9})
    assert event == InstallEvent("rsync", {"text": "copy"}, 5, 9)
    host = parse_body(AddHost, {"name": "n1", "mac": "52:54:00:00:00:01", "ip": "10.0.0.5"})
    assert host.ip == IPv4Address("10.0.0.5") and host.image is None
    assert parse_body(UpdateEvent, {"stage": "done", "version": "v3"}).version == "v3"  # int | str
    assert parse_body(UpdateEvent, {"stage": "done", "version": 3}).version == 3
    reports = parse_body(SatelliteReports, {"events": [{"id": 1, "host": "n1", "stage": "done", "time": 5}]})
    assert reports.events[0].time == 5.0 and reports.events[0].mac is None
    assert parse_body(SatelliteReports, {}).events == []


@pytest.mark.parametrize(("cls", "body", "message"), [
    (InstallEvent, [], "the body must be a JSON object"),
    (InstallEvent, {}, '"stage" is required'),
    (InstallEvent, {"stage": 3}, '"stage" must be a string, not a number'),
    (InstallEvent, {"stage": "progress", "bytes": "5"}, '"bytes" must be an integer, not a string'),
    (InstallEvent, {"stage": "progress", "bytes": True}, '"bytes" must be an integer, not a boolean'),
    (AssignBody, {"next": 1}, '"next" must be true or false, not a number'),
    (HostChange, {"imgae": "x"}, '"imgae" is an unknown field (accepted: mac, ip, image, version, state, '
                                 'transport, profile, kernel_args)'),
    (AddHost, {"name": "n", "mac": "52:54:00:00:00:01", "ip": "10.0.0.300"}, "'10.0.0.300' is not an IPv4 address"),
    (UpdateEvent, {"stage": "done", "version": [3]}, '"version" must be an integer or a string'),
    (SatelliteReports, {"events": {}}, '"events" must be a list'),
    (SatelliteReports, {"events": [{"id": 1, "host": "n1", "stage": "done"}]}, '"events[0].time" is required'),
    (SatelliteReports, {"events": [7]}, '"events[0]" must be an object'),
    (SatelliteReports, {"versions": ["a", 2]}, '"versions[1]" must be a string, not a number'),
])
def test_what_does_not_fit_is_refused_naming_the_key(cls: type, body: object, message: str) -> None:
    assert message in refused(cls, body)


def test_machines_bodies_ignore_keys_this_server_does_not_know() -> None:
    # An installer or satellite newer than the server may send more; an operator's typo is refused.
    event = parse_body(InstallEvent, {"stage": "rsync", "eta": 30}, unknown="ignore")
    assert event.stage == "rsync"
    body = {"events": [{"id": 1, "host": "n1", "stage": "done", "time": 5, "rack": "r2"}], "load": 0.5}
    assert parse_body(SatelliteReports, body, unknown="ignore").events[0].host == "n1"
    assert "unknown field" in refused(InstallEvent, {"stage": "rsync", "eta": 30})
