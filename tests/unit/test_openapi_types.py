"""The OpenAPI schemas of the routes answering with domain views are generated from those dataclasses; the
JSON the dataclasses render has exactly the declared fields, with the declared JSON types, so document and
responses cannot drift apart."""

from __future__ import annotations

import json
import time
from dataclasses import replace
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any

from appliance.daemon.wiring import api_route_modules
from domain import hosts, install_events, machines
from domain.images import catalog
from domain.leases import OneReservation, ReservationView, lease_list, reservation_list
from domain.metrics import PoolList, PoolUsage
from domain.paging import Page
from domain.satellites import ReportsReceipt, SatelliteAdded, SatelliteRemoved, satellite_config
from domain.sources import Sources
from domain.status import BittorrentStatus, SatelliteView, Seeder, Status, StoreHealth, Transports
from domain.updates import Reinstall, UpdateRecorded, UpdateTarget, UpdateTargetView
from domain.views import view_json
from services.openapi import document
from state import satellites
from state.boot import BootPolicy
from state.db import connect
from state.images import ImageVersion, insert_version
from state.lease_pools import PoolSpec
from state.lease_rows import Lease, Reservation
from state.leases import LeaseModel
from state.satellites import Satellite

OPENAPI = document([route for module in api_route_modules() for route in module])
SCHEMAS = OPENAPI["components"]["schemas"]

_JSON_TYPES = {"string": str, "integer": int, "number": (int, float), "boolean": bool, "object": dict,
               "array": list}


def conforms(value: dict[str, Any], name: str) -> None:
    json.dumps(value)  # plain JSON all the way down (a view left inside would be a 500)
    schema = SCHEMAS[name]
    assert set(value) <= set(schema["properties"]), f"{name}: undeclared {set(value) - set(schema['properties'])}"
    assert set(schema.get("required", ())) <= set(value), f"{name}: missing {set(schema['required']) - set(value)}"
    for key, item in value.items():
        prop = schema["properties"][key]
        if item is None:
            assert prop.get("nullable"), f"{name}.{key} is null but not nullable"
        elif "$ref" in prop:
            conforms(item, prop["$ref"].rsplit("/", 1)[1])
        elif prop.get("type"):
            assert isinstance(item, _JSON_TYPES[prop["type"]]), f"{name}.{key}: {item!r} is no {prop['type']}"
            if prop["type"] == "array" and "$ref" in prop["items"]:
                for element in item:
                    conforms(element, prop["items"]["$ref"].rsplit("/", 1)[1])


def test_every_generated_reference_resolves() -> None:
    text = repr(OPENAPI)
    for name in SCHEMAS:
        assert name in OPENAPI["components"]["schemas"]
    assert "#/components/schemas/HostView" in text and "#/components/schemas/AddHost" in text
    for name in ("LeaseList", "ReservationList", "OneReservation", "MachinePage", "MachineView", "ImageList"):
        assert f"#/components/schemas/{name}" in text, f"{name} is generated but no operation uses it"


def test_host_views_and_pages_render_what_the_schema_declares(tmp_path: Path) -> None:
    conn = connect(tmp_path / "s.db")
    now = time.time()
    src = Sources(conn)
    for name, mac, ip in (("n1", "52:54:00:00:00:01", IPv4Address("10.0.0.5")), ("n2", "52:54:00:00:00:02", None)):
        req = hosts.AddHost.from_json({"name": name, "mac": mac, "image": "demo", "ip": str(ip) if ip else None})
        conforms({k: v for k, v in req.as_json().items() if v is not None}, "AddHost")
        hosts.add_host_op(src, req, now)(conn)
    conforms(view_json(hosts.list_hosts(src, Page(1), now)), "HostPage")
    conforms(view_json(hosts.show_host(src, "n1", now)), "HostView")
    # A host with a timeline (copy progress, a failure), a lease binding and a boot decision: every nested view.
    install_events.record_op("n2", "52:54:00:00:00:02", now, "installer", None)(conn)
    install_events.record_op("n2", "52:54:00:00:00:02", now + 1, "rsync",
                             install_events.event_detail("copy", 10, 20))(conn)
    install_events.record_op("n2", "52:54:00:00:00:02", now + 2, "failed",
                             install_events.event_detail("stage: rsync\nreason: no space left"))(conn)
    pool = PoolSpec(IPv4Network("10.0.0.0/24"), IPv4Address("10.0.0.100"), IPv4Address("10.0.0.200"), 600)
    leases = LeaseModel.offline(conn, [pool], now=now)
    offered = leases.offer("52:54:00:00:00:02", pool, None, now)
    leases.commit("52:54:00:00:00:02", offered, pool, now, None, "n2")
    for live in (Sources(conn, leases=leases, boot_policy=BootPolicy()), Sources(conn)):
        view = view_json(hosts.show_host(live, "n2", now + 3))
        conforms(view, "HostView")
        assert view["progress"]["failure"] == {"stage": "rsync", "reason": "no space left"}, view["progress"]
        assert view["binding"]["kind"] == "lease" and [e["stage"] for e in view["timeline"]] == [
            "installer", "rsync", "failed"]
        assert ("boot" in view) == (live.boot_policy is not None)
    for event in view["timeline"]:
        conforms(event, "TimelineEvent")
    conforms(view_json(PoolUsage("10.0.0.0/24", 100, 3, 1, 0)), "PoolUsage")
    conforms(view_json(PoolList([PoolUsage("10.0.0.0/24", 100, 3, 1, 0)])), "PoolList")


def test_lease_and_reservation_views_render_what_the_schema_declares() -> None:
    now = 1000.0
    leases = [Lease("52:54:00:00:00:01", IPv4Address("10.0.0.5"), "10.0.0.0/24", now - 10, now + 50, b"\x01ab", "n1"),
              Lease("52:54:00:00:00:02", IPv4Address("10.0.0.6"), "10.0.0.0/24", now - 99, now - 1)]
    out = view_json(lease_list(leases, now))
    conforms(out, "LeaseList")
    assert out["leases"][0] == leases[0].as_dict(now)  # the CLI's rendering and the API's are one
    res = Reservation("52:54:00:00:00:03", IPv4Address("10.0.0.30"), None, "manual", now)
    conforms(view_json(reservation_list([res])), "ReservationList")
    conforms(view_json(OneReservation(ReservationView.of(res))), "OneReservation")
    assert view_json(OneReservation(ReservationView.of(res))) == {"reservation": res.as_dict()}


def test_machine_views_render_what_the_schema_declares(tmp_path: Path) -> None:
    conn = connect(tmp_path / "s.db")
    now = time.time()
    req = hosts.AddHost.from_json({"name": "n1", "mac": "52:54:00:00:00:01", "image": "demo"})
    hosts.add_host_op(Sources(conn), req, now)(conn)
    for src in (Sources(conn), Sources(conn, boot_policy=BootPolicy())):
        one = view_json(machines.show_machine(src, "52:54:00:00:00:01"))  # a host that has not booted yet
        conforms(one, "MachineView")
        assert one["first_seen"] is None and ("boot" in one) == (src.boot_policy is not None)
        conforms(view_json(machines.list_machines(src, Page(10))), "MachinePage")
    assert isinstance(view_json(machines.show_machine(Sources(conn, boot_policy=BootPolicy()), "52:54:00:00:00:01"))
                      ["boot"], dict)


def test_image_catalog_renders_what_the_schema_declares(tmp_path: Path) -> None:
    conn = connect(tmp_path / "s.db")
    for version in (1, 2):
        insert_version(conn, ImageVersion("demo", version, f"/srv/images/demo/v{version}", 1000.0 + version,
                                          files=3 if version == 2 else None))
    out = view_json(catalog(conn))
    conforms(out, "ImageList")
    assert [(i["version"], i["newest"]) for i in out["images"]] == [(1, False), (2, True)]


def test_status_document_renders_what_the_schema_declares() -> None:
    sat = Satellite("rack2", 1000.0, 1990.0, "10.0.0.9", ("web_v1",), 3, 17)
    transports = Transports(["rsync", "bittorrent"], BittorrentStatus({"web_v1": Seeder(4242, 6881, True)},
                                                                      {"web_v1": 2}))
    for store, extra in ((StoreHealth(True, 5, None), transports), (None, None)):
        doc = view_json(Status(version="1", started=None, uptime=0.0, config=None, state_dir="/var/lib/imageserver",
                               services={"http": {"state": "running", "listen": [], "error": None, "counters": {}}},
                               counts={"hosts": 1}, satellites=[SatelliteView.of(sat, 2000.0)], store=store,
                               transports=extra))
        conforms(doc, "Status")
        assert ("transports" in doc) == (extra is not None)
    assert doc["satellites"][0] == sat.as_dict(2000.0)


def test_update_views_render_what_the_schema_declares() -> None:
    found = UpdateTarget("n1", "web", 2, True)
    plain = view_json(UpdateTargetView.of(found, 873, None))
    conforms(plain, "UpdateTargetView")
    assert plain == {**found.as_dict(), "rsync_port": 873}  # no rsync_host/user/password keys when unset
    granted = replace(UpdateTargetView.of(found, 873, "10.0.0.1"), rsync_user="n1", rsync_password="pw")
    conforms(view_json(granted), "UpdateTargetView")
    conforms(view_json(UpdateRecorded("n1", "done", "web", 2, 2)), "UpdateRecorded")
    conforms(view_json(Reinstall("n1", "assigned", None, "http://a/k", "http://a/i")), "Reinstall")
    assert "cmdline" not in view_json(Reinstall("n1", "assigned", None, "http://a/k", "http://a/i"))


def test_satellite_views_render_what_the_schema_declares(tmp_path: Path) -> None:
    conn = connect(tmp_path / "s.db")
    satellites.ensure_table(conn)
    insert_version(conn, ImageVersion("web", 1, "/srv/images/web/v1", 1000.0, layout='{"disks": []}'))
    hosts.add_host_op(Sources(conn), hosts.AddHost.from_json({"name": "n1", "mac": "52:54:00:00:00:01",
                                                              "image": "web", "ip": "10.0.0.5"}), 1000.0)(conn)
    hosts.add_host_op(Sources(conn), hosts.AddHost.from_json({"name": "n2", "mac": "52:54:00:00:00:02"}), 1000.0)(conn)
    out = view_json(satellite_config(conn, "rack2", 10, 873))
    conforms(out, "SatelliteConfig")
    assert [h["name"] for h in out["hosts"]] == ["n1", "n2"] and out["images"][0]["tree"] == "web/v1"
    conforms(view_json(ReportsReceipt(3, 2, 1)), "ReportsReceipt")
    conforms(view_json(SatelliteAdded("rack2", "tok")), "SatelliteAdded")
    conforms(view_json(SatelliteRemoved("rack2")), "SatelliteRemoved")
