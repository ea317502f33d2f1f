"""Bulk host operations: many hosts (a list and/or a range such as node[001-200]) in one request, each answering
for itself. A host that is refused (404 no such host, 409 a clash, 400 a bad value) fails alone; the others
go on. The answer is HTTP 200 with per-host results whenever the request is well formed (domain/bulk.py says
why not 207).

  POST /api/v1/bulk/reinstall {"hosts"?, "range"?, "power_cycle"?}: state assigned and a fresh install token
                              per host; with power_cycle, then network boot once and power cycle through the
                              BMCs ([power] concurrency and timeout)
  POST /api/v1/bulk/set       {"hosts"?, "range"?, "changes": {...}}: PATCH /api/v1/hosts/{name} on each
  POST /api/v1/bulk/remove    {"hosts"?, "range"?}: DELETE /api/v1/hosts/{name} on each
(Power actions on many hosts: POST /api/v1/power, which takes "range" too.)
"""

from __future__ import annotations

import time

from domain import bulk, hostadmin, hosts
from domain.bulk import BulkAnswer, BulkReinstall, BulkRemove, BulkResult, BulkSet
from domain.errors import DomainError
from domain.hostadmin import HostRecord
from domain.tokens import allows
from services.api_hostadmin import forget_machine, host_book, write_ops
from services.api_power import power_and_record
from services.auth import Auth, RoleRefused
from services.errors import http_status
from services.routes import Call, Route, error, ok
from state.hosts import host_by_name


async def bulk_reinstall(call: Call[BulkReinstall]) -> BulkAnswer:
    ctx, start = call.ctx, time.monotonic()
    req = await call.body()
    names = bulk.selected(req)
    if req.power_cycle and not allows(call.caller.role or "reader", "admin"):
        # the BMCs are the admin's (POST /api/v1/power): an operator reinstalls, it does not power cycle
        raise RoleRefused(f"token {call.caller.name} has the {call.caller.role} role; power_cycle needs admin",
                          call.caller.name or "-")
    now = ctx.clock()
    # One batch of writes (the journal commits them together), then each host's answer.
    futures = [ctx.store.journal.submit(hosts.reinstall_op(n, now)) for n in names]
    await ctx.store.journal.flush()
    results: dict[str, BulkResult] = {}
    for name, fut in zip(names, futures, strict=True):
        found = await fut
        results[name] = (BulkResult(name, True, 200) if found else
                         BulkResult(name, False, 404, f"no host named {name!r}"))
    marked = [n for n in names if results[n].ok]
    for name in marked:
        stored = host_by_name(ctx.store.reader, name)
        results[name] = BulkResult(name, True, 200, record=HostRecord.of(stored) if stored is not None else None)
    if req.power_cycle and marked:
        for r in await power_and_record(ctx, "pxe-cycle", marked):
            prev = results[r.host]
            results[r.host] = BulkResult(r.host, r.ok, 200 if r.ok else 502,
                                         None if r.ok else f"marked for reinstall, but its BMC failed: {r.error}",
                                         prev.record, r)
    return BulkAnswer.of([results[n] for n in names], time.monotonic() - start)


async def bulk_set(call: Call[BulkSet]) -> BulkAnswer:
    ctx, start = call.ctx, time.monotonic()
    req = await call.body()
    names = bulk.selected(req)
    changes = bulk.changes_given(await call.raw())
    out = []
    for name in names:
        try:  # each host by the one-host route's use case; its refusal is its own
            host, ops = hostadmin.change_host(host_book(ctx), name, changes, ctx.clock())
            await write_ops(ctx, f"host {name}", ops)
            stored = host_by_name(ctx.store.reader, name) or host
            out.append(BulkResult(name, True, 200, record=HostRecord.of(stored)))
        except DomainError as e:
            out.append(BulkResult(name, False, http_status(e), str(e)))
    return BulkAnswer.of(out, time.monotonic() - start)


async def bulk_remove(call: Call[BulkRemove]) -> BulkAnswer:
    ctx, start = call.ctx, time.monotonic()
    names = bulk.selected(await call.body())
    out = []
    for name in names:
        try:
            host, ops = hostadmin.remove_host(host_book(ctx), name)
            await write_ops(ctx, f"host {name}", ops)
            forget_machine(ctx, host)
            out.append(BulkResult(name, True, 200, record=HostRecord.of(host)))
        except DomainError as e:
            out.append(BulkResult(name, False, http_status(e), str(e)))
    return BulkAnswer.of(out, time.monotonic() - start)


_ANSWER = "per host (in the order named): ok, the one-host route's status, the error; 200 whenever the " \
          "request is well formed"

ROUTES = [
    Route("POST", "/api/v1/bulk/reinstall", bulk_reinstall,
          "Reinstall many hosts (a list and/or a range): each installs again at its next PXE boot; with "
          "power_cycle (admin role), each is then booted from the network once and power cycled through its BMC",
          {200: ok(_ANSWER, BulkAnswer), 400: error("no hosts, a bad range, more than 10,000 hosts"),
           403: error("power_cycle by a token below the admin role")},
          auth=Auth.OPERATOR, body=BulkReinstall),
    Route("POST", "/api/v1/bulk/set", bulk_set,
          "The same change (the keys of PATCH /api/v1/hosts/{name}) on many hosts, each checked alone",
          {200: ok(_ANSWER, BulkAnswer), 400: error("no hosts, a bad range, no changes")},
          auth=Auth.OPERATOR, body=BulkSet),
    Route("POST", "/api/v1/bulk/remove", bulk_remove,
          "Remove many hosts (and their reservations), each alone",
          {200: ok(_ANSWER, BulkAnswer), 400: error("no hosts, a bad range")},
          auth=Auth.OPERATOR, body=BulkRemove),
]
