"""GET /api/v1/machines: every machine seen on the wire, with its host (if any) and what it boots now.

  GET /api/v1/machines         {"machines": [...], "total", "offset", "limit", "next_offset"}, most
                               recently seen first, one page: ?limit= (default 100, at most 1000),
                               ?offset= (next_offset of the page before; null on the last page),
                               ?unknown=1 only machines that are no host (what waits for an assignment)
  GET /api/v1/machines/{mac}   one machine (any MAC spelling), with the boot decision's reason; 404
                               if the MAC was never seen and is no host's
JSON <-> domain.machines; machines come from the live MachineLog when the daemon has one, else the store.
"""

from __future__ import annotations

from domain import machines
from domain.machines import MachinePage, MachineView
from domain.paging import DEFAULT_LIMIT, MAX_LIMIT, Page, flag
from services.auth import Auth
from services.routes import PAGING, Call, Param, Route, error, ok

__all__ = ["DEFAULT_LIMIT", "MAX_LIMIT", "ROUTES"]

async def list_machines(call: Call[None]) -> MachinePage:
    query = call.request.query
    return machines.list_machines(call.ctx.sources(), Page.from_query(query), unknown_only=flag(query, "unknown"))


async def one_machine(call: Call[None]) -> MachineView:
    return machines.show_machine(call.ctx.sources(), call.request.match_info["mac"])


ROUTES = [
    Route("GET", "/api/v1/machines", list_machines,
          "Machines seen on the wire, most recent first, with their host and boot decision, one page at a time "
          "(the table is capped by [discovery] max_machines)",
          {200: ok("one page of machines", MachinePage), 400: error("a bad limit or offset")},
          auth=Auth.READER, query={**PAGING, "unknown": Param("1/true/yes: only machines that are no host")}),
    Route("GET", "/api/v1/machines/{mac}", one_machine,
          "One machine with the full boot decision (why it boots what it boots)",
          {200: ok("the machine", MachineView), 400: error("not a MAC address"),
           404: error("never seen and no host has this MAC")}, auth=Auth.READER),
]
