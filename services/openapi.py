"""The OpenAPI 3 description of every HTTP route the imageserver mounts (served at /api/v1/openapi.json).

Static data, kept next to the route modules; tests/unit/test_openapi.py fails when a mounted route is
missing here or a documented one is not mounted, so the two cannot drift apart. The schemas of the
answers built from domain views (hosts, pools, leases and reservations, machines, images, status, the
error object, reload's receipt, the boot decision) are generated from those dataclasses
(services/openapi_schema.py); the rest are still written out here and in the services/openapi_*.py
beside it. tests/system/test_api_contract.py validates real answers against the served document either way.
"""

from __future__ import annotations

from typing import Any

from domain.leases import LeaseList, OneReservation, ReservationList
from domain.machines import MachinePage, MachineView
from domain.requests import NewReservation
from domain.responses import ReloadRequested
from domain.status import Status
from services.openapi_hostadmin import HOSTADMIN_PATHS
from services.openapi_images import IMAGES_PATHS
from services.openapi_install import INSTALL_PATHS, INSTALL_SECURITY_SCHEME
from services.openapi_ops import OPS_PATHS
from services.openapi_satellite import SATELLITE_PATHS, SATELLITE_SECURITY_SCHEME
from services.openapi_schema import SCHEMAS, ref
from services.openapi_torrents import TORRENT_PATHS
from services.openapi_update import UPDATE_PATHS

_JSON = "application/json"


def _json(description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"description": description, "content": {_JSON: {"schema": schema or {"type": "object"}}}}


def _error(description: str) -> dict[str, Any]:
    return _json(description, {"$ref": "#/components/schemas/Error"})


_MAC_PARAM = {
    "name": "mac", "in": "path", "required": True,
    "description": "MAC address in any usual spelling: aa:bb:cc:dd:ee:ff, AA-BB-..., aabbccddeeff, aabb.ccdd.eeff",
    "schema": {"type": "string"},
}

_UNAUTHORIZED = _error("the admin bearer token is missing or wrong")

OPENAPI: dict[str, Any] = {
    "openapi": "3.0.3",
    "info": {
        "title": "imageserver",
        "version": "1",
        "description": "Boot scripts, boot files and the admin API of the imageserver. GET routes are open and "
                       "read-only; every other method needs `Authorization: Bearer <state_dir/admin.token>`.",
    },
    "components": {
        "securitySchemes": {"admin": {"type": "http", "scheme": "bearer"}, "install": INSTALL_SECURITY_SCHEME,
                            "satellite": SATELLITE_SECURITY_SCHEME},
        "schemas": SCHEMAS,  # generated from the request and response dataclasses (services/openapi_schema.py)
    },
    "paths": {
        "/boot/{mac}.ipxe": {
            "get": {
                "summary": "The machine's iPXE boot script: install, boot the local disk, or wait and ask again",
                "parameters": [_MAC_PARAM],
                "responses": {
                    "200": {"description": "an iPXE script", "content": {"text/plain": {"schema": {"type": "string"}}}},
                    "404": {"description": "not a MAC address"},
                },
            },
        },
        "/boot/files/{path}": {
            "get": {
                "summary": "A file from the boot root (iPXE, pxelinux, the installer kernel and initrd); HEAD and "
                           "single byte ranges supported",
                "parameters": [{"name": "path", "in": "path", "required": True, "schema": {"type": "string"}}],
                "responses": {
                    "200": {"description": "the file", "content": {"application/octet-stream": {}}},
                    "206": {"description": "the requested byte range"},
                    "400": {"description": "a refused path (dot segments, escaped separators, NUL, backslash)"},
                    "404": {"description": "no such file, a hidden file, or a symlink leading out of the root"},
                    "416": {"description": "the range cannot be satisfied"},
                },
            },
        },
        "/api/v1/status": {
            "get": {
                "summary": "The daemon's status: version, uptime, each service with state, listen and counters, "
                           "and counts of leases, reservations, hosts, machines and images",
                "responses": {"200": _json("the status document", ref(Status))},
            },
        },
        "/api/v1/openapi.json": {
            "get": {"summary": "This document", "responses": {"200": _json("OpenAPI 3 document")}},
        },
        "/api/v1/reload": {
            "post": {
                "summary": "Re-read the configuration file (what SIGHUP does); a bad file is logged and ignored",
                "security": [{"admin": []}],
                "responses": {"202": _json("reload requested", ref(ReloadRequested)), "401": _UNAUTHORIZED},
            },
        },
        "/api/v1/machines": {
            "get": {
                "summary": "Machines seen on the wire, most recent first, with their host and boot decision, one page "
                           "at a time (the table is capped by [discovery] max_machines)",
                "parameters": [
                    {"name": "limit", "in": "query", "required": False,
                     "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100},
                     "description": "machines per page"},
                    {"name": "offset", "in": "query", "required": False,
                     "schema": {"type": "integer", "minimum": 0, "default": 0},
                     "description": "where the page starts: the previous page's next_offset"},
                    {"name": "unknown", "in": "query", "required": False, "schema": {"type": "string"},
                     "description": "1/true/yes: only machines that are no host"},
                ],
                "responses": {"200": _json("one page of machines", ref(MachinePage)),
                              "400": _error("a bad limit or offset")},
            },
        },
        "/api/v1/machines/{mac}": {
            "get": {
                "summary": "One machine with the full boot decision (why it boots what it boots)",
                "parameters": [_MAC_PARAM],
                "responses": {
                    "200": _json("the machine", ref(MachineView)),
                    "400": _error("not a MAC address"),
                    "404": _error("never seen and no host has this MAC"),
                },
            },
        },
        "/api/v1/leases": {
            "get": {
                "summary": "DHCP leases, lowest address first: active ones; with ?all=1 also ended ones",
                "parameters": [{"name": "all", "in": "query", "required": False, "schema": {"type": "string"},
                                "description": "1/true/yes: include leases that have ended"}],
                "responses": {"200": _json("leases", ref(LeaseList))},
            },
        },
        "/api/v1/reservations": {
            "get": {
                "summary": "DHCP reservations (static addresses), lowest address first",
                "responses": {"200": _json("reservations", ref(ReservationList))},
            },
            "post": {
                "summary": "Reserve an address for a MAC (live: the machine gets it on its next request); a MAC "
                           "that has a reservation is moved",
                "security": [{"admin": []}],
                "requestBody": {"required": True, "content": {_JSON: {"schema": ref(NewReservation)}}},
                "responses": {
                    "201": _json("the reservation", ref(OneReservation)),
                    "400": _error("malformed MAC, address or host name"),
                    "401": _UNAUTHORIZED,
                    "409": _error("refused: reserved for or leased to another MAC, outside every DHCP subnet, "
                                  "or the imageserver's own address"),
                },
            },
        },
        "/api/v1/reservations/{mac}": {
            "delete": {
                "summary": "Remove a MAC's reservation; its address returns to the pool if inside one",
                "security": [{"admin": []}],
                "parameters": [_MAC_PARAM],
                "responses": {
                    "200": _json("the removed reservation", ref(OneReservation)),
                    "400": _error("not a MAC address"),
                    "401": _UNAUTHORIZED,
                    "404": _error("the MAC has no reservation"),
                },
            },
        },
        "/api/v1/makedhcpstatic": {
            "post": {
                "summary": "makedhcpstatic: every active lease becomes a reservation of the same address",
                "security": [{"admin": []}],
                "responses": {
                    "200": _json("the reservations made", ref(ReservationList)),
                    "401": _UNAUTHORIZED,
                },
            },
        },
        **INSTALL_PATHS,
        **TORRENT_PATHS,
    },
}

# Host editing shares /api/v1/hosts/{name} with the hosts routes: merged per method, not per path.
for _path, _methods in HOSTADMIN_PATHS.items():
    OPENAPI["paths"][_path] = {**OPENAPI["paths"].get(_path, {}), **_methods}

# Operations routes (metrics, pools, dashboard) live in their own modules and paths of their own.
OPENAPI["paths"].update(OPS_PATHS)

# updateclient's routes and the client scripts (services/api_update.py, services/api_client_scripts.py).
OPENAPI["paths"].update(UPDATE_PATHS)

# The image catalog, read-only (services/api_images.py).
OPENAPI["paths"].update(IMAGES_PATHS)

# Satellites' routes (services/api_satellite.py), with their own token.
OPENAPI["paths"].update(SATELLITE_PATHS)
