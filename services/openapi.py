"""The OpenAPI 3 document of the routes a server mounts (served at /api/v1/openapi.json), generated from their
declarations (services/routes.py): the paths and operations from the `Route` objects, the schemas from the
request and response dataclasses they name (services/openapi_schema.py). Nothing here is written per route.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import is_dataclass
from typing import Any

from domain.responses import BootDecision, Error
from services.auth import ROLE_OF, Auth
from services.base import ServiceStatus
from services.openapi_schema import schema_name, schemas
from services.routes import JSON, PATH_PARAMS, Answer, Param, Route

INFO = {
    "title": "imageserver",
    "version": "1",
    "description": "Boot scripts, boot files and the admin API of the imageserver. Reads of hosts, leases, "
                   "machines and images need a token of the reader role or better (status and /metrics are open); "
                   "changes need the operator or admin role (x-imageserver-role), or where an operation says so "
                   "a host's or a satellite's own token.",
}

SECURITY_SCHEMES = {
    "admin": {"type": "http", "scheme": "bearer",
              "description": "a named token with a role (reader, operator, admin: `imageserver tokens add NAME "
                             "--role ROLE` prints it once), or the admin token (<state_dir>/admin.token); an "
                             "operation's x-imageserver-role names the least role it needs"},
    "install": {"type": "http", "scheme": "bearer",
                "description": "the per-install token of one host (INSTALL_TOKEN in its script; boot files carry "
                               "only a fetch nonce, which opens the script alone)"},
    "satellite": {"type": "http", "scheme": "bearer",
                  "description": "a satellite's token (`imageserver satellites add NAME` prints it once)"},
}

# The credential a route declares, as OpenAPI security requirements (an update token derives from the install
# token; the admin token opens update routes too).
SECURITY: dict[Auth, list[dict[str, list[str]]]] = {
    Auth.READER: [{"admin": []}], Auth.OPERATOR: [{"admin": []}], Auth.ADMIN: [{"admin": []}],
    Auth.INSTALL: [{"install": []}], Auth.UPDATE: [{"install": []}, {"admin": []}],
    Auth.SATELLITE: [{"satellite": []}]}

# Schemas named in field metadata rather than type hints (Status.services, a machine's boot decision).
REFERENCED = (ServiceStatus, BootDecision, Error)

_TYPES = {str: "string", int: "integer", float: "number", bool: "boolean"}


def _param(name: str, where: str, p: Param) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": _TYPES[p.type]}
    for key in ("minimum", "maximum", "default"):
        if getattr(p, key) is not None:
            schema[key] = getattr(p, key)
    if p.enum:
        schema["enum"] = list(p.enum)
    out: dict[str, Any] = {"name": name, "in": where, "required": where == "path", "schema": schema}
    if p.description:
        out["description"] = p.description
    return out


def _view_schema(view: type | tuple[type, ...]) -> dict[str, Any]:
    if isinstance(view, tuple):
        return {"anyOf": [_view_schema(v) for v in view]}
    if view is dict:
        return {"type": "object"}
    return {"$ref": f"#/components/schemas/{schema_name(view)}"}


def _answer(a: Answer) -> dict[str, Any]:
    out: dict[str, Any] = {"description": a.description}
    if a.view is not None:
        out["content"] = {JSON: {"schema": _view_schema(a.view)}}
    elif a.media is not None:
        media: dict[str, Any] = {}
        if a.text or a.binary:
            media["schema"] = {"type": "string", **({"format": "binary"} if a.binary else {})}
        out["content"] = {a.media: media}
    return out


def operation(route: Route) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": route.summary}
    if route.auth in SECURITY:
        op["security"] = SECURITY[route.auth]
    if route.auth in ROLE_OF:
        op["x-imageserver-role"] = ROLE_OF[route.auth]
    params = [_param(n, "path", route.params.get(n) or PATH_PARAMS.get(n) or Param())
              for n in re.findall(r"\{(\w+)[^}]*\}", route.path)]
    params += [_param(n, "query", p) for n, p in route.query.items()]
    if params:
        op["parameters"] = params
    if route.body is not None:
        op["requestBody"] = {"required": True, "content": {JSON: {"schema": _view_schema(route.body)}}}
    op["responses"] = {str(status): _answer(a) for status, a in route.responses().items()}
    return op


def openapi_path(path: str) -> str:
    """aiohttp's `{path:.+}` is OpenAPI's `{path}`."""
    return re.sub(r"\{(\w+):[^}]*\}", r"{\1}", path)


def _views(routes: Iterable[Route]) -> list[type]:
    out: list[type] = []
    for route in routes:
        for view in [route.body, *(a.view for a in route.answers.values())]:
            for v in view if isinstance(view, tuple) else (view,):
                if v is not None and is_dataclass(v):
                    out.append(v)
    return out


def document(routes: Iterable[Route]) -> dict[str, Any]:
    routes = list(routes)
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        paths.setdefault(openapi_path(route.path), {})[route.method.lower()] = operation(route)
    return {"openapi": "3.0.3", "info": INFO,
            "components": {"securitySchemes": SECURITY_SCHEMES, "schemas": schemas([*_views(routes), *REFERENCED])},
            "paths": paths}
