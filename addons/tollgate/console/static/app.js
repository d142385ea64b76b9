// Tollgate console: every figure comes from the JSON API (/api/...), nothing from elsewhere.
// Text goes into the page as text (textContent), never as markup.
"use strict";

const main = document.getElementById("main");
const sinceSelect = document.getElementById("since");
const SVG = "http://www.w3.org/2000/svg";
const COLORS = ["#3b7ddd", "#e8a33d", "#4caf7a", "#d9534f", "#8e6bd1", "#2bb3c0", "#c77c48", "#7f8c9d"];
// The view shown is the latest of `generation`: a view's requests still out when another view is
// chosen are cut (`viewing.abort()`), its answers dropped (`api` throws STALE), and its poller
// stops. One Live poller, however often the view is changed.
let generation = 0;
let viewing = new AbortController();
let liveTimer = null; // the Live view's next poll
let auditTimer = null; // the header's next look at the audit's state
let auditLooking = false, auditAgain = false; // a look out; another asked for meanwhile
let auditFromMe = false; // /api/audit is security's (403 for others): /api/me says whether the audit is whole
const STALE = new Error("stale");
const AUDIT_EVERY_MS = 5000;
let recordKinds = null; // the kinds of record (`/api/kinds`), asked for once

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

// An API answer for the view being shown: STALE when another view was chosen meanwhile.
async function api(path, params) {
  const mine = generation;
  let data;
  try {
    data = await ask(path + query(params), viewing.signal);
  } catch (e) {
    throw mine !== generation ? STALE : e;
  }
  if (mine !== generation) throw STALE;
  return data;
}

let leaving = false; // on the way to sign in again

async function ask(url, signal) {
  const answer = await fetch(url, { headers: { Accept: "application/json" }, signal });
  // Signed out (the session ended, or a restart): to the identity provider, and back to this view.
  // Once only: the view's other requests answered 401 too would start a second sign-in.
  const signIn = answer.status === 401 && answer.headers.get("X-Tollgate-Sign-In");
  if (signIn && !leaving) {
    leaving = true;
    location.assign(signIn + location.hash);
  }
  if (answer.status === 503) throw await unavailable(answer);
  document.getElementById("unavailable").hidden = true; // answered again: the notice goes
  if (!answer.ok) throw new Error(url.split("?")[0] + ": " + answer.status);
  return answer.json();
}

// The console cannot reach its database (503): the reason it gives, and the view asked again
// after a while (`route`), until it answers.
const RETRY_MS = 5000;
async function unavailable(answer) {
  let reason = "";
  try {
    reason = (await answer.json()).message || "";
  } catch (e) {
    reason = "";
  }
  const error = new Error("the console cannot reach its database" + (reason ? " (" + reason + ")" : "") + "; trying again");
  error.unavailable = true;
  const notice = document.getElementById("unavailable"); // above every view, the Live view's polls too
  notice.textContent = "The " + error.message.slice(4) + ".";
  notice.hidden = false;
  return error;
}

function ago(ts) {
  const s = Math.max(0, (Date.now() - Date.parse(ts)) / 1000);
  return s < 120 ? Math.round(s) + " s ago" : s < 7200 ? Math.round(s / 60) + " min ago" : s < 172800 ? Math.round(s / 3600) + " h ago" : Math.round(s / 86400) + " days ago";
}

// Every cost on the page, one way, as the console line and the CSV write them (common/shown.py,
// usd_text): US dollars as a plain decimal exact to the nano-dollar, at least cents, never an exponent.
function money(v) {
  if (v == null) return "";
  const [whole, fraction] = Number(v).toFixed(9).split(".");
  return "$" + whole + "." + fraction.replace(/0+$/, "").padEnd(2, "0");
}
function kinds(map) { return map ? Object.entries(map).map(([k, n]) => k + " " + n).join(", ") : ""; }
function lines(map) { return map ? Object.entries(map).map(([k, n]) => k + " " + n).join("\n") : ""; } // one a line
const ANONYMOUS = "(anonymous)";
function who(v) { return v == null ? ANONYMOUS : v; }

// What was done with a call's findings in its request or its answer, as its record says: the
// console's `day_sums.finding_action`, which sums them for the Guardrails view.
function findingAction(r, where) {
  const refused = r.refusal === "content_denied";
  let replaced;
  if (where === "request") {
    if (refused && r.answer_findings == null && r.ttfb_ms == null) return "refused";
    replaced = r.redacted;
  } else {
    if (refused) return "refused";
    replaced = r.answer_redacted;
  }
  return Number.isInteger(replaced) && replaced > 0 ? "redacted" : "recorded";
}

// A record's findings: where each was (request, answer), what was done, the kinds and counts.
function findingsText(r) {
  const parts = [];
  for (const [where, found] of [["request", r.findings], ["answer", r.answer_findings]]) {
    if (found && typeof found === "object" && Object.keys(found).length) {
      parts.push(where + " (" + findingAction(r, where) + "): " + kinds(found));
    }
  }
  return parts.join("\n");
}

// A record's time: the time of day, with its date when it is not today's (the whole in its title).
function shortTime(ts) {
  if (typeof ts !== "string") return "";
  const today = new Date().toISOString().slice(0, 10);
  return ts.slice(0, 10) === today ? ts.slice(11, 19) : ts.slice(5, 10) + " " + ts.slice(11, 16);
}

// A table that sorts (click a heading), filters (the text box) and exports CSV (the API's own).
// A name's text with a line break allowed after each `_`, `/`, `.`, `:`, `@` or `-` (a browser breaks
// after a hyphen, but not before a digit: `gpt-4o-mini-2024-07-18`): a narrow column breaks `proj_`
// `sales`, not `proj_sal` `es`. Its text is unchanged.
function breakable(text) {
  const parts = [];
  for (const piece of text.split(/(?<=[_/.:@-])/)) parts.push(piece, el("wbr"));
  return parts.slice(0, -1);
}

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
  if (opts.layout) tableNode.classList.add(opts.layout);
  box.append(tableNode);
  let sortKey = opts.sort || null, sortDir = opts.sortDir || 1;
  const cellText = (c, r) => (c.format ? c.format(r[c.key], r) : r[c.key] == null ? "" : String(r[c.key]));
  columns.forEach((c) => {
    const th = el("th", { "data-key": c.key }, c.label);
    if (c.width) th.style.width = c.width;
    if (c.num) th.style.textAlign = "right"; // above its figures: `status` and `tokens` apart
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
      for (const c of columns) {
        const text = cellText(c, r);
        const td = c.clamp
          ? el("td", { class: "clamp" }, el("div", {}, ...breakable(text)))
          : el("td", { class: c.cls || (c.num ? "num" : c.cut ? "cut" : c.wrap ? "reason" : c.time ? "time" : "") },
              ...(c.wrap ? breakable(text) : [text]));
        // A cell cut to fit holds the whole in its title (shown on hover).
        const whole = c.title ? c.title(r[c.key], r) : text;
        if ((c.cut || c.clamp || c.title) && whole) td.title = whole;
        tr.append(td);
      }
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

// Widths that fit a 1,024-pixel window (12-pixel type below 1,200, app.css): each column holds its
// longest usual word on one line (`reconciliation`, `(anonymous)`, `permission_`, a cost to the
// nano-dollar); a name wraps in its column at `_`, `/`, `.`, spaces and hyphens, never cut.
const LIVE_COLUMNS = [
  // A time breaks at its space only (an older day's "11-20 08:43" in two lines), never inside "08:43:36".
  { key: "ts", label: "time", width: "6.4%", time: true, format: shortTime, title: (v) => v || "" },
  { key: "event", label: "kind", width: "9.1%", wrap: true },
  { key: "instance", label: "instance", width: "6.1%", wrap: true },
  { key: "client", label: "client", width: "9%", wrap: true, format: (v, r) => ("client" in r ? who(v) : "") },
  { key: "provider", label: "provider / server / host", width: "8.5%", wrap: true, format: (v, r) => v || r.server || r.host || "" },
  { key: "model", label: "model / tool", width: "8.2%", wrap: true, format: (v, r) => v || r.tool || r.method || "" },
  // A refusal names its kind; a call let through says so.
  { key: "decision", label: "decision", width: "8.2%", wrap: true, format: (v, r) => r.refusal || v || "" },
  { key: "status", label: "status", width: "4.6%", num: true },
  { key: "total_tokens", label: "tokens", width: "5.5%", num: true },
  { key: "cost_usd", label: "cost", width: "9.8%", num: true, format: money },
  { key: "latency_ms", label: "ms", width: "4.7%", num: true, format: (v, r) => (v != null ? Math.round(v) : r.duration_ms != null ? Math.round(r.duration_ms) : "") },
  // A reason over up to three lines (a policy's usual one whole), a longer one cut there.
  { key: "deny_reasons", label: "reason", width: "10.5%", clamp: true, format: (v, r) => (Array.isArray(v) && v.length ? v.join("; ") : r.error || "") },
  { key: "findings", label: "findings", width: "9.4%", wrap: true, format: (v, r) => findingsText(r) },
];

async function viewLive(params) {
  if (recordKinds === null) recordKinds = await api("/api/kinds");
  const mine = generation;
  const filters = { client: params.get("client") || "", provider: "", decision: "", event: "", instance: params.get("instance") || "" };
  const inputs = {};
  const bar = [];
  for (const name of ["instance", "client", "provider", "decision", "event"]) {
    const input = name === "decision"
      ? el("select", { name }, el("option", { value: "" }, "any decision"), el("option", { value: "allow" }, "allow"), el("option", { value: "deny" }, "deny"))
      : name === "event"
        ? el("select", { name }, ...["", ...recordKinds].map((v) => el("option", { value: v }, v || "any kind")))
        : el("input", { name, placeholder: name, size: 12 });
    input.value = filters[name];
    input.addEventListener("change", () => { filters[name] = input.value; load().then(schedule, schedule); });
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
  const box = table("Live", LIVE_COLUMNS, rows, { id: "live", layout: "fit", extras: bar.reverse(), rowClass: (r) => (r.decision === "deny" ? "deny" : ""), empty: "No record yet: a call through Tollgate shows here as it ends." });
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
    clearTimeout(liveTimer); // the poll after this load asks from its cursor
    const answer = await api("/api/events", { limit: 200, client: filters.client, provider: filters.provider, decision: filters.decision, event: filters.event, instance: filters.instance, since: "" });
    rows = answer.events.slice().reverse();
    cursor = answer.cursor;
    box.redraw(rows);
    const empty = box.querySelector(".empty");
    if (empty && rows.length) empty.remove();
  }
  // New records, asked for twice a second after the last one shown (the API's cursor): a plain
  // request each time, so that the view keeps up through any proxy and reconnects by itself. One
  // poll at a time: the next is asked for once the last has answered, while this view is shown.
  async function poll() {
    if (mine !== generation) return;
    try {
      const answer = await api("/api/events", { after: cursor, limit: 1000, since: "" });
      cursor = answer.cursor;
      if (answer.events.length) {
        const empty = box.querySelector(".empty");
        if (empty) empty.remove();
      }
      for (const r of answer.events) { if (paused) held.push(r); else add(r); }
    } catch (e) {
      // A cursor the console no longer takes (a restart without console.cursor_secret): the latest
      // records again. Else the console restarting: asked again at the next turn.
      if (e !== STALE && String(e.message).endsWith(": 400")) await load().catch(() => {});
    }
    schedule();
  }
  function schedule() {
    if (mine !== generation) return;
    clearTimeout(liveTimer);
    liveTimer = setTimeout(poll, 500);
  }
  await load();
  schedule();
}

// ---- People

async function viewPeople() {
  const rows = await api("/api/people");
  main.replaceChildren(table("People", [
    { key: "client", label: "client", width: "11%", cut: true, format: who, title: (v, r) => (v == null ? ANONYMOUS + " key " + (r.key || "") : v) },
    { key: "calls", label: "calls", width: "5.5%", num: true },
    { key: "refused", label: "refused", width: "6.5%", num: true },
    { key: "input_tokens", label: "input tokens", width: "7.5%", num: true },
    { key: "output_tokens", label: "output tokens", width: "7.5%", num: true },
    { key: "cost_usd", label: "cost", width: "10%", num: true, format: money },
    { key: "unpriced", label: "no price", width: "6%", num: true },
    { key: "models", label: "models (calls)", width: "14%", wrap: true, format: lines },
    { key: "findings", label: "findings", width: "14.5%", wrap: true, format: lines },
    { key: "connections", label: "connections", width: "9.5%", num: true },
    { key: "last_seen", label: "last seen", width: "8%", time: true, format: shortTime, title: (v) => v || "" },
  ], rows, { id: "people", layout: "fit", csv: "/api/people" + query({ format: "csv" }), sort: "cost_usd", sortDir: -1, onRow: (r) => { if (r.client) location.hash = "live?client=" + encodeURIComponent(r.client); } }));
  main.append(el("p", { class: "note" }, "A client opens on its own calls in Live. Anonymous callers are told apart by their key's fingerprint (in the title of their name, and in the CSV)."));
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
  section.append(plot(rows, by, bucket));
  main.replaceChildren(section, table("Spend " + by + " per " + bucket, [
    { key: "bucket", label: bucket, format: (v) => bucketLabel(v, bucket), title: (v) => v || "" },
    { key: "key", label: by, format: (v) => (v == null ? (by === "client" ? ANONYMOUS : "(none)") : v) },
    { key: "calls", label: "calls", num: true },
    { key: "input_tokens", label: "input tokens", num: true },
    { key: "output_tokens", label: "output tokens", num: true },
    { key: "cost_usd", label: "cost", num: true, format: money },
  ], rows, { csv: "/api/spend" + query({ by, bucket, format: "csv" }) }));
}

// A bucket as read: a day as its date, an hour as "11-28 08:00" (UTC; the whole in the title).
function bucketLabel(b, bucket) {
  if (typeof b !== "string") return "";
  return bucket === "hour" ? b.slice(5, 10) + " " + b.slice(11, 13) + ":00" : b.slice(0, 10);
}

// Cost per bucket, stacked by key, as inline SVG.
function plot(rows, by, bucket) {
  const width = 900, height = 260, left = 90, bottom = 40, top = 10;
  const buckets = [...new Set(rows.map((r) => r.bucket))].sort();
  const none = (k) => (k == null ? (by === "client" ? ANONYMOUS : "(none)") : k);
  const keys = [...new Set(rows.map((r) => none(r.key)))];
  const totals = {};
  rows.forEach((r) => { totals[r.bucket] = (totals[r.bucket] || 0) + r.cost_usd; });
  const most = Math.max(1e-9, ...Object.values(totals));
  const chart = svg("svg", { class: "plot", width, height, viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": "cost over time" });
  chart.append(svg("line", { x1: left, y1: top, x2: left, y2: height - bottom, stroke: "#b8c0cc" }));
  chart.append(svg("line", { x1: left, y1: height - bottom, x2: width - 10, y2: height - bottom, stroke: "#b8c0cc" }));
  // The scale's figures end left of the axis: a bar drawn after them never hides a digit.
  chart.append(svg("text", { x: left - 4, y: top + 10, "text-anchor": "end" }, money(most)));
  chart.append(svg("text", { x: left - 4, y: height - bottom, "text-anchor": "end" }, "$0"));
  const step = Math.min(60, (width - left - 20) / Math.max(1, buckets.length));
  const heights = {};
  rows.forEach((r) => {
    const i = buckets.indexOf(r.bucket), k = keys.indexOf(none(r.key));
    const h = (r.cost_usd / most) * (height - top - bottom);
    const below = heights[r.bucket] || 0;
    heights[r.bucket] = below + h;
    const bar = svg("rect", { x: left + i * step + 1, y: height - bottom - below - h, width: Math.max(1, step - 2), height: Math.max(0, h), fill: COLORS[k % COLORS.length] });
    bar.append(svg("title", {}, `${r.bucket} ${none(r.key)}: ${money(r.cost_usd)}, ${r.calls} calls`));
    chart.append(bar);
  });
  const every = Math.ceil(buckets.length / 8);
  buckets.forEach((b, i) => { if (i % every === 0) chart.append(svg("text", { x: left + i * step, y: height - bottom + 15 }, bucketLabel(b, bucket))); });
  keys.forEach((k, i) => {
    chart.append(svg("rect", { x: left + (i % 6) * 140, y: height - 14, width: 10, height: 10, fill: COLORS[i % COLORS.length] }));
    chart.append(svg("text", { x: left + (i % 6) * 140 + 14, y: height - 5 }, k));
  });
  if (!rows.length) chart.append(svg("text", { x: left + 20, y: height / 2 }, "No priced call in this span."));
  return chart;
}

// ---- Invoice: what `tollgate reconcile` found, Tollgate's counts beside the vendors' own

// An exact amount (the API's decimal text) as dollars: never through a binary float.
function usd(v) {
  if (v == null) return "";
  const [whole, fraction = ""] = String(v).replace(/^-/, "").split(".");
  return (String(v).startsWith("-") ? "-$" : "$") + whole + "." + fraction.padEnd(2, "0");
}
function share(v) { return v == null ? "" : (Number(v) * 100).toFixed(2) + " %"; }
function tokensOf(side) { return side ? side.input_tokens + " in / " + side.output_tokens + " out" : ""; }
function signed(n) { return n == null ? "" : n > 0 ? "+" + n : String(n); }
function keyOf(r) { return r.key_name && r.key_name !== r.key_id ? r.key_name + " (" + r.key_id + ")" : r.key_id || ""; }

async function viewInvoice() {
  const [data, me] = await Promise.all([api("/api/invoice"), api("/api/me")]);
  const csv = (part) => "/api/invoice" + query({ format: "csv", part });
  const rows = data.rows.map((r) => Object.assign({}, r, {
    key: keyOf(r), ours: tokensOf(r.tollgate), theirs: tokensOf(r.vendor), ours_usd: r.tollgate.cost_usd,
    theirs_usd: r.vendor.cost_usd, tokens_more: r.difference.input_tokens, usd_more: r.difference.cost_usd,
  }));
  // Columns as wide as their cells ask, within the window (1,024 pixels and up): an amount on one
  // line, whole; a name (key, project, model) wraps, never cut (keys are told apart by their end);
  // tokens wrap at their spaces.
  const amount = { num: true, format: usd, cls: "num usd" };
  const counts = { num: true, cls: "num counts" };
  const rowColumns = [
    { key: "day", label: "day" }, { key: "provider", label: "provider", wrap: true },
    { key: "key", label: "key", wrap: true }, { key: "project", label: "project", wrap: true },
    { key: "model", label: "model", wrap: true },
    { key: "status", label: "status", wrap: true, format: (v, r) => v + (r.open ? ", open" : "") },
    Object.assign({ key: "ours", label: "Tollgate tokens" }, counts),
    Object.assign({ key: "theirs", label: "vendor tokens" }, counts),
    { key: "tokens_more", label: "input tokens more", num: true, format: signed },
    Object.assign({ key: "ours_usd", label: "Tollgate cost" }, amount),
    Object.assign({ key: "theirs_usd", label: "vendor cost" }, amount),
    Object.assign({ key: "usd_more", label: "cost more" }, amount),
  ];
  const rowClass = (r) => (r.status === "match" ? "" : r.status === "around" ? "fault" : "deny");
  const span = el("p", { class: "note" }, `${data.since} to ${data.until} (UTC), as the newest run of tollgate reconcile says. A day that ended less than 48 hours ago is open: the vendors still revise it.`);
  const differences = rows.filter((r) => r.status !== "match");
  if (me.role === "lead") {
    // A lead: the held keys their clients' calls used, matching or not; no totals of the company's accounts.
    main.replaceChildren(span, table("Your clients' keys", rowColumns, rows, { id: "invoice-rows", csv: csv("rows"), rowClass, layout: "wraps",
      empty: "No key your clients used was compared yet." }), el("p", { class: "note" }, "Coverage per day and the keys used around Tollgate are shown to security."));
    return;
  }
  main.replaceChildren(span,
    table("Coverage per day", [
      { key: "day", label: "day", format: (v, r) => v + (r.open ? " (open)" : "") }, { key: "provider", label: "provider" },
      { key: "coverage", label: "coverage", num: true, format: share, title: (v) => (v == null ? "" : String(v)) },
      { key: "tollgate_usd", label: "held keys (priced)", num: true, format: usd }, { key: "vendor_usd", label: "every key (priced)", num: true, format: usd },
      { key: "around_usd", label: "around Tollgate", num: true, format: usd }, { key: "billed_usd", label: "billed by the vendor", num: true, format: usd },
    ], data.days, { id: "invoice-days", csv: csv("days"), rowClass: (r) => (r.around_usd && Number(r.around_usd) > 0 ? "fault" : ""),
      empty: "No reconciliation yet: tollgate reconcile writes one." }),
    table("Differences", rowColumns, differences, { id: "invoice-rows", csv: csv("rows"), rowClass, layout: "wraps",
      empty: rows.length ? `Every one of the ${rows.length} keys and models matches.` : "Nothing compared yet." }),
    table("Keys used around Tollgate", [
      { key: "provider", label: "provider", wrap: true }, { key: "key_name", label: "key name", wrap: true },
      { key: "key_id", label: "key id", wrap: true }, { key: "project", label: "project", wrap: true },
      { key: "first_day", label: "first day" }, { key: "last_day", label: "last day" },
      { key: "models", label: "models", wrap: true, format: (v) => (v || []).join(", ") },
      { key: "requests", label: "requests", num: true }, { key: "input_tokens", label: "input tokens", num: true },
      { key: "output_tokens", label: "output tokens", num: true },
      Object.assign({ key: "cost_usd", label: "billed (priced)" }, amount),
    ], data.around, { id: "invoice-around", csv: csv("around"), rowClass: () => "fault", layout: "wraps", empty: "No key was used around Tollgate." }));
}

// ---- the other tables

async function simple(id, title, path, columns, opts) {
  const rows = await api(path);
  main.replaceChildren(table(title, columns, rows, Object.assign({ id, csv: path + query({ format: "csv" }) }, opts || {})));
}

// An instance's last anchor (RFC 3161 time-stamp of a checkpoint): when, by which TSAs, up to which
// record, and what follows it; "not checked" without audit.anchor's ca_file.
function anchorText(v) {
  if (v == null) return "not checked";
  const after = v.after ? `\n${v.after} records after it not anchored yet` : "";
  if (!v.gen_time) return "none" + after;
  return `${v.gen_time} (${ago(v.gen_time)})\nto seq ${v.seq} (${base(v.record)})\nby ${v.tsa.join(", ")}${after}`;
}

// A place (FILE:LINE) with its file's name only: the file column has its path.
function base(place) {
  return place.split("/").pop();
}

const VIEWS = {
  live: viewLive,
  people: viewPeople,
  spend: viewSpend,
  refusals: () => simple("refusals", "Refusals", "/api/refusals", [
    { key: "kind", label: "kind" }, { key: "client", label: "client", wrap: true, format: who }, { key: "count", label: "count", num: true },
    { key: "last_reason", label: "latest reason", wrap: true }, { key: "last_seen", label: "last seen", format: shortTime, title: (v) => v || "" },
  ], { empty: "Nothing refused." }),
  guardrails: () => simple("guardrails", "Guardrails: findings", "/api/findings", [
    { key: "kind", label: "kind", wrap: true }, { key: "client", label: "client", wrap: true, format: who },
    { key: "where", label: "where" }, { key: "action", label: "what was done" }, { key: "count", label: "found", num: true },
  ], { empty: "No finding." }),
  services: () => simple("services", "AI services", "/api/inventory", [
    { key: "client", label: "client", wrap: true, format: who }, { key: "service", label: "service", wrap: true }, { key: "category", label: "category" },
    { key: "calls", label: "governed calls", num: true }, { key: "connections", label: "connections", num: true },
    { key: "refused", label: "refused", num: true }, { key: "bytes_sent", label: "sent", num: true },
    { key: "bytes_received", label: "received", num: true }, { key: "last_seen", label: "last seen", format: shortTime, title: (v) => v || "" },
  ]),
  invoice: viewInvoice,
  budgets: () => simple("budgets", "Budgets", "/api/budgets", [
    { key: "limit", label: "limit", wrap: true }, { key: "subject", label: "applies to", wrap: true, format: (v) => (v == null ? "(all)" : v) }, { key: "window", label: "window" },
    { key: "used", label: "used", num: true, format: (v, r) => (r.unit === "usd" ? money(v) : v == null ? "" : String(v)) },
    { key: "cap", label: "cap", num: true, format: (v, r) => (r.unit === "usd" ? money(v) : v == null ? "" : String(v)) },
    { key: "unit", label: "unit" },
  ], { empty: "No limit configured." }),
  audit: () => (auditFromMe ? auditSummary() : simple("audit", "Audit", "/api/audit", [
    { key: "file", label: "file", wrap: true }, { key: "instance", label: "instance", wrap: true }, { key: "records", label: "records", num: true },
    { key: "state", label: "state" }, { key: "faults", label: "first fault", wrap: true, format: (v) => (v && v.length ? v[0] + (v.length > 1 ? ` (+${v.length - 1} more)` : "") : "") },
    { key: "last_checkpoint", label: "last checkpoint", wrap: true, format: (v) => (v ? `${v} (${ago(v)})` : "none yet") }, { key: "signed", label: "signed", wrap: true, format: (v) => (v == null ? "not checked" : v ? "yes" : "no") },
    { key: "anchor", label: "last anchor", wrap: true, format: anchorText },
    { key: "anchor_gaps", label: "anchor gaps", wrap: true, format: (v, r) => (v == null ? "" : !v ? "none" : `${v}, the last at ${base(r.anchor.last_gap.place)}\n${r.anchor.last_gap.tsa}: ${r.anchor.last_gap.error}`) },
    { key: "worker_lost", label: "worker lost", num: true },
  ], { rowClass: (r) => (r.state === "fault" ? "fault" : ""), layout: "wraps", empty: "No audit file yet." }).catch(async (e) => {
    // Its files and instances are security's: anyone else sees whether the whole audit is whole.
    if (e === STALE || !String(e.message).endsWith(": 403")) throw e;
    auditFromMe = true;
    await auditSummary();
  })),
};

const AUDIT_SAID = {
  whole: "Every record's chain checks: no record was changed, removed or inserted.",
  checking: "The chain is still being checked after the console started; this says more once it is done.",
  fault: "The chain has a fault: some records may have been changed, removed or inserted. Security's Audit view names where.",
};

// The Audit view of everyone but security: whether the whole audit is whole (`/api/me`).
async function auditSummary() {
  const me = await api("/api/me");
  main.replaceChildren(el("section", { id: "audit-summary" },
    el("h2", {}, "Audit"),
    el("p", { class: "audit-said audit-" + me.audit }, "The audit is " + me.audit + "."),
    el("p", { class: "note" }, AUDIT_SAID[me.audit] || ""),
    el("p", { class: "note" }, "Its files and instances, anchors and faults are shown to security.")));
}

async function route() {
  generation += 1;
  viewing.abort();
  viewing = new AbortController();
  clearTimeout(liveTimer);
  liveTimer = null;
  const [name, rest] = (location.hash.slice(1) || "live").split("?");
  const view = VIEWS[name] ? name : "live";
  for (const a of document.querySelectorAll("#nav a")) a.classList.toggle("active", a.dataset.view === view);
  main.replaceChildren(el("p", { class: "note" }, "Loading…"));
  auditState();
  try {
    await VIEWS[view](new URLSearchParams(rest || ""));
  } catch (e) {
    if (e === STALE) return;
    // The console's database away: the notice above says why; the view waits for it.
    main.replaceChildren(e.unavailable ? el("p", { class: "note" }, "Waiting for the console's database…")
      : el("p", { class: "error" }, "Cannot load: " + e.message));
    if (e.unavailable) {
      const mine = generation;
      setTimeout(() => { if (mine === generation) route(); }, RETRY_MS);
    }
  }
}

// Whether the audit is whole, in the header of every view: looked at with each view, and every
// few seconds; one look at a time (asked for during one, it is made again once that one ends).
async function auditState() {
  clearTimeout(auditTimer);
  auditTimer = null;
  if (auditLooking) {
    auditAgain = true;
    return;
  }
  auditLooking = true;
  const badge = document.getElementById("audit-state");
  try {
    let files = null;
    if (!auditFromMe) {
      try {
        files = await ask("/api/audit");
      } catch (e) {
        if (!e.message.endsWith(": 403")) throw e;
        auditFromMe = true;
      }
    }
    if (auditFromMe) {
      const me = await ask("/api/me");
      badge.textContent = "Audit: " + me.audit;
      badge.className = "audit-" + me.audit;
      badge.title = "the whole audit: " + me.audit;
    } else {
      const faults = files.filter((f) => f.state === "fault").length;
      const other = files.find((f) => f.state !== "whole" && f.state !== "fault");
      const state = !files.length ? "no file" : faults ? "fault" : other ? other.state : "whole";
      badge.textContent = "Audit: " + state + (faults > 1 ? ` (${faults} files)` : "");
      badge.className = "audit-" + state.replace(/\W+/g, "-");
      badge.title = files.map((f) => `${f.file}${f.instance ? " " + f.instance : ""}: ${f.state}`).join("\n");
    }
  } catch (e) {
    badge.textContent = "Audit: not known";
    badge.className = "audit-unknown";
  } finally {
    auditLooking = false;
  }
  if (auditAgain) {
    auditAgain = false;
    auditState();
  } else {
    auditTimer = setTimeout(auditState, AUDIT_EVERY_MS);
  }
}

// Who is signed in (`/api/me`), in the header, with a "Sign out" link; nothing for the token's
// holder (no one signed in: the console without sign-in looks as it did).
async function whoIsSignedIn() {
  let me;
  try {
    me = await ask("/api/me");
  } catch (e) {
    return;
  }
  if (!me.email) return;
  document.getElementById("who-name").textContent = (me.name || me.email) + " · " + me.role;
  document.getElementById("who-name").title = me.email;
  document.getElementById("who").hidden = false;
  if (me.role !== "security") { // the Audit view's table is security's: the badge opens whether the audit is whole
    document.querySelector('a[data-view="audit"]').hidden = true;
    if (me.role !== "lead") document.querySelector('a[data-view="invoice"]').hidden = true; // security's and the leads
    auditFromMe = true;
  }
}

window.addEventListener("hashchange", route);
sinceSelect.addEventListener("change", route);
whoIsSignedIn();
route();
