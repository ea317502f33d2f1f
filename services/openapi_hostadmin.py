"""OpenAPI paths of services/api_hostadmin.py (host editing, addclients, machine assignment, /hosts);
merged method by method into services/openapi.py's document (a path may also have methods documented elsewhere)."""

from __future__ import annotations

from typing import Any

from domain.hostadmin import AddclientsAnswer, AddclientsClash, HostChanged, HostScript, OwnScript, ScriptStored
from domain.requests import AddclientsBody, AssignBody, HostChange, ScriptBody
from services.openapi_schema import ref

_JSON = "application/json"


def _json(description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"description": description, "content": {_JSON: {"schema": schema or {"type": "object"}}}}


def _error(description: str) -> dict[str, Any]:
    return _json(description, {"$ref": "#/components/schemas/Error"})


_NAME = {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}, "description": "host name"}
_MAC = {"name": "mac", "in": "path", "required": True, "schema": {"type": "string"},
        "description": "MAC address in any usual spelling"}
_UNAUTHORIZED = _error("the admin bearer token is missing or wrong")
_ADMIN = [{"admin": []}]
_HOST = _json("the host", ref(HostChanged))

HOSTADMIN_PATHS: dict[str, Any] = {
    "/api/v1/hosts/{name}": {
        "patch": {
            "summary": "Change a host: MAC, address, image, version, state (null or \"\" clears). A host with a MAC "
                       "and an address gets its reservation at once; with [dhcp] auto_static the machine's lease "
                       "becomes its reservation on assignment (on-assign) or when it is installed (on-install)",
            "security": _ADMIN, "parameters": [_NAME],
            "requestBody": {"required": True, "content": {_JSON: {"schema": ref(HostChange)}}},
            "responses": {"200": _HOST, "400": _error("malformed input"), "401": _UNAUTHORIZED,
                          "404": _error("no such host"),
                          "409": _error("refused: the address or MAC is another's, inside a pool, or the state "
                                        "change is not allowed")},
        },
        "delete": {
            "summary": "Remove a host and its reservation",
            "security": _ADMIN, "parameters": [_NAME],
            "responses": {"200": _HOST, "401": _UNAUTHORIZED, "404": _error("no such host")},
        },
    },
    "/api/v1/hosts/{name}/script": {
        "get": {
            "summary": "The host's autoinstall script: its own copy if it has one, else its image's NAME.master",
            "parameters": [_NAME],
            "responses": {"200": _json("the script", {"anyOf": [ref(HostScript), ref(OwnScript)]}),
                "404": _error("no such host"),
                "409": _error("the host's script file is not a plain name under scripts/ (a row from before "
                              "image names were checked)")},
        },
        "put": {
            "summary": "Set the host's own copy of its autoinstall script (null: use the image's again)",
            "security": _ADMIN, "parameters": [_NAME],
            "requestBody": {"required": True, "content": {_JSON: {"schema": ref(ScriptBody)}}},
            "responses": {"200": _json("stored", ref(ScriptStored)), "400": _error("not a script"),
                          "401": _UNAUTHORIZED,
                          "404": _error("no such host")},
        },
    },
    "/api/v1/addclients": {
        "post": {
            "summary": "addclients: hosts BASE+n for n in a range, addresses from first_ip upward (outside every "
                       "pool), MACs in order or by name; idempotent; dry_run only plans",
            "security": _ADMIN,
            "requestBody": {"required": True, "content": {_JSON: {"schema": ref(AddclientsBody)}}},
            "responses": {"200": _json("the plan: every host with action create, update or keep",
                                       ref(AddclientsAnswer)),
                          "400": _error("an image name that is not one (e.g. ../../x)"),
                          "401": _UNAUTHORIZED,
                          "409": _json("clashes, each naming both sides", ref(AddclientsClash))},
        },
    },
    "/api/v1/machines/{mac}/assign": {
        "post": {
            "summary": "Make a seen machine a host: {\"host\": NAME} or {\"next\": true} (the first host of an "
                       "addclients range without a MAC); it installs at its next boot",
            "security": _ADMIN, "parameters": [_MAC],
            "requestBody": {"required": True, "content": {_JSON: {"schema": ref(AssignBody)}}},
            "responses": {"200": _HOST, "400": _error("neither host nor next, or a bad MAC"), "401": _UNAUTHORIZED,
                          "404": _error("no such host"),
                          "409": _error("the machine is another host already, or the host has another MAC")},
        },
    },
    "/hosts": {
        "get": {
            "summary": "/etc/hosts lines (IP, name.domain, name) for every host with an address",
            "responses": {"200": {"description": "hosts file", "content": {"text/plain": {"schema": {
                "type": "string"}}}}},
        },
    },
}
