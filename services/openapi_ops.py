"""OpenAPI paths of the operations routes: /metrics, /api/v1/pools, and the dashboard (merged by openapi.py)."""

from __future__ import annotations

from typing import Any

from domain.metrics import PoolList
from services.openapi_schema import ref

OPS_PATHS: dict[str, Any] = {
    "/metrics": {
        "get": {
            "summary": "Prometheus metrics (text format 0.0.4): DHCP messages by type and outcome, TFTP/HTTP bytes "
                       "and transfers, installs by outcome, install durations, hosts by state, pool usage, "
                       "rsync daemon restarts and every other service counter",
            "responses": {"200": {"description": "the exposition",
                                  "content": {"text/plain": {"schema": {"type": "string"}}}}},
        },
    },
    "/api/v1/pools": {
        "get": {
            "summary": "Pool usage per DHCP subnet: pool size, active leases in the pool, reservations, and "
                       "addresses in quarantine (DECLINEd or answering a conflict probe; capped by "
                       "[dhcp] decline_max_share)",
            "responses": {"200": {"description": "pools", "content": {"application/json": {
                "schema": ref(PoolList)}}}},
        },
    },
    "/": {
        "get": {
            "summary": "The dashboard (HTML; its script polls /api/v1/status, pools, hosts, machines and images, and "
                       "assigns a waiting machine with the admin token the operator types in)",
            "responses": {"200": {"description": "the page", "content": {"text/html": {}}}},
        },
    },
    "/static/{name}": {
        "get": {
            "summary": "The dashboard's script, style sheet and icon (dashboard.js, dashboard.css, favicon.svg)",
            "parameters": [{"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}],
            "responses": {"200": {"description": "the file"}, "404": {"description": "no such asset"}},
        },
    },
}
