"""GET /api/v1/machines: every machine seen on the wire, with its host (if any) and what it boots now.

  GET /api/v1/machines         {"machines": [...], "total", "offset", "limit", "next_offset"}, most
                               recently seen first, one page: ?limit= (default 100, at most 1000),
                               ?offset= (next_offset of the page before; null on the last page),
                               ?unknown=1 only machines that are no host (what waits for an assignment)
  GET /api/v1/machines/{mac}   one machine (any MAC spelling), with the boot decision's reason; 404
                               if the MAC was never seen and is no host's
Machines come from the live MachineLog (ctx.models["machines"]) when the daemon has one, else from
the database; boot decisions from the BootResponder (ctx.models["boot"]) when there is one.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from protocols.mac import MacError, normalize_mac
from services.api_context import ApiContext, json_error
from state.hosts import hosts_by_mac
from state.sightings import Machine, MachineLog, stored_machines

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000  # a page is answered in milliseconds; the whole table never is in one response
_TRUE = ("1", "true", "yes")


class PageError(ValueError):
    pass


def page_params(query: Any) -> tuple[int, int, bool]:
    """(limit, offset, unknown_only) from the query string; PageError names the bad parameter."""
    def number(key: str, default: int, lo: int, hi: int) -> int:
        raw = query.get(key)
        if raw is None or raw == "":
            return default
        try:
            value = int(raw)
        except ValueError:
            raise PageError(f"{key}: expected a whole number, got {raw[:40]!r}") from None
        if not lo <= value <= hi:
            raise PageError(f"{key}: {value} is out of range ({lo}..{hi})")
        return value

    return (number("limit", DEFAULT_LIMIT, 1, MAX_LIMIT), number("offset", 0, 0, 1 << 31),
            str(query.get("unknown", "")).lower() in _TRUE)


def _machines(ctx: ApiContext) -> list[Machine]:
    log = ctx.models.get("machines")
    if isinstance(log, MachineLog):
        return log.all()
    return stored_machines(ctx.store.reader)


def _entry(ctx: ApiContext, m: Machine, hosts: dict[str, tuple[str, str]], detail: bool) -> dict[str, Any]:
    out = m.as_dict()
    host = hosts.get(m.mac)
    out["host"] = host[0] if host else None
    out["host_state"] = host[1] if host else None
    boot = ctx.models.get("boot")
    if boot is not None:
        decision = boot.decide(m.mac)
        out["boot"] = decision.as_dict() if detail else decision.kind
    return out


def routes(ctx: ApiContext) -> list[web.RouteDef]:
    async def list_machines(request: web.Request) -> web.Response:
        try:
            limit, offset, unknown_only = page_params(request.query)
        except PageError as e:
            return json_error(400, str(e))
        hosts = hosts_by_mac(ctx.store.reader)
        machines = _machines(ctx)
        if unknown_only:
            machines = [m for m in machines if m.mac not in hosts]
        page = machines[offset:offset + limit]  # boot decisions (a query each) only for the page
        end = offset + len(page)
        return web.json_response({"machines": [_entry(ctx, m, hosts, False) for m in page],
                                  "total": len(machines), "offset": offset, "limit": limit,
                                  "next_offset": end if end < len(machines) else None})

    async def one_machine(request: web.Request) -> web.Response:
        try:
            mac = normalize_mac(request.match_info["mac"])
        except MacError as e:
            return json_error(400, str(e))
        hosts = hosts_by_mac(ctx.store.reader)
        log = ctx.models.get("machines")
        if isinstance(log, MachineLog):
            machine = log.get(mac)
        else:
            machine = next((m for m in stored_machines(ctx.store.reader) if m.mac == mac), None)
        if machine is None:
            if mac not in hosts:
                return json_error(404, f"machine {mac} has not been seen and is no host's")
            machine = Machine(mac, 0.0, 0.0)  # a host that has not booted yet
            out = _entry(ctx, machine, hosts, True)
            out["first_seen"] = out["last_seen"] = None
            return web.json_response(out)
        return web.json_response(_entry(ctx, machine, hosts, True))

    return [
        web.get("/api/v1/machines", list_machines),
        web.get("/api/v1/machines/{mac}", one_machine),
    ]
