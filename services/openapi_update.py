"""OpenAPI paths of updateclient's routes (services/api_update.py) and the client scripts
(services/api_client_scripts.py); merged into services/openapi.py's document. The answers' schemas are
generated from domain.updates (services/openapi_schema.py)."""

from __future__ import annotations

from typing import Any

from domain.requests import UpdateEvent
from domain.updates import Reinstall, UpdateRecorded, UpdateTargetView
from services.openapi_schema import ref

_JSON = "application/json"


def _json(description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"description": description, "content": {_JSON: {"schema": schema or {"type": "object"}}}}


def _error(description: str) -> dict[str, Any]:
    return _json(description, {"$ref": "#/components/schemas/Error"})


_NAME = {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}, "description": "host name"}
# The host's own update token (TOKEN= in its /etc/systemimager/updateclient.conf) or the admin token;
# never its install token.
HOST_OR_ADMIN = [{"install": []}, {"admin": []}]
_UNAUTHORIZED = _error("neither the host's update token nor the admin token")

UPDATE_PATHS: dict[str, Any] = {
    "/client/{name}": {
        "get": {
            "summary": "A script for other machines: prepareclient (master client) or updateclient (installed host)",
            "parameters": [{"name": "name", "in": "path", "required": True, "schema": {
                "type": "string", "enum": ["prepareclient", "updateclient"]}}],
            "responses": {
                "200": {"description": "POSIX sh script", "content": {"text/x-shellscript": {"schema": {
                    "type": "string"}}}},
                "404": _error("no such client script"),
            },
        },
    },
    "/api/v1/hosts/{name}/update-target": {
        "get": {
            "summary": "The image version the host should sync to: its assignment, or the one named (rollback)",
            "parameters": [_NAME,
                           {"name": "image", "in": "query", "required": False, "schema": {"type": "string"}},
                           {"name": "version", "in": "query", "required": False, "schema": {"type": "integer"}}],
            "responses": {
                "200": _json("the target", ref(UpdateTargetView)),
                "404": _error("no such host"),
                "409": _error("the host has no image, or the version is not captured"),
            },
        },
    },
    "/api/v1/hosts/{name}/update-events": {
        "post": {
            "summary": "updateclient reports start, done or failed; done records the version the host runs",
            "parameters": [_NAME],
            "security": HOST_OR_ADMIN,
            "requestBody": {"required": True, "content": {_JSON: {"schema": ref(UpdateEvent)}}},
            "responses": {
                "200": _json("recorded", ref(UpdateRecorded)),
                "400": _error("the report is malformed"),
                "401": _UNAUTHORIZED,
                "404": _error("no such host"),
            },
        },
    },
    "/api/v1/hosts/{name}/autoinstall": {
        "post": {
            "summary": "updateclient --autoinstall: install the host again at its next boot (fresh install token)",
            "parameters": [_NAME],
            "security": HOST_OR_ADMIN,
            "responses": {
                "200": _json("what a boot loader entry for the installer needs", ref(Reinstall)),
                "401": _UNAUTHORIZED,
                "404": _error("no such host"),
                "409": _error("the host has no image"),
            },
        },
    },
}
