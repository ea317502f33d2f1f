"""OpenAPI paths of the install and hosts routes (services/api_install.py, services/api_hosts.py);
merged into services/openapi.py's document."""

from __future__ import annotations

from typing import Any

from domain.hosts import AddHost, HostPage, HostView
from domain.installs import ReportRecorded
from domain.multicast import MulticastSeat, MulticastSession
from domain.requests import InstallEvent
from services.openapi_schema import ref

_JSON = "application/json"


def _json(description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"description": description, "content": {_JSON: {"schema": schema or {"type": "object"}}}}


def _error(description: str) -> dict[str, Any]:
    return _json(description, {"$ref": "#/components/schemas/Error"})


_MAC = {"name": "mac", "in": "path", "required": True, "schema": {"type": "string"},
        "description": "MAC address in any usual spelling"}
_NAME = {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}, "description": "host name"}
_UNAUTHORIZED = _error("the admin bearer token is missing or wrong")

INSTALL_SECURITY_SCHEME = {"type": "http", "scheme": "bearer",
                           "description": "the per-install token of one host (INSTALL_TOKEN in its script; boot "
                                          "files carry only a fetch nonce, which opens the script alone)"}

INSTALL_PATHS: dict[str, Any] = {
    "/install/{mac}/script": {
        "get": {
            "summary": "The host's autoinstall script with its variables prepended (install token, rsync "
                       "credentials, update token); only from the address leased or reserved for the MAC, with "
                       "Authorization: Bearer <fetch nonce | install token>; changes no state",
            "parameters": [_MAC],
            "responses": {
                "200": {"description": "POSIX sh script", "content": {"text/x-shellscript": {"schema": {
                    "type": "string"}}}},
                "401": _error("no fetch nonce or install token, a wrong one, or an expired one"),
                "403": _error("not asked from the address leased or reserved for this MAC"),
                "404": _error("no host has this MAC, or the image has no autoinstall script"),
                "409": _error("the host has no image or version to install, or is installed"),
            },
        },
    },
    "/install/{mac}/events": {
        "post": {
            "summary": "An installer's progress report; done: host installed and its lease a reservation; "
                       "failed: host failed with stage and reason; progress (bytes, total): live copy progress",
            "security": [{"install": []}],
            "parameters": [_MAC],
            "requestBody": {"required": True, "content": {_JSON: {"schema": ref(InstallEvent)}}},
            "responses": {
                "200": _json("recorded", ref(ReportRecorded)),
                "400": _error("malformed report"),
                "401": _error("missing or wrong install token"),
                "404": _error("no host has this MAC"),
            },
        },
    },
    "/install/{mac}/multicast": {
        "post": {
            "summary": "A seat in the multicast session sending the host's image version ([multicast] enabled): "
                       "portbase, rendezvous address, the session's key, the sender; only from the host's own "
                       "address with its install token; Accept: text/plain gives KEY=value lines",
            "security": [{"install": []}],
            "parameters": [_MAC],
            "responses": {
                "200": _json("the seat", ref(MulticastSeat)),
                "401": _error("missing, wrong or expired install token"),
                "403": _error("not asked from the address leased or reserved for this MAC"),
                "404": _error("no host has this MAC"),
                "409": _error("no seat: multicast off, the transfer has begun, sessions or seats full: pull by rsync"),
            },
        },
        "get": {
            "summary": "The host's multicast session: its state and, once done, the SHA-256 of the stream sent",
            "security": [{"install": []}],
            "parameters": [_MAC],
            "responses": {
                "200": _json("the session", ref(MulticastSession)),
                "401": _error("missing, wrong or expired install token"),
                "403": _error("not asked from the address leased or reserved for this MAC"),
                "404": _error("no host has this MAC, or it holds no seat"),
                "409": _error("multicast is not enabled on this imageserver"),
            },
        },
    },
    "/api/v1/hosts": {
        "get": {
            "summary": "One page of hosts by name (default 100, ?limit= up to 1000, ?offset=), each with its state "
                       "and its newest install's progress",
            "parameters": [
                {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 1000,
                                                           "default": 100}, "description": "hosts per page"},
                {"name": "offset", "in": "query", "schema": {"type": "integer", "minimum": 0, "default": 0},
                 "description": "next_offset of the page before"},
            ],
            "responses": {"200": _json("one page of hosts", ref(HostPage)), "400": _error("bad limit or offset")},
        },
        "post": {
            "summary": "Add a host (name, MAC, image, optional fixed address); state assigned if it has an image",
            "security": [{"admin": []}],
            "requestBody": {"required": True, "content": {_JSON: {"schema": ref(AddHost)}}},
            "responses": {"201": _json("the host", ref(HostView)), "400": _error("malformed field"),
                          "401": _UNAUTHORIZED, "409": _error("the name, MAC or address is taken")},
        },
    },
    "/api/v1/hosts/{name}": {
        "get": {
            "summary": "One host: state, address binding, boot decision, install progress and timeline",
            "parameters": [_NAME],
            "responses": {"200": _json("the host", ref(HostView)), "404": _error("no such host")},
        },
    },
    "/api/v1/hosts/{name}/reinstall": {
        "post": {
            "summary": "Install the host again at its next PXE boot (state assigned, fresh install token)",
            "security": [{"admin": []}],
            "parameters": [_NAME],
            "responses": {"200": _json("the host", ref(HostView)), "401": _UNAUTHORIZED,
                          "404": _error("no such host")},
        },
    },
}
