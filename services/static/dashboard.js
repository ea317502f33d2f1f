// The imageserver dashboard: read-only, polls the JSON API every 2 s, no libraries, no build step.
// Everything shown comes from the wire (hostnames, vendor classes), so it is only ever set as text
// (textContent), never parsed as HTML.
"use strict";

const POLL_MS = 2000;
const API = {
  status: "/api/v1/status",
  pools: "/api/v1/pools",
  hosts: "/api/v1/hosts",
  machines: "/api/v1/machines",
};
const MAX_MACHINES = 25;

function el(tag, props, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (key === "class") node.className = value;
    else if (key === "title") node.title = value;
  }
  for (const child of children) {
    node.append(child instanceof Node ? child : document.createTextNode(child == null ? "-" : String(child)));
  }
  return node;
}

function fill(tableId, rows) {
  const body = document.querySelector(`#${tableId} tbody`);
  body.replaceChildren(...rows);
  if (!rows.length) {
    const cols = document.querySelectorAll(`#${tableId} thead th`).length;
    const cell = el("td", { class: "muted" }, "none");
    cell.colSpan = cols;
    body.append(el("tr", {}, cell));
  }
}

function ago(seconds) {
  if (seconds == null) return "-";
  const s = Math.max(0, Math.round(Date.now() / 1000 - seconds));
  if (s < 60) return `${s}s ago`;
  if (s < 3600) return `${Math.floor(s / 60)}m ago`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ago`;
  return `${Math.floor(s / 86400)}d ago`;
}

function duration(seconds) {
  const s = Math.round(seconds || 0);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${s % 60}s`;
  return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
}

function bytes(n) {
  if (n == null) return "";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
}

function bar(fraction, full) {
  const pct = Math.max(0, Math.min(1, fraction || 0)) * 100;
  const fillSpan = el("span", {});
  fillSpan.style.width = `${pct.toFixed(1)}%`; // CSSOM, not a style attribute: allowed by the page's CSP
  return el("span", { class: full ? "bar full" : "bar", title: `${pct.toFixed(0)}%` }, fillSpan);
}

function state(text) {
  return el("span", { class: `state state-${text}` }, text);
}

// Services ------------------------------------------------------------------------------------------

const SHOWN_COUNTERS = 6;

function renderStatus(doc) {
  document.getElementById("summary").textContent =
    `version ${doc.version} \u00b7 up ${duration(doc.uptime)} \u00b7 ` +
    `${(doc.counts || {}).hosts ?? 0} hosts \u00b7 ${(doc.counts || {}).active_leases ?? 0} active leases`;
  const rows = Object.entries(doc.services || {}).map(([name, svc]) => {
    const counters = Object.entries(svc.counters || {}).sort((a, b) => b[1] - a[1]);
    const text = counters.slice(0, SHOWN_COUNTERS).map(([k, v]) => `${k}=${v}`).join(" ");
    const more = counters.length > SHOWN_COUNTERS ? ` +${counters.length - SHOWN_COUNTERS} more` : "";
    const st = el("td", {}, state(svc.state || "?"));
    if (svc.error) st.append(el("div", { class: "error" }, svc.error));
    return el("tr", {}, el("td", {}, name), st, el("td", {}, (svc.listen || []).join(", ") || "-"),
      el("td", { class: "counters", title: counters.map(([k, v]) => `${k}=${v}`).join("\n") }, (text || "-") + more));
  });
  fill("services", rows);
}

function renderPools(doc) {
  fill("pools", (doc.pools || []).map((p) => {
    const used = p.size ? p.active / p.size : 0;
    return el("tr", {}, el("td", {}, p.subnet), el("td", {}, bar(used, used >= 0.9)),
      el("td", {}, `${p.active} (${(used * 100).toFixed(0)}%)`), el("td", {}, p.size), el("td", {}, p.reserved));
  }));
}

// Hosts and machines --------------------------------------------------------------------------------

function progressCell(progress) {
  const cell = el("td", {});
  if (!progress || !progress.stage) {
    cell.append(el("span", { class: "muted" }, "-"));
    return cell;
  }
  let text = `${progress.stage} \u00b7 ${duration(progress.elapsed)}`;
  if (progress.failure) text += ` \u00b7 failed at ${progress.failure.stage}: ${progress.failure.reason}`;
  if (progress.total) {
    cell.append(bar(progress.bytes / progress.total, false), " ");
    text += ` \u00b7 ${bytes(progress.bytes)} of ${bytes(progress.total)}`;
  } else if (progress.bytes != null) {
    text += ` \u00b7 ${bytes(progress.bytes)}`;
  }
  cell.append(el("span", { class: progress.failure ? "error" : "" }, text));
  return cell;
}

function renderHosts(hosts) {
  fill("hosts", hosts.map((h) => el("tr", {},
    el("td", {}, h.name), el("td", {}, h.mac), el("td", {}, h.ip || (h.binding && h.binding.ip) || "-"),
    el("td", {}, h.image ? `${h.image}${h.version != null ? " v" + h.version : ""}` : "-"),
    el("td", {}, state(h.state)), progressCell(h.progress))));
}

function renderMachines(machines) {
  const recent = machines.slice().sort((a, b) => (b.last_seen || 0) - (a.last_seen || 0)).slice(0, MAX_MACHINES);
  fill("machines", recent.map((m) => el("tr", {},
    el("td", {}, m.mac), el("td", {}, ago(m.last_seen)), el("td", {}, ago(m.first_seen)),
    el("td", {}, m.arch), el("td", {}, m.user_class || m.vendor_class),
    el("td", {}, m.host ? `${m.host} (${m.host_state})` : "unknown"), el("td", {}, m.boot))));
}

// Polling -------------------------------------------------------------------------------------------

async function getJson(url) {
  const response = await fetch(url, { headers: { Accept: "application/json" }, cache: "no-store" });
  if (!response.ok) {
    const error = new Error(`${url}: HTTP ${response.status}`);
    error.status = response.status;
    throw error;
  }
  return response.json();
}

let hostsRoute = true; // false once /api/v1/hosts answered 404: hosts are then shown from the machines

async function refresh() {
  const [status, pools, machines] = await Promise.all([
    getJson(API.status), getJson(API.pools).catch(() => ({ pools: [] })), getJson(API.machines),
  ]);
  renderStatus(status);
  renderPools(pools);
  let hosts = null;
  if (hostsRoute) {
    try {
      hosts = (await getJson(API.hosts)).hosts;
    } catch (error) {
      if (error.status !== 404) throw error;
      hostsRoute = false;
    }
  }
  if (hosts === null) {
    hosts = machines.machines.filter((m) => m.host).map((m) => ({ name: m.host, mac: m.mac, state: m.host_state }));
  }
  renderHosts(hosts);
  renderMachines(machines.machines || []);
}

async function loop() {
  const updated = document.getElementById("updated");
  try {
    await refresh();
    updated.textContent = `updated ${new Date().toLocaleTimeString()}`;
    updated.className = "muted";
  } catch (error) {
    updated.textContent = `cannot reach the imageserver: ${error.message}`;
    updated.className = "error";
  }
  setTimeout(loop, POLL_MS);
}

loop();
