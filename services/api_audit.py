"""GET /api/v1/audit: the audit log (state/audit.py), newest first, one page at a time (admin role).

Every change through the admin API (a route with a role, or a host's update token) and through the offline
CLI is there: when, who (the token's name), via, from where, the operation, its target, the fields given and
the outcome (HTTP status or exit code).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from domain.paging import Page
from services.auth import Auth
from services.routes import PAGING, Call, Route, error, ok
from state import audit


@dataclass(frozen=True, slots=True)
class AuditView:
    id: int
    at: float
    who: str
    via: str
    peer: str | None
    operation: str
    target: str | None
    fields: dict[str, Any]
    outcome: str


@dataclass(frozen=True, slots=True)
class AuditPage:
    entries: list[AuditView]
    total: int
    next_offset: int | None


def audit_page(entries: list[audit.AuditEntry], total: int, page: Page) -> AuditPage:
    views = [AuditView(e.id or 0, e.at, e.who, e.via, e.peer, e.operation, e.target, e.fields, e.outcome)
             for e in entries]
    return AuditPage(views, total, page.next_offset(len(views), total))


async def list_audit(call: Call[None]) -> AuditPage:
    page = Page.from_query(call.request.query)
    entries, total = audit.page(call.ctx.store.reader, page.limit, page.offset)
    return audit_page(entries, total, page)


ROUTES = [
    Route("GET", "/api/v1/audit", list_audit,
          "The audit log, newest first: every change through the API or the offline CLI (who, via, from where, "
          "operation, target, fields, outcome)",
          {200: ok("one page of entries", AuditPage), 400: error("a bad limit or offset")},
          auth=Auth.ADMIN, query=PAGING),
]
