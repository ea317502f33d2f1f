"""OpenAPI paths of the satellite routes (services/api_satellite.py); merged into services/openapi.py's document."""

from __future__ import annotations

from typing import Any

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
            "responses": {"200": _json("the config document"), "401": _json("no or a wrong satellite token", _ERROR)},
        },
    },
    "/satellite/v1/reports": {
        "post": {
            "summary": "A satellite's buffered install reports, applied in order and each once (ids at or below the "
                       "last applied are replays); also its versions and backlog for /api/v1/status",
            "security": _SECURITY,
            "requestBody": {"required": True, "content": {_JSON: {"schema": {"type": "object", "properties": {
                "events": {"type": "array", "maxItems": 500, "items": {"type": "object"}},
                "versions": {"type": "array", "items": {"type": "string"}},
                "backlog": {"type": "integer", "minimum": 0}}}}}},
            "responses": {"200": _json("{delivered: last applied id, applied, dropped}"),
                          "400": _json("a malformed batch (nothing applied)", _ERROR),
                          "401": _json("no or a wrong satellite token", _ERROR)},
        },
    },
}
