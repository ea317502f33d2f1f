"""GET /metrics: the daemon in Prometheus text format (open, read-only, like /api/v1/status);
GET /api/v1/pools: the same pool usage as JSON (the dashboard shows it).

Service counters are read from the daemon's status document (ctx.status(): each service's status()),
the very numbers /api/v1/status shows, so nothing is counted twice or separately. Well-known counters
get their own metric names (DHCP messages by type, bytes and transfers, rsync restarts); every other
service counter is still exported, as imageserver_service_events_total{service, event}.
Installs, hosts and pool usage come from the model (domain.metrics) at scrape time; install outcomes and
durations are tallied incrementally (state.installstats: only the events since the previous scrape are read).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from aiohttp import web

from domain.metrics import PoolList, PoolUsage, model_metrics, pool_usage
from protocols.prometheus import CONTENT_TYPE, Family, render
from services.auth import Auth
from services.routes import Call, Route, ok, text
from state.hosts import HOST_STATES
from state.installstats import DURATION_BUCKETS, InstallTally

__all__ = ["DURATION_BUCKETS", "ROUTES", "PoolUsage", "collect"]
_DHCP_PROBLEMS = ("malformed", "ignored", "no_reply", "probe_conflicts", "encode_errors", "send_errors",
                  "send_dropped", "receive_errors", "errors", "acks_dropped_commit_failed")
_RESPONSES = re.compile(r"^responses_(\dxx)$")


def _families() -> dict[str, Family]:
    spec = [
        ("imageserver_info", "gauge", "Version of the running imageserver (always 1)."),
        ("imageserver_uptime_seconds", "gauge", "Seconds since the daemon started."),
        ("imageserver_service_up", "gauge", "1 if the service is running, else 0."),
        ("imageserver_dhcp_received_total", "counter", "DHCP messages received, by message type."),
        ("imageserver_dhcp_sent_total", "counter", "DHCP replies sent, by message type (offer, ack, nak)."),
        ("imageserver_dhcp_problems_total", "counter",
         "DHCP messages not answered normally, by outcome (malformed, ignored, no_reply, ...)."),
        ("imageserver_dhcp_pool_size", "gauge", "Addresses in the dynamic pool, per subnet."),
        ("imageserver_dhcp_pool_active_leases", "gauge", "Active leases inside the dynamic pool, per subnet."),
        ("imageserver_dhcp_reservations", "gauge", "Static reservations, per subnet."),
        ("imageserver_tftp_sent_bytes_total", "counter", "Bytes sent in TFTP transfers."),
        ("imageserver_tftp_transfers_started_total", "counter", "TFTP transfers started."),
        ("imageserver_tftp_transfers_finished_total", "counter",
         "TFTP transfers finished, by outcome (completed, aborted by the client, failed)."),
        ("imageserver_http_requests_total", "counter", "HTTP requests."),
        ("imageserver_http_responses_total", "counter", "HTTP responses by status class."),
        ("imageserver_http_sent_bytes_total", "counter", "HTTP response body bytes sent (Content-Length)."),
        ("imageserver_http_file_transfers_total", "counter", "Boot files served over HTTP."),
        ("imageserver_boot_scripts_total", "counter", "iPXE boot scripts served, by decision."),
        ("imageserver_rsyncd_restarts_total", "counter", "Restarts of the supervised rsync daemon."),
        ("imageserver_rsyncd_sent_bytes_total", "counter", "Bytes rsync sent to installers (from its log)."),
        ("imageserver_service_events_total", "counter", "Every other service counter, by service and event."),
        ("imageserver_installs_total", "counter", "Finished installs by outcome (done, failed)."),
        ("imageserver_install_duration_seconds", "histogram",
         "Successful installs: seconds from the installer's first report to done."),
        ("imageserver_hosts", "gauge", "Hosts by state."),
        ("imageserver_store_rows", "gauge", "Rows in the state database, by table."),
    ]
    return {name: Family(name, kind, text) for name, kind, text in spec}


def _service_counters(fams: dict[str, Family], name: str, counters: Mapping[str, Any]) -> None:
    """Map one service's counters onto metric names; whatever has no name of its own goes to events."""
    for key, value in sorted(counters.items()):
        if not isinstance(value, int | float) or isinstance(value, bool):
            continue
        if name == "dhcp" and key.startswith("in_"):
            fams["imageserver_dhcp_received_total"].add(value, {"type": key[3:]})
        elif name == "dhcp" and key.startswith("out_"):
            fams["imageserver_dhcp_sent_total"].add(value, {"type": key[4:]})
        elif name == "dhcp" and key in _DHCP_PROBLEMS:
            fams["imageserver_dhcp_problems_total"].add(value, {"outcome": key})
        elif name == "tftp" and key == "bytes_sent":
            fams["imageserver_tftp_sent_bytes_total"].add(value)
        elif name == "tftp" and key == "transfers_started":
            fams["imageserver_tftp_transfers_started_total"].add(value)
        elif name == "tftp" and key in ("transfers_completed", "transfers_aborted", "transfers_failed"):
            fams["imageserver_tftp_transfers_finished_total"].add(value, {"outcome": key.removeprefix("transfers_")})
        elif name == "http" and key == "requests":
            fams["imageserver_http_requests_total"].add(value)
        elif name == "http" and (m := _RESPONSES.match(key)):
            fams["imageserver_http_responses_total"].add(value, {"code": m.group(1)})
        elif name == "http" and key == "bytes_out":
            fams["imageserver_http_sent_bytes_total"].add(value)
        elif name == "http" and key == "files":
            fams["imageserver_http_file_transfers_total"].add(value)
        elif name == "http" and key.startswith("boot_") and key != "boot_scripts":
            fams["imageserver_boot_scripts_total"].add(value, {"decision": key.removeprefix("boot_")})
        elif name == "rsyncd" and key == "restarts":
            fams["imageserver_rsyncd_restarts_total"].add(value)
        elif name == "rsyncd" and key == "bytes_sent":
            fams["imageserver_rsyncd_sent_bytes_total"].add(value)
        elif not (name == "http" and key == "boot_scripts"):  # boot_scripts is the sum of the decisions
            fams["imageserver_service_events_total"].add(value, {"service": name, "event": key})


def collect(status: Mapping[str, Any], *, installs: InstallTally, host_states: Mapping[str, int],
            pools: Iterable[PoolUsage]) -> list[Family]:
    fams = _families()
    fams["imageserver_info"].add(1, {"version": str(status.get("version", "unknown"))})
    fams["imageserver_uptime_seconds"].add(float(status.get("uptime") or 0.0))
    for name, svc in sorted((status.get("services") or {}).items()):
        if not isinstance(svc, Mapping):
            continue
        fams["imageserver_service_up"].add(1 if svc.get("state") == "running" else 0, {"service": name})
        _service_counters(fams, name, svc.get("counters") or {})
    for table, count in sorted((status.get("counts") or {}).items()):
        fams["imageserver_store_rows"].add(count, {"table": table})
    for outcome in ("done", "failed"):
        fams["imageserver_installs_total"].add(installs.outcomes.get(outcome, 0), {"outcome": outcome})
    fams["imageserver_install_duration_seconds"].histogram_counts(installs.counts, installs.buckets, installs.total)
    for state in sorted({*HOST_STATES, *host_states}):
        fams["imageserver_hosts"].add(host_states.get(state, 0), {"state": state})
    for pool in pools:
        fams["imageserver_dhcp_pool_size"].add(pool.size, {"subnet": pool.subnet})
        fams["imageserver_dhcp_pool_active_leases"].add(pool.active, {"subnet": pool.subnet})
        fams["imageserver_dhcp_reservations"].add(pool.reserved, {"subnet": pool.subnet})
    return list(fams.values())


async def metrics(call: Call[None]) -> web.Response:
    ctx = call.ctx
    model = model_metrics(ctx.sources(), ctx.live.pools, ctx.live.installs, ctx.clock())
    text = render(collect(ctx.status(), installs=model.installs, host_states=model.host_states, pools=model.pools))
    return web.Response(body=text.encode(), headers={"Content-Type": CONTENT_TYPE, "Cache-Control": "no-store"})


async def pools(call: Call[None]) -> web.Response:
    ctx = call.ctx
    return call.answer(PoolList(pool_usage(ctx.sources(), ctx.live.pools, ctx.clock())),
                       headers={"Cache-Control": "no-store"})


ROUTES = [
    Route("GET", "/metrics", metrics,
          "Prometheus metrics (text format 0.0.4): DHCP messages by type and outcome, TFTP/HTTP bytes and transfers, "
          "installs by outcome, install durations, hosts by state, pool usage, rsync daemon restarts and every "
          "other service counter",
          {200: text("the exposition")}),
    Route("GET", "/api/v1/pools", pools,
          "Pool usage per DHCP subnet: pool size, active leases in the pool, reservations, and addresses in "
          "quarantine (DECLINEd or answering a conflict probe; capped by [dhcp] decline_max_share)",
          {200: ok("pools", PoolList)}, auth=Auth.READER),
]
