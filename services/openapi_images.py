"""OpenAPI paths of the image catalog route (services/api_images.py; merged by openapi.py)."""

from __future__ import annotations

from typing import Any

_IMAGE = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "version": {"type": "integer"},
        "created": {"type": "number"},
        "source": {"type": "string", "nullable": True, "description": "rsync://HOST/..., ssh://..., clone:NAME/vN"},
        "files": {"type": "integer", "nullable": True, "description": "entries in the tree"},
        "bytes": {"type": "integer", "nullable": True},
        "path": {"type": "string", "description": "the tree on the imageserver (images/NAME/vN)"},
        "note": {"type": "string", "nullable": True},
        "newest": {"type": "boolean", "description": "the image's newest version: hosts without a pinned "
                                                     "version install it"},
        "hosts": {"type": "array", "items": {"type": "string"}, "description": "hosts assigned to this version"},
        "transport": {"type": "string", "enum": ["rsync", "bittorrent", "multicast"],
                      "description": "how its installers fetch it unless a host says otherwise"},
    },
}

IMAGES_PATHS: dict[str, Any] = {
    "/api/v1/images": {
        "get": {
            "summary": "The image catalog: every registered version by name and version, with the hosts using it",
            "responses": {"200": {"description": "image versions", "content": {"application/json": {"schema": {
                "type": "object", "properties": {"images": {"type": "array", "items": _IMAGE}}}}}}},
        },
    },
}
