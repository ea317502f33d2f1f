// The imageserver dashboard: polls the read-only JSON API every 2 s; no libraries, no build step.
// Everything shown comes from the wire (hostnames, vendor classes), so it is only ever set as text
// (textContent), never parsed as HTML.
// Reading hosts, machines and images needs a token (a named one of any role, or the admin token); without
// one only the open status is read. The one write is "assign" on a machine waiting for a host (the operator
// role). The token is typed once: it lives in this tab's sessionStorage and leaves it only as an
// Authorization header (never in the page, a URL or persistent storage), so closing the tab forgets it.
"use strict";

const POLL_MS = 2000;
const API = {
  status: "/api/v1/status",
  pools: "/api/v1/pools",
  hosts: "/api/v1/hosts",
  machines: "/api/v1/machines",
  images: "/api/v1/images",
};
const MAX_MACHINES = 25;
const MAX_WAITING = 50;
// Only what is shown is polled: the most recently seen machines, and those waiting for a host (a page each;
// the machine table can hold thousands, and the API pages it).
const RECENT_PAGE = `?limit=${MAX_MACHINES}`;
const WAITING_PAGE = `?unknown=1&limit=${MAX_WAITING}`;
const TOKEN_KEY = "imageserver.admin-token";

function el(tag, props, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (key === "class") node.className = value;
    else if (key === "title") node.title = value;
    else node.setAttribute(key, value);
  }
  for (const child of children) {
    node.append(child instanceof Node ? child : document.createTextNode(child == null ? "-" : String(child)));
  }
  return node;
}

// On a phone each row becomes a card and each cell shows its column's name (CSS: td::before).
function labelCells(tableId, rows) {
  const names = Array.from(document.querySelectorAll(`#${tableId} thead th`), (th) => th.textContent);
  for (const row of rows) {
    Array.from(row.children).forEach((cell, i) => { if (names[i]) cell.dataset.label = names[i]; });
  }
}

function fill(tableId, rows) {
  const body = document.querySelector(`#${tableId} tbody`);
  labelCells(tableId, rows);
  body.replaceChildren(...rows);
  if (!rows.length) body.append(noneRow(tableId));
}

function noneRow(tableId) {
  const cell = el("td", { class: "muted none" }, "none");
  cell.colSpan = document.querySelectorAll(`#${tableId} thead th`).length;
  return el("tr", {}, cell);
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
      el("td", {}, `${p.active} (${(used * 100).toFixed(0)}%)`), el("td", {}, p.size), el("td", {}, p.reserved),
      el("td", {}, p.quarantined ?? 0));
  }));
}

// Hosts, images and machines ------------------------------------------------------------------------

function progressCell(progress) {
  const cell = el("td", {});
  if (!progress || !progress.stage) {
    cell.append(el("span", { class: "muted" }, "-"));
    return cell;
  }
  let text = `${progress.stage} \u00b7 ${duration(progress.elapsed)}`;
  if (progress.failure) text += ` \u00b7 failed at ${progress.failure.stage}: ${progress.failure.reason}`;
  if (progress.total) {
    // A finished install is whole even if its last byte report came before the end of the copy.
    cell.append(bar(progress.stage === "done" ? 1 : progress.bytes / progress.total, false), " ");
    text += ` \u00b7 ${bytes(progress.bytes)} of ${bytes(progress.total)}`;
  } else if (progress.bytes != null) {
    text += ` \u00b7 ${bytes(progress.bytes)}`;
  }
  cell.append(el("span", { class: progress.failure ? "error" : "" }, text));
  return cell;
}

function imageText(h) {
  // What the host installs: its own image, else its profile's (h.effective says which).
  const eff = h.effective || {};
  const image = eff.image ? eff.image.value : h.image;
  const version = eff.version ? eff.version.value : h.version;
  if (!image) return "-";
  const from = eff.image && eff.image.source !== "host" ? ` (${eff.image.source})` : "";
  return `${image}${version != null ? " v" + version : ""}${from}`;
}

function powerCell(power) {
  // The last known power state (power commands and the periodic poll); a BMC error is the host's error.
  if (!power) return el("td", {}, el("span", { class: "muted" }, "-"));
  if (power.error) return el("td", {}, el("span", { class: "error" }, `BMC error: ${power.error}`));
  return el("td", {}, power.state || "?");
}

function renderHosts(hosts) {
  fill("hosts", hosts.map((h) => el("tr", {},
    el("td", {}, h.name), el("td", {}, h.mac), el("td", {}, h.ip || (h.binding && h.binding.ip) || "-"),
    el("td", {}, imageText(h)),
    el("td", {}, state(h.state)), progressCell(h.progress), powerCell(h.power))));
}

function renderImages(images) {
  // Newest version of each image first: it is the one hosts without a pinned version install.
  const sorted = images.slice().sort((a, b) => a.name.localeCompare(b.name) || b.version - a.version);
  fill("images", sorted.map((i) => {
    const version = el("td", {}, `v${i.version}`);
    if (i.newest) version.append(" ", el("span", { class: "badge" }, "newest"));
    const created = el("td", { title: new Date(i.created * 1000).toLocaleString() }, ago(i.created));
    return el("tr", {}, el("td", {}, i.name), version, created, el("td", {}, bytes(i.bytes) || "-"),
      el("td", {}, i.files), el("td", { class: "wrap" }, i.source), el("td", {}, (i.hosts || []).join(", ") || "-"));
  }));
}

function hardwareCell(hw) {
  // The machine's inventory as its installer last posted it: CPU, memory, disks, NICs (the whole line on hover).
  if (!hw) return el("td", {}, el("span", { class: "muted" }, "-"));
  const parts = [hw.cpu || "? CPU", hw.memory_mb != null ? `${hw.memory_mb} MiB` : "? MiB",
    `${hw.disks} disk${hw.disks === 1 ? "" : "s"}${hw.disks ? " (" + bytes(hw.disk_bytes) + ")" : ""}`,
    `${hw.nics} NIC${hw.nics === 1 ? "" : "s"}`];
  return el("td", { class: "wrap", title: hw.text }, parts.join(" \u00b7 "));
}

function renderMachines(machines) {
  const recent = machines.slice().sort((a, b) => (b.last_seen || 0) - (a.last_seen || 0)).slice(0, MAX_MACHINES);
  fill("machines", recent.map((m) => el("tr", {},
    el("td", {}, m.mac), el("td", {}, ago(m.last_seen)), el("td", {}, ago(m.first_seen)),
    el("td", {}, m.arch), el("td", {}, m.user_class || m.vendor_class),
    el("td", {}, m.host ? `${m.host} (${m.host_state})` : "unknown"), el("td", {}, m.boot),
    hardwareCell(m.hardware), powerCell(m.power))));
}

// Machines waiting for a host, with their assign forms ----------------------------------------------
// Rows are kept by MAC across polls (not rebuilt), so a host name being typed is not lost every 2 s.

const waiting = new Map(); // MAC -> {row, seen, arch, cls}

function storedToken() {
  try {
    return sessionStorage.getItem(TOKEN_KEY) || "";
  } catch (error) {
    return ""; // storage disabled: the operator is told to type the token
  }
}

function keepToken(value) {
  try {
    if (value) sessionStorage.setItem(TOKEN_KEY, value);
    else sessionStorage.removeItem(TOKEN_KEY);
    return true;
  } catch (error) {
    return false; // storage disabled (a private mode, a policy): nothing is kept anywhere else either
  }
}

function showToken(note) {
  const kept = storedToken() !== "";
  const line = document.getElementById("token-state");
  line.textContent = note || (kept ? "kept for this tab" : "not set");
  line.className = note ? "error" : "muted";
  document.getElementById("token-forget").disabled = !kept;
}

function setupToken() {
  const input = document.getElementById("token");
  document.getElementById("token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const value = input.value.trim();
    input.value = ""; // not left in the page once kept
    showToken(value && !keepToken(value) ? "cannot keep it: this browser has session storage turned off" : "");
    loop(); // read with it now, not at the next poll
  });
  document.getElementById("token-forget").addEventListener("click", () => {
    keepToken("");
    showToken();
  });
  showToken();
}

function assignStatus(text, isError) {
  const status = document.getElementById("assign-status");
  status.textContent = text;
  status.className = isError ? "error" : "ok";
}

async function assign(mac, input, button, message) {
  const say = (text, cls) => { message.textContent = text; message.className = `assign-message ${cls}`; };
  const token = storedToken();
  if (!token) {
    say("type the admin token above first", "error");
    document.getElementById("token").focus();
    return;
  }
  const name = input.value.trim();
  button.disabled = true;
  say("assigning\u2026", "muted");
  try {
    const response = await fetch(`/api/v1/machines/${encodeURIComponent(mac)}/assign`, {
      method: "POST",
      cache: "no-store",
      headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/json", Accept: "application/json" },
      body: JSON.stringify(name ? { host: name } : { next: true }),
    });
    const doc = await response.json().catch(() => ({}));
    if (response.status === 401) {
      keepToken(""); // a wrong token is not kept: the next try asks for it again
      showToken();
      say("the token was refused (HTTP 401); type it again", "error");
    } else if (response.status === 403) {
      say(`this token may not assign (HTTP 403): ${doc.error || response.statusText}`, "error");
    } else if (!response.ok) {
      say(`not assigned (HTTP ${response.status}): ${doc.error || response.statusText}`, "error");
    } else {
      const host = doc.host || {};
      say("", "");
      input.value = "";
      assignStatus(`${mac} is now host ${host.name} (${host.state})`, false);
      loop(); // show it now, not at the next poll
    }
  } catch (error) {
    say(`cannot reach the imageserver: ${error.message}`, "error");
  } finally {
    button.disabled = false;
  }
}

function waitingRow(mac) {
  const input = el("input", { type: "text", list: "free-hosts", placeholder: "next free", autocomplete: "off",
    spellcheck: "false", "aria-label": `host for ${mac}` });
  const button = el("button", { type: "submit", class: "assign" }, "Assign");
  const message = el("span", { class: "assign-message", role: "alert" });
  const form = el("form", { class: "assign-form", "data-mac": mac }, input, button, message);
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    assign(mac, input, button, message);
  });
  const entry = { seen: el("td", {}), arch: el("td", {}), cls: el("td", {}) };
  entry.row = el("tr", { "data-mac": mac }, el("td", {}, mac), entry.seen, entry.arch, entry.cls, el("td", {}, form));
  labelCells("discovered", [entry.row]);
  return entry;
}

function renderWaiting(machines, total, hosts) {
  const body = document.querySelector("#discovered tbody");
  // A busy LAN shows many machines that will never be hosts: the most recently seen ones are listed.
  const all = machines.filter((m) => !m.host);
  const current = all.slice().sort((a, b) => (b.last_seen || 0) - (a.last_seen || 0)).slice(0, MAX_WAITING)
    .sort((a, b) => (a.first_seen || 0) - (b.first_seen || 0) || a.mac.localeCompare(b.mac));
  const count = Math.max(total || 0, all.length);
  document.getElementById("waiting-more").textContent = count > current.length
    ? `the ${current.length} most recently seen of ${count}; all of them: GET /api/v1/machines?unknown=1` : "";
  const macs = new Set(current.map((m) => m.mac));
  for (const [mac, entry] of waiting) {
    if (!macs.has(mac)) { entry.row.remove(); waiting.delete(mac); }
  }
  for (const m of current) {
    let entry = waiting.get(m.mac);
    if (!entry) {
      entry = waitingRow(m.mac);
      waiting.set(m.mac, entry);
      body.append(entry.row); // new machines go last: rows never move under the operator's finger
    }
    entry.seen.textContent = ago(m.last_seen);
    entry.arch.textContent = m.arch ?? "-";
    entry.cls.textContent = m.user_class || m.vendor_class || "-";
  }
  const none = body.querySelector("td.none");
  if (current.length && none) none.parentElement.remove();
  if (!current.length && !none) body.append(noneRow("discovered"));
  // Suggestions for the host field: hosts that have no machine yet (as addclients makes them).
  const free = hosts.filter((h) => !h.mac).map((h) => h.name);
  const list = document.getElementById("free-hosts");
  if (Array.from(list.options, (o) => o.value).join("\n") !== free.join("\n")) {
    list.replaceChildren(...free.map((name) => el("option", { value: name })));
  }
}

// Polling -------------------------------------------------------------------------------------------

async function getJson(url) {
  const headers = { Accept: "application/json" };
  const token = storedToken();
  if (token) headers.Authorization = `Bearer ${token}`;
  const response = await fetch(url, { headers, cache: "no-store" });
  if (!response.ok) {
    const error = new Error(`${url}: HTTP ${response.status}`);
    error.status = response.status;
    throw error;
  }
  return response.json();
}

let hostsRoute = true; // false once /api/v1/hosts answered 404: hosts are then shown from the machines

async function refresh() {
  if (!storedToken()) { // the lists need a token: only the open status is read (no refused requests)
    renderStatus(await getJson(API.status));
    const error = new Error("type a token above to see hosts, machines and images (reader role or better)");
    error.status = 401;
    throw error;
  }
  const [status, pools, machines, waitingPage, images] = await Promise.all([
    getJson(API.status), getJson(API.pools).catch(() => ({ pools: [] })), getJson(API.machines + RECENT_PAGE),
    getJson(API.machines + WAITING_PAGE), getJson(API.images).catch(() => ({ images: [] })),
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
  renderWaiting(waitingPage.machines || [], waitingPage.total, hosts);
  renderImages(images.images || []);
  renderMachines(machines.machines || []);
}

let timer = null;
let busy = false;
let again = false;

async function loop() {
  if (busy) { again = true; return; } // one refresh at a time; an assign asks for one more
  busy = true;
  clearTimeout(timer);
  const updated = document.getElementById("updated");
  try {
    await refresh();
    updated.textContent = `updated ${new Date().toLocaleTimeString()}`;
    updated.className = "muted";
  } catch (error) {
    if (error.status === 401 && storedToken()) {
      keepToken(""); // a refused token is not kept
      showToken("the token was refused (HTTP 401); type it again");
      updated.textContent = "the token was refused (HTTP 401)";
    } else {
      updated.textContent = error.status === 401 ? error.message : `cannot reach the imageserver: ${error.message}`;
    }
    updated.className = "error";
  }
  busy = false;
  if (again) {
    again = false;
    loop();
  } else {
    timer = setTimeout(loop, POLL_MS);
  }
}

setupToken();
loop();
