"""The OpenAPI 3 description of every HTTP route the imageserver mounts (served at /api/v1/openapi.json).

Static data, kept next to the route modules; tests/unit/test_openapi.py fails when a mounted route is
missing here or a documented one is not mounted, so the two cannot drift apart.
"""

from __future__ import annotations

from typing import Any

from services.openapi_hostadmin import HOSTADMIN_PATHS
from services.openapi_images import IMAGES_PATHS
from services.openapi_install import INSTALL_PATHS, INSTALL_SECURITY_SCHEME
from services.openapi_ops import OPS_PATHS
from services.openapi_satellite import SATELLITE_PATHS, SATELLITE_SECURITY_SCHEME
from services.openapi_schema import SCHEMAS
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
        "schemas": {
            **SCHEMAS,  # generated from the domain's dataclasses (services/openapi_schema.py)
            "Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}},
            "Service": {
                "type": "object",
                "description": "state, listen, error and counters, and fields of the service's own (dhcp: mode, "
                               "subnets, leases; rsyncd: pid, modules, restarts; ...)",
                "additionalProperties": True,
                "properties": {
                    "state": {"type": "string", "enum": ["starting", "running", "restarting", "failed", "stopped"]},
                    "listen": {"type": "array", "items": {"type": "string"}},
                    "error": {"type": "string", "nullable": True},
                    "counters": {"type": "object", "additionalProperties": {"type": "number"}},
                },
            },
            "BootDecision": {
                "type": "object",
                "properties": {
                    "kind": {"type": "string", "enum": ["install", "local", "wait"]},
                    "mac": {"type": "string"},
                    "reason": {"type": "string"},
                    "hostname": {"type": "string", "nullable": True},
                    "image": {"type": "string", "nullable": True},
                    "version": {"type": "integer", "nullable": True},
                    "poll_seconds": {"type": "integer"},
                },
            },
            "Machine": {
                "type": "object",
                "properties": {
                    "mac": {"type": "string"},
                    "first_seen": {"type": "number", "nullable": True},
                    "last_seen": {"type": "number", "nullable": True},
                    "arch": {"type": "integer", "nullable": True, "description": "DHCP option 93"},
                    "vendor_class": {"type": "string", "nullable": True},
                    "user_class": {"type": "string", "nullable": True},
                    "uuid": {"type": "string", "nullable": True},
                    "relay": {"type": "string", "nullable": True},
                    "subnet": {"type": "string", "nullable": True},
                    "hostname": {"type": "string", "nullable": True},
                    "host": {"type": "string", "nullable": True},
                    "host_state": {"type": "string", "nullable": True},
                    "boot": {"description": "the decision's kind in the list; the whole decision for one machine"},
                },
            },
            "Lease": {
                "type": "object",
                "properties": {
                    "mac": {"type": "string"},
                    "ip": {"type": "string"},
                    "subnet": {"type": "string"},
                    "hostname": {"type": "string", "nullable": True, "description": "DHCP option 12, cleaned"},
                    "starts": {"type": "number"},
                    "expires": {"type": "number"},
                    "active": {"type": "boolean"},
                    "client_id": {"type": "string", "nullable": True, "description": "option 61, hex"},
                },
            },
            "Reservation": {
                "type": "object",
                "properties": {
                    "mac": {"type": "string"},
                    "ip": {"type": "string"},
                    "hostname": {"type": "string", "nullable": True},
                    "source": {"type": "string", "description": "manual | makedhcpstatic | on-install | ..."},
                    "created": {"type": "number"},
                },
            },
        },
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
                "responses": {"200": _json("the status document", {
                    "type": "object",
                    "properties": {
                        "version": {"type": "string"},
                        "started": {"type": "number", "nullable": True},
                        "uptime": {"type": "number"},
                        "config": {"type": "string", "nullable": True},
                        "state_dir": {"type": "string"},
                        "services": {"type": "object",
                                     "additionalProperties": {"$ref": "#/components/schemas/Service"}},
                        "counts": {"type": "object", "additionalProperties": {"type": "integer"}},
                        "store": {"type": "object", "nullable": True,
                                  "description": "whether leases can be committed now (ok false: the state dir is "
                                                 "full or failing, new leases are refused)",
                                  "properties": {"ok": {"type": "boolean"}, "commits": {"type": "integer"},
                                                 "last_error": {"type": "string", "nullable": True}}},
                        "transports": {"type": "object", "description": "install transports: those this "
                                       "imageserver can serve, and the BitTorrent side's seeders and swarm sizes",
                                       "properties": {
                                           "available": {"type": "array", "items": {"type": "string"}},
                                           "bittorrent": {"type": "object", "properties": {
                                               "seeders": {"type": "object", "additionalProperties": {
                                                   "type": "object", "properties": {
                                                       "pid": {"type": "integer"}, "port": {"type": "integer"},
                                                       "running": {"type": "boolean"}}}},
                                               "swarms": {"type": "object",
                                                          "additionalProperties": {"type": "integer"}}}}}},
                        "satellites": {"type": "array", "description": "this primary's satellites", "items": {
                            "type": "object", "properties": {
                                "name": {"type": "string"}, "created": {"type": "number"},
                                "last_contact": {"type": "number", "nullable": True},
                                "seconds_since_contact": {"type": "number", "nullable": True},
                                "address": {"type": "string", "nullable": True},
                                "versions": {"type": "array", "items": {"type": "string"}},
                                "backlog": {"type": "integer", "nullable": True},
                                "delivered": {"type": "integer", "nullable": True}}}},
                    },
                })},
            },
        },
        "/api/v1/openapi.json": {
            "get": {"summary": "This document", "responses": {"200": _json("OpenAPI 3 document")}},
        },
        "/api/v1/reload": {
            "post": {
                "summary": "Re-read the configuration file (what SIGHUP does); a bad file is logged and ignored",
                "security": [{"admin": []}],
                "responses": {"202": _json("reload requested"), "401": _UNAUTHORIZED},
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
                "responses": {"200": _json("one page of machines", {
                    "type": "object",
                    "properties": {"machines": {"type": "array", "items": {"$ref": "#/components/schemas/Machine"}},
                                   "total": {"type": "integer", "description": "machines in all (after the filter)"},
                                   "offset": {"type": "integer"}, "limit": {"type": "integer"},
                                   "next_offset": {"type": "integer", "nullable": True,
                                                   "description": "offset of the next page; null on the last"}},
                }), "400": _error("a bad limit or offset")},
            },
        },
        "/api/v1/machines/{mac}": {
            "get": {
                "summary": "One machine with the full boot decision (why it boots what it boots)",
                "parameters": [_MAC_PARAM],
                "responses": {
                    "200": _json("the machine", {"$ref": "#/components/schemas/Machine"}),
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
                "responses": {"200": _json("leases", {
                    "type": "object",
                    "properties": {"now": {"type": "number"},
                                   "leases": {"type": "array", "items": {"$ref": "#/components/schemas/Lease"}}},
                })},
            },
        },
        "/api/v1/reservations": {
            "get": {
                "summary": "DHCP reservations (static addresses), lowest address first",
                "responses": {"200": _json("reservations", {
                    "type": "object",
                    "properties": {"reservations": {"type": "array",
                                                    "items": {"$ref": "#/components/schemas/Reservation"}}},
                })},
            },
            "post": {
                "summary": "Reserve an address for a MAC (live: the machine gets it on its next request); a MAC "
                           "that has a reservation is moved",
                "security": [{"admin": []}],
                "requestBody": {"required": True, "content": {_JSON: {"schema": {
                    "type": "object", "required": ["mac", "ip"],
                    "properties": {"mac": {"type": "string"}, "ip": {"type": "string"},
                                   "hostname": {"type": "string"}},
                }}}},
                "responses": {
                    "201": _json("the reservation", {"type": "object", "properties": {
                        "reservation": {"$ref": "#/components/schemas/Reservation"}}}),
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
                    "200": _json("the removed reservation", {"type": "object", "properties": {
                        "reservation": {"$ref": "#/components/schemas/Reservation"}}}),
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
                    "200": _json("the reservations made", {"type": "object", "properties": {
                        "reservations": {"type": "array", "items": {"$ref": "#/components/schemas/Reservation"}}}}),
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
