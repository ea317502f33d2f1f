"""Power control: each host's BMC, and power actions on many hosts at once.

  PUT    /api/v1/hosts/{name}/bmc  {"address", "username", "password"?, "fingerprint"?}: the host's BMC
  GET    /api/v1/hosts/{name}/bmc  the host's BMC and its last power answer (never the password)
  DELETE /api/v1/hosts/{name}/bmc  forget the host's BMC
  POST   /api/v1/power             {"hosts": [...] and/or "range": "node[001-200]", "action"}: per host its
                                   result (always 200 for a well-formed request); one slow or wrong BMC
                                   fails its own host only ([power] concurrency and timeout)
All admin token. JSON <-> domain.power; the BMC calls are services/power/.
"""

from __future__ import annotations

import time

from domain import power
from domain.errors import Invalid
from domain.power import BmcView, PowerAnswer, PowerRequest, PowerResult, SetBmc
from services.api_context import ApiContext
from services.auth import Auth
from services.power.fleet import run_power
from services.routes import Call, Route, error, ok
from state.bmcs import record_power_op


async def set_bmc(call: Call[SetBmc]) -> BmcView:
    ctx, name = call.ctx, call.request.match_info["name"]
    if not await ctx.store.journal.run(power.set_bmc_op(ctx.sources(), name, await call.body())):
        raise Invalid(f"host {name} has no BMC yet: give its password too")
    return power.show_bmc(ctx.sources(), name)


async def show_bmc(call: Call[None]) -> BmcView:
    return power.show_bmc(call.ctx.sources(), call.request.match_info["name"])


async def remove_bmc(call: Call[None]) -> BmcView:
    ctx = call.ctx
    view, op = power.remove_bmc_op(ctx.sources(), call.request.match_info["name"])
    await ctx.store.journal.run(op)
    return view


async def power_action(call: Call[PowerRequest]) -> PowerAnswer:
    ctx = call.ctx
    req = power.checked_request(await call.body())
    start = time.monotonic()
    results = await power_and_record(ctx, req.action, req.hosts)
    return PowerAnswer(req.action, results, round(time.monotonic() - start, 3))


async def power_and_record(ctx: ApiContext, action: str, names: list[str]) -> list[PowerResult]:
    """`action` on the hosts' BMCs ([power] concurrency and timeout); each host's answer (or the BMC's error)
    becomes its last known power state."""
    settings = ctx.live.power
    targets, refused = power.power_targets(ctx.sources().reader, names)
    results = await run_power(action, names, targets, refused, concurrency=settings.concurrency,
                              timeout=settings.timeout)
    await ctx.store.journal.run(record_power_op(
        [(r.host, r.power, r.error) for r in results if r.host in targets], ctx.clock()))
    return results


ROUTES = [
    Route("PUT", "/api/v1/hosts/{name}/bmc", set_bmc,
          "Give the host a BMC (ipmi:// or redfish:// address, user, password, optional certificate pin); "
          "the password is stored 0600 and never shown",
          {200: ok("the host's BMC (no password)", BmcView), 400: error("malformed address, fingerprint or "
                                                                        "password"),
           404: error("no such host")}, auth=Auth.ADMIN, body=SetBmc),
    Route("GET", "/api/v1/hosts/{name}/bmc", show_bmc, "The host's BMC and its last power answer (no password)",
          {200: ok("the host's BMC", BmcView), 404: error("no such host, or it has no BMC")}, auth=Auth.ADMIN),
    Route("DELETE", "/api/v1/hosts/{name}/bmc", remove_bmc, "Forget the host's BMC and its credentials",
          {200: ok("the BMC forgotten", BmcView), 404: error("no such host, or it has no BMC")}, auth=Auth.ADMIN),
    Route("POST", "/api/v1/power", power_action,
          "One power action (status, on, off, cycle, pxe, pxe-cycle) on many hosts through their BMCs; each "
          "host answers for itself",
          {200: ok("per host its result", PowerAnswer), 400: error("unknown action, no hosts, malformed body")},
          auth=Auth.ADMIN, body=PowerRequest),
]
