"""The one mapping of domain errors (domain/errors.py) to HTTP answers: a status and the JSON error object."""

from __future__ import annotations

from aiohttp import web

from domain.errors import Conflict, DomainError, Forbidden, Invalid, NotFound, Unauthorized
from domain.responses import Error
from domain.views import view_json

_STATUS: tuple[tuple[type[DomainError], int], ...] = (
    (Invalid, 400), (Unauthorized, 401), (Forbidden, 403), (NotFound, 404), (Conflict, 409))


def http_status(error: DomainError) -> int:
    return next((code for kind, code in _STATUS if isinstance(error, kind)), 400)


def json_error(status: int, message: str) -> web.Response:
    return web.json_response(view_json(Error(message)), status=status)


def domain_error_response(error: DomainError) -> web.Response:
    response = json_error(http_status(error), str(error))
    if isinstance(error, Unauthorized):
        response.headers["WWW-Authenticate"] = error.challenge
    return response
