// Tollgate console: every figure comes from the JSON API (/api/...), nothing from elsewhere.
// Text goes into the page as text (textContent), never as markup.
"use strict";

const main = document.getElementById("main");
const sinceSelect = document.getElementById("since");
const SVG = "http://www.w3.org/2000/svg";
const COLORS = ["#3b7ddd", "#e8a33d", "#4caf7a", "#d9534f", "#8e6bd1", "#2bb3c0", "#c77c48", "#7f8c9d"];
let live = null; // the Live view's next poll

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") node.className = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(c == null ? "" : String(c)));
  return node;
}

function svg(tag, attrs, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  if (text != null) node.textContent = text;
  return node;
}

function sinceParam() {
  const now = new Date();
  const day = now.toISOString().slice(0, 10);
  switch (sinceSelect.value) {
    case "today": return day;
    case "7d": return new Date(now.getTime() - 7 * 86400e3).toISOString().slice(0, 13) + ":00";
    case "month": return day.slice(0, 8) + "01";
    default: return null;
  }
}

function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params || {})) if (v != null && v !== "") q.set(k, v);
  const since = sinceParam();
  if (since && !q.has("since")) q.set("since", since);
  const s = q.toString();
  return s ? "?" + s : "";
}

async function api(path, params) {
  const answer = await fetch(path + query(params), { headers: { Accept: "application/json" } });
  if (!answer.ok) throw new Error(path + ": " + answer.status);
  return answer.json();
}

function ago(ts) {
  const s = Math.max(0, (Date.now() - Date.parse(ts)) / 1000);
  return s < 120 ? Math.round(s) + " s ago" : s < 7200 ? Math.round(s / 60) + " min ago" : s < 172800 ? Math.round(s / 3600) + " h ago" : Math.round(s / 86400) + " days ago";
}

function money(v) { return v == null ? "" : "$" + Number(v).toFixed(Math.abs(v) >= 1 ? 2 : 6); }
function kinds(map) { return map ? Object.entries(map).map(([k, n]) => k + " " + n).join(", ") : ""; }

// A table that sorts (click a heading), filters (the text box) and exports CSV (the API's own).
function table(title, columns, rows, opts) {
  opts = opts || {};
  const box = el("section", { id: opts.id || "" });
  const filter = el("input", { type: "search", placeholder: "filter", "aria-label": "filter " + title });
  const count = el("span", { class: "count" });
  const bar = el("div", { class: "bar" }, filter, count);
  if (opts.csv) bar.append(el("a", { class: "button", href: opts.csv, download: "" }, "Export CSV"));
  for (const extra of opts.extras || []) bar.prepend(extra);
  box.append(el("h2", {}, title), bar);
  const thead = el("tr");
  const tbody = el("tbody");
  const tableNode = el("table", { class: "data" }, el("thead", {}, thead), tbody);
  box.append(tableNode);
  let sortKey = opts.sort || null, sortDir = opts.sortDir || 1;
  const cellText = (c, r) => (c.format ? c.format(r[c.key], r) : r[c.key] == null ? "" : String(r[c.key]));
  columns.forEach((c) => {
    const th = el("th", { "data-key": c.key }, c.label);
    th.addEventListener("click", () => { sortDir = sortKey === c.key ? -sortDir : 1; sortKey = c.key; draw(); });
    thead.append(th);
  });
  function draw() {
    const needle = filter.value.toLowerCase();
    let shown = rows.filter((r) => !needle || columns.some((c) => cellText(c, r).toLowerCase().includes(needle)));
    if (sortKey) {
      shown = shown.slice().sort((a, b) => {
        const x = a[sortKey], y = b[sortKey];
        if (x == null) return 1; if (y == null) return -1;
        return (typeof x === "number" && typeof y === "number" ? x - y : String(x).localeCompare(String(y))) * sortDir;
      });
    }
    for (const th of thead.children) th.className = th.dataset.key === sortKey ? (sortDir > 0 ? "asc" : "desc") : "";
    tbody.replaceChildren(...shown.map((r) => {
      const tr = el("tr", { class: (opts.rowClass ? opts.rowClass(r) : "") + (opts.onRow ? " clickable" : "") });
      if (r.unverified) { tr.classList.add("unverified"); tr.title = "Unverified: after a fault in the audit's chain."; }
      if (opts.onRow) tr.addEventListener("click", () => opts.onRow(r));
      for (const c of columns) tr.append(el("td", { class: c.num ? "num" : c.wrap ? "reason" : "" }, cellText(c, r)));
      return tr;
    }));
    count.textContent = shown.length + " of " + rows.length;
  }
  filter.addEventListener("input", draw);
  box.redraw = (newRows) => { rows = newRows; draw(); };
  draw();
  if (!rows.length) box.append(el("p", { class: "empty" }, opts.empty || "Nothing recorded yet."));
  return box;
}

// ---- Live

const LIVE_COLUMNS = [
  { key: "ts", label: "time" },
  { key: "event", label: "kind" },
  { key: "client", label: "client", format: (v, r) => v || (r.upstream_key ? "anonymous " + r.upstream_key : "") },
  { key: "provider", label: "provider / server / host", format: (v, r) => v || r.server || r.host || "" },
  { key: "model", label: "model / tool", format: (v, r) => v || r.tool || r.method || "" },
  { key: "decision", label: "decision" },
  { key: "refusal", label: "refusal" },
  { key: "deny_reasons", label: "reason", wrap: true, format: (v, r) => (v && v.length ? v.join("; ") : r.error || "") },
  { key: "status", label: "status", num: true },
  { key: "total_tokens", label: "tokens", num: true },
  { key: "cost_usd", label: "cost", num: true, format: money },
  { key: "latency_ms", label: "ms", num: true, format: (v, r) => (v != null ? v : r.duration_ms != null ? r.duration_ms : "") },
  { key: "findings", label: "findings", format: (v, r) => kinds(Object.assign({}, v || {}, r.answer_findings || {})) },
];

async function viewLive(params) {
  const filters = { client: params.get("client") || "", provider: "", decision: "", event: "" };
  const inputs = {};
  const bar = [];
  for (const name of ["client", "provider", "decision", "event"]) {
    const input = name === "decision"
      ? el("select", { name }, el("option", { value: "" }, "any decision"), el("option", { value: "allow" }, "allow"), el("option", { value: "deny" }, "deny"))
      : name === "event"
        ? el("select", { name }, ...["", "llm_call", "mcp_call", "connection", "tollgate_started", "tollgate_stopped"].map((v) => el("option", { value: v }, v || "any kind")))
        : el("input", { name, placeholder: name, size: 12 });
    input.value = filters[name];
    input.addEventListener("change", () => { filters[name] = input.value; load(); });
    inputs[name] = input;
    bar.push(input);
  }
  const pause = el("button", { id: "pause" }, "Pause");
  let paused = false, held = [];
  pause.addEventListener("click", () => {
    paused = !paused;
    pause.textContent = paused ? "Resume" : "Pause";
    pause.classList.toggle("on", paused);
    if (!paused) { held.forEach(add); held = []; }
  });
  bar.push(pause);
  let rows = [];
  const box = table("Live", LIVE_COLUMNS, rows, { id: "live", extras: bar.reverse(), rowClass: (r) => (r.decision === "deny" ? "deny" : ""), empty: "No record yet: a call through Tollgate shows here as it ends." });
  main.replaceChildren(box);
  const matches = (r) => Object.entries(filters).every(([k, v]) => !v || (k === "event" ? r.event : r[k]) === v);
  function add(r) {
    if (!matches(r)) return;
    rows.unshift(r);
    if (rows.length > 1000) rows.pop();
    box.redraw(rows);
  }
  let cursor = null;
  async function load() {
    const answer = await api("/api/events", { limit: 200, client: filters.client, provider: filters.provider, decision: filters.decision, event: filters.event, since: "" });
    rows = answer.events.slice().reverse();
    cursor = answer.cursor;
    box.redraw(rows);
    const empty = box.querySelector(".empty");
    if (empty && rows.length) empty.remove();
  }
  await load();
  // New records, asked for twice a second after the last one shown (the API's cursor): a plain
  // request each time, so that the view keeps up through any proxy and reconnects by itself.
  async function poll() {
    if (live === null) return;
    try {
      const answer = await api("/api/events", { after: cursor, limit: 1000, since: "" });
      cursor = answer.cursor;
      if (answer.events.length) {
        const empty = box.querySelector(".empty");
        if (empty) empty.remove();
      }
      for (const r of answer.events) { if (paused) held.push(r); else add(r); }
    } catch (e) { /* the console restarting: asked again at the next turn */ }
    if (live !== null) live = setTimeout(poll, 500);
  }
  live = setTimeout(poll, 500);
}

// ---- People

async function viewPeople() {
  const rows = await api("/api/people");
  main.replaceChildren(table("People", [
    { key: "client", label: "client", format: (v, r) => v || "anonymous " + (r.key || "") },
    { key: "calls", label: "calls", num: true },
    { key: "refused", label: "refused", num: true },
    { key: "input_tokens", label: "input tokens", num: true },
    { key: "output_tokens", label: "output tokens", num: true },
    { key: "cost_usd", label: "cost", num: true, format: money },
    { key: "unpriced", label: "no price", num: true },
    { key: "findings", label: "findings", format: kinds },
    { key: "connections", label: "connections", num: true },
    { key: "last_seen", label: "last seen" },
  ], rows, { id: "people", csv: "/api/people" + query({ format: "csv" }), sort: "cost_usd", sortDir: -1, onRow: (r) => { if (r.client) location.hash = "live?client=" + encodeURIComponent(r.client); } }));
  main.append(el("p", { class: "note" }, "A client opens on its own calls in Live. Anonymous callers are told apart by their key's fingerprint."));
}

// ---- Spend

async function viewSpend(params) {
  const by = params.get("by") || "provider", bucket = params.get("bucket") || "day";
  const bySelect = el("select", { id: "by" }, ...["provider", "model", "client"].map((v) => el("option", { value: v }, "by " + v)));
  const bucketSelect = el("select", { id: "bucket" }, el("option", { value: "day" }, "per day"), el("option", { value: "hour" }, "per hour"));
  bySelect.value = by; bucketSelect.value = bucket;
  const change = () => { location.hash = "spend?by=" + bySelect.value + "&bucket=" + bucketSelect.value; };
  bySelect.addEventListener("change", change); bucketSelect.addEventListener("change", change);
  // Hourly sums come from the records themselves: a week unless the span says otherwise.
  const week = new Date(Date.now() - 7 * 86400e3).toISOString().slice(0, 13) + ":00";
  const rows = await api("/api/spend", { by, bucket, since: bucket === "hour" && !sinceParam() ? week : null });
  const section = el("section", { id: "spend" }, el("h2", {}, "Spend"), el("div", { class: "bar" }, bySelect, bucketSelect));
  section.append(plot(rows));
  main.replaceChildren(section, table("Spend " + by + " per " + bucket, [
    { key: "bucket", label: bucket },
    { key: "key", label: by },
    { key: "calls", label: "calls", num: true },
    { key: "input_tokens", label: "input tokens", num: true },
    { key: "output_tokens", label: "output tokens", num: true },
    { key: "cost_usd", label: "cost", num: true, format: money },
  ], rows, { csv: "/api/spend" + query({ by, bucket, format: "csv" }) }));
}

// Cost per bucket, stacked by key, as inline SVG.
function plot(rows) {
  const width = 900, height = 260, left = 70, bottom = 40, top = 10;
  const buckets = [...new Set(rows.map((r) => r.bucket))].sort();
  const keys = [...new Set(rows.map((r) => r.key == null ? "(none)" : r.key))];
  const totals = {};
  rows.forEach((r) => { totals[r.bucket] = (totals[r.bucket] || 0) + r.cost_usd; });
  const most = Math.max(1e-9, ...Object.values(totals));
  const chart = svg("svg", { class: "plot", width, height, viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": "cost over time" });
  chart.append(svg("line", { x1: left, y1: top, x2: left, y2: height - bottom, stroke: "#b8c0cc" }));
  chart.append(svg("line", { x1: left, y1: height - bottom, x2: width - 10, y2: height - bottom, stroke: "#b8c0cc" }));
  chart.append(svg("text", { x: 4, y: top + 10 }, money(most)));
  chart.append(svg("text", { x: 4, y: height - bottom }, "$0"));
  const step = Math.min(60, (width - left - 20) / Math.max(1, buckets.length));
  const heights = {};
  rows.forEach((r) => {
    const i = buckets.indexOf(r.bucket), k = keys.indexOf(r.key == null ? "(none)" : r.key);
    const h = (r.cost_usd / most) * (height - top - bottom);
    const below = heights[r.bucket] || 0;
    heights[r.bucket] = below + h;
    const bar = svg("rect", { x: left + i * step + 1, y: height - bottom - below - h, width: Math.max(1, step - 2), height: Math.max(0, h), fill: COLORS[k % COLORS.length] });
    bar.append(svg("title", {}, `${r.bucket} ${r.key}: ${money(r.cost_usd)}, ${r.calls} calls`));
    chart.append(bar);
  });
  const every = Math.ceil(buckets.length / 8);
  buckets.forEach((b, i) => { if (i % every === 0) chart.append(svg("text", { x: left + i * step, y: height - bottom + 15 }, b.slice(0, 13).replace("T", " "))); });
  keys.forEach((k, i) => {
    chart.append(svg("rect", { x: left + (i % 6) * 140, y: height - 14, width: 10, height: 10, fill: COLORS[i % COLORS.length] }));
    chart.append(svg("text", { x: left + (i % 6) * 140 + 14, y: height - 5 }, k));
  });
  if (!rows.length) chart.append(svg("text", { x: left + 20, y: height / 2 }, "No priced call in this span."));
  return chart;
}

// ---- the other tables

async function simple(id, title, path, columns, opts) {
  const rows = await api(path);
  main.replaceChildren(table(title, columns, rows, Object.assign({ id, csv: path + query({ format: "csv" }) }, opts || {})));
}

const VIEWS = {
  live: viewLive,
  people: viewPeople,
  spend: viewSpend,
  refusals: () => simple("refusals", "Refusals", "/api/refusals", [
    { key: "kind", label: "kind" }, { key: "client", label: "client" }, { key: "count", label: "count", num: true },
    { key: "last_reason", label: "latest reason", wrap: true }, { key: "last_seen", label: "last seen" },
  ], { empty: "Nothing refused." }),
  guardrails: () => simple("guardrails", "Guardrails: findings", "/api/findings", [
    { key: "kind", label: "kind" }, { key: "client", label: "client" }, { key: "count", label: "found", num: true },
  ], { empty: "No finding." }),
  services: () => simple("services", "AI services", "/api/inventory", [
    { key: "client", label: "client" }, { key: "service", label: "service" }, { key: "category", label: "category" },
    { key: "calls", label: "governed calls", num: true }, { key: "connections", label: "connections", num: true },
    { key: "refused", label: "refused", num: true }, { key: "bytes_sent", label: "sent", num: true },
    { key: "bytes_received", label: "received", num: true }, { key: "last_seen", label: "last seen" },
  ]),
  budgets: () => simple("budgets", "Budgets", "/api/budgets", [
    { key: "limit", label: "limit" }, { key: "subject", label: "applies to" }, { key: "window", label: "window" },
    { key: "used", label: "used", num: true }, { key: "cap", label: "cap", num: true }, { key: "unit", label: "unit" },
  ], { empty: "No limit configured." }),
  audit: () => simple("audit", "Audit", "/api/audit", [
    { key: "file", label: "file" }, { key: "instance", label: "instance" }, { key: "records", label: "records", num: true },
    { key: "state", label: "state" }, { key: "faults", label: "first fault", wrap: true, format: (v) => (v && v.length ? v[0] + (v.length > 1 ? ` (+${v.length - 1} more)` : "") : "") },
    { key: "last_checkpoint", label: "last checkpoint", format: (v) => (v ? `${v} (${ago(v)})` : "none yet") }, { key: "signed", label: "signed", format: (v) => (v == null ? "not checked" : v ? "yes" : "no") },
    { key: "worker_lost", label: "worker lost", num: true },
  ], { rowClass: (r) => (r.state === "fault" ? "fault" : ""), empty: "No audit file yet." }),
};

async function route() {
  if (live !== null) { clearTimeout(live); live = null; }
  const [name, rest] = (location.hash.slice(1) || "live").split("?");
  const view = VIEWS[name] ? name : "live";
  for (const a of document.querySelectorAll("#nav a")) a.classList.toggle("active", a.dataset.view === view);
  main.replaceChildren(el("p", { class: "note" }, "Loading…"));
  try {
    await VIEWS[view](new URLSearchParams(rest || ""));
  } catch (e) {
    main.replaceChildren(el("p", { class: "error" }, "Cannot load: " + e.message));
  }
}

window.addEventListener("hashchange", route);
sinceSelect.addEventListener("change", route);
route();
