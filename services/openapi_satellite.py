"""OpenAPI paths of the satellite routes (services/api_satellite.py); merged into services/openapi.py's document.
The answers' schemas are generated from domain.satellites (services/openapi_schema.py)."""

from __future__ import annotations

from typing import Any

from domain.requests import NewSatellite, SatelliteReports
from domain.satellites import ReportsReceipt, SatelliteAdded, SatelliteConfig, SatelliteRemoved
from services.openapi_schema import ref

_JSON = "application/json"
_ERROR = {"$ref": "#/components/schemas/Error"}
_SECURITY = [{"satellite": []}]

SATELLITE_SECURITY_SCHEME = {"type": "http", "scheme": "bearer",
                             "description": "a satellite's token (`imageserver satellites add NAME` prints it once)"}


def _json(description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"description": description, "content": {_JSON: {"schema": schema or {"type": "object"}}}}


SATELLITE_PATHS: dict[str, Any] = {
    "/satellite/v1/config": {
        "get": {
            "summary": "What a satellite mirrors: image versions (with disk layouts and their tree in the "
                       "satellite rsync module), hosts (MAC, address, image, version, state), the rsync module "
                       "and user; read-only, no secrets",
            "security": _SECURITY,
            "responses": {"200": _json("the config document", ref(SatelliteConfig)),
                          "401": _json("no or a wrong satellite token", _ERROR)},
        },
    },
    "/satellite/v1/reports": {
        "post": {
            "summary": "A satellite's buffered install reports, applied in order and each once (ids at or below the "
                       "last applied are replays); also its versions and backlog for /api/v1/status",
            "security": _SECURITY,
            "requestBody": {"required": True, "content": {_JSON: {"schema": ref(SatelliteReports)}}},
            "responses": {"200": _json("the last applied id, and how many were applied and dropped",
                                        ref(ReportsReceipt)),
                          "400": _json("a malformed batch (nothing applied)", _ERROR),
                          "401": _json("no or a wrong satellite token", _ERROR)},
        },
    },
    "/api/v1/satellites": {
        "post": {
            "summary": "A new satellite (name: 1-31 lower-case letters, digits, '-'); its token is in this answer "
                       "only (the primary keeps its hash)",
            "security": [{"admin": []}],
            "requestBody": {"required": True, "content": {_JSON: {"schema": ref(NewSatellite)}}},
            "responses": {"201": _json("the satellite and its token", ref(SatelliteAdded)),
                          "400": _json("a malformed name", _ERROR),
                          "401": _json("the admin bearer token is missing or wrong", _ERROR),
                          "409": _json("a satellite of that name exists, or there are as many as allowed", _ERROR)},
        },
    },
    "/api/v1/satellites/{name}": {
        "delete": {
            "summary": "Forget a satellite: its token stops working at once",
            "security": [{"admin": []}],
            "parameters": [{"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}],
            "responses": {"200": _json("removed", ref(SatelliteRemoved)),
                          "401": _json("the admin bearer token is missing or wrong", _ERROR),
                          "404": _json("no satellite of that name", _ERROR)},
        },
    },
}
