"""OpenAPI paths of the image catalog route (services/api_images.py; merged by openapi.py). The schema is
generated from domain.images.ImageList (services/openapi_schema.py)."""

from __future__ import annotations

from typing import Any

from domain.images import ImageList
from services.openapi_schema import ref

IMAGES_PATHS: dict[str, Any] = {
    "/api/v1/images": {
        "get": {
            "summary": "The image catalog: every registered version by name and version, with the hosts using it",
            "responses": {"200": {"description": "image versions", "content": {"application/json": {
                "schema": ref(ImageList)}}}},
        },
    },
}
