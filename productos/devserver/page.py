"""The viewer page served at ``/``: one self-contained HTML document (inline CSS and JS, no CDN)."""

from __future__ import annotations

from productos.devserver.page_workbench import WORKBENCH_CSS, WORKBENCH_HTML, WORKBENCH_JS

__all__ = ["PAGE_HTML"]

PAGE_HTML = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>productos dev server</title>
<style>
:root { --bg:#f6f7f9; --card:#fff; --ink:#1d2330; --muted:#6b7280; --line:#e3e6eb;
        --accent:#2f6fed; --ok:#1a7f37; --off:#9aa3af; --warn:#b45309; }
* { box-sizing: border-box; }
body { margin:0; font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;
       background:var(--bg); color:var(--ink); }
header { display:flex; align-items:center; gap:24px; padding:14px 24px; background:#111827;
         color:#f9fafb; }
header h1 { font-size:17px; margin:0; font-weight:600; }
header .stat { font-size:13px; color:#cbd5e1; }
header .stat b { color:#fff; font-size:15px; }
#live { margin-left:auto; font-size:12px; color:#9ca3af; }
#live.ok::before { content:"\\25CF "; color:#34d399; }
#live.down::before { content:"\\25CF "; color:#f87171; }
main { display:grid; grid-template-columns:minmax(0,2.2fr) minmax(280px,1fr); gap:18px;
       padding:18px 24px; }
section { background:var(--card); border:1px solid var(--line); border-radius:8px;
          padding:14px 16px; min-width:0; }
section h2 { font-size:14px; margin:0 0 10px; text-transform:uppercase; letter-spacing:.04em;
             color:var(--muted); }
.side { display:flex; flex-direction:column; gap:18px; min-width:0; }
.filters { display:flex; gap:8px; margin-bottom:10px; flex-wrap:wrap; }
.filters input { padding:5px 8px; border:1px solid var(--line); border-radius:5px; font:inherit;
                 min-width:150px; }
.filters label { font-size:12px; color:var(--muted); display:flex; align-items:center; gap:4px; }
.filters label input { min-width:0; }
button { font:inherit; padding:4px 10px; border:1px solid var(--line); border-radius:5px;
         background:#fff; cursor:pointer; }
table { width:100%; border-collapse:collapse; table-layout:fixed; }
th, td { text-align:left; padding:6px 8px; border-bottom:1px solid var(--line);
         vertical-align:top; overflow:hidden; text-overflow:ellipsis; white-space:nowrap; }
th { font-size:12px; color:var(--muted); font-weight:600; }
td.time { width:150px; color:var(--muted); font-variant-numeric:tabular-nums; }
th.time { width:150px; } th.ev { width:28%; } th.who { width:24%; }
td.ev-name { font-weight:600; }
tr.event { cursor:pointer; }
tr.event:hover td { background:#f3f6fd; }
tr.new td { animation:flash 1.2s ease-out; }
@keyframes flash { from { background:#fff4c2; } to { background:transparent; } }
tr.detail td { white-space:pre-wrap; font:12px/1.4 ui-monospace,Menlo,Consolas,monospace;
               background:#f9fafb; color:#374151; }
.props { color:var(--muted); font-size:12px; }
.empty { color:var(--muted); padding:14px 4px; }
.count { display:flex; align-items:center; gap:8px; margin:4px 0; cursor:pointer; }
.count .name { flex:0 0 45%; overflow:hidden; text-overflow:ellipsis; white-space:nowrap; }
.count .bar { flex:1; height:8px; background:#e8edfb; border-radius:4px; overflow:hidden; }
.count .bar span { display:block; height:100%; background:var(--accent); }
.count .n { flex:0 0 48px; text-align:right; font-variant-numeric:tabular-nums; }
.flag { border-top:1px solid var(--line); padding:8px 0; }
.flag:first-of-type { border-top:0; }
.flag .top { display:flex; align-items:center; gap:8px; }
.flag .key { font-weight:600; font-family:ui-monospace,Menlo,Consolas,monospace; }
.badge { font-size:11px; padding:1px 7px; border-radius:10px; color:#fff; }
.badge.on { background:var(--ok); } .badge.off { background:var(--off); }
.badge.remote { background:var(--warn); }
.value { margin-left:auto; font-family:ui-monospace,Menlo,Consolas,monospace; font-size:12px; }
.cond { font-size:12px; color:#374151; margin:3px 0 0 2px; }
.rollout { display:inline-block; width:60px; height:6px; background:#eceff3; border-radius:3px;
           vertical-align:middle; margin-right:6px; overflow:hidden; }
.rollout span { display:block; height:100%; background:var(--ok); }
.variants, .problem { font-size:12px; color:var(--muted); margin-top:2px; }
.problem { color:var(--warn); }
@media (max-width: 900px) { main { grid-template-columns:1fr; } }
@@WORKBENCH_CSS@@
</style>
</head>
<body>
<header>
  <h1>productos dev server</h1>
  <span class="stat"><b id="stat-events">0</b> events</span>
  <span class="stat"><b id="stat-persons">0</b> persons</span>
  <span class="stat"><b id="stat-flags">0</b> flags</span>
  <span id="live" class="ok">live</span>
</header>
<main>
  <section id="events-section">
    <h2>Latest events</h2>
    <div class="filters">
      <input id="filter-event" placeholder="event name" aria-label="event name">
      <input id="filter-distinct" placeholder="distinct id" aria-label="distinct id">
      <button id="filter-clear" type="button">clear</button>
      <label><input id="auto" type="checkbox" checked> auto-refresh</label>
      <button id="store-clear" type="button" class="danger"
              title="delete every stored event, person and group">clear store</button>
    </div>
    <table id="events">
      <thead><tr><th class="time">time</th><th class="ev">event</th><th class="who">distinct id</th>
      <th>properties</th></tr></thead>
      <tbody></tbody>
    </table>
    <div id="events-empty" class="empty">No events yet. Capture one and it shows up here.</div>
    <div class="pager">
      <button id="page-newest" type="button">newest</button>
      <button id="page-older" type="button">older</button>
      <span id="page-info"></span>
    </div>
  </section>
  <div class="side">
    <section id="counts-section">
      <h2>Events by name</h2>
      <div id="counts"><div class="empty">Nothing counted yet.</div></div>
    </section>
    <section id="flags-section">
      <h2>Feature flags</h2>
      <div class="filters">
        <input id="flags-for" placeholder="evaluate for distinct id" aria-label="distinct id">
      </div>
      <div id="flags"><div class="empty">No flags loaded.</div></div>
    </section>
  </div>
</main>
@@WORKBENCH_HTML@@
<script>
"use strict";
const $ = (id) => document.getElementById(id);
const PAGE_SIZE = 50;
const state = { seen: new Set(), open: new Set(), first: true, before: null, pages: [] };

function el(tag, cls, text) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text !== undefined && text !== null) node.textContent = String(text);
  return node;
}

async function getJSON(url) {
  const response = await fetch(url, { cache: "no-store" });
  if (!response.ok) throw new Error(url + " answered " + response.status);
  return response.json();
}

function shortTime(ts) {
  const d = new Date(ts);
  if (isNaN(d)) return ts || "";
  return d.toLocaleTimeString([], { hour12: false }) + "." +
         String(d.getMilliseconds()).padStart(3, "0");
}

function exceptionOf(ev) {
  const props = ev.properties || {};
  const list = props.$exception_list;
  if (Array.isArray(list) && list.length) return list[0];
  if (props.$exception_type || props.$exception_message) {
    return { type: props.$exception_type, value: props.$exception_message };
  }
  return null;
}

function propsSummary(ev) {
  const props = Object.assign({}, ev.properties || {});
  const shown = Object.keys(props).filter((k) => !k.startsWith("$")).slice(0, 6)
    .map((k) => k + "=" + JSON.stringify(props[k]));
  if (ev["$set"]) shown.unshift("$set " + JSON.stringify(ev["$set"]));
  if (props.$session_id) shown.unshift("session " + props.$session_id);
  if (props.$current_url) shown.unshift(props.$current_url);
  const exc = exceptionOf(ev);
  if (exc) shown.unshift((exc.type || "Exception") + ": " + (exc.value || ""));
  return shown.join("  ");
}

function stackText(ev) {
  const lines = [];
  for (const exc of (ev.properties || {}).$exception_list || []) {
    lines.push((exc.type || "Exception") + ": " + (exc.value || ""));
    const frames = ((exc.stacktrace || {}).frames || []);
    for (const f of frames) {
      lines.push('  File "' + (f.abs_path || f.filename || "?") + '", line ' + (f.lineno || "?") +
                 ", in " + (f.function || "?"));
      if (f.context_line) lines.push("    " + String(f.context_line).trim());
    }
  }
  return lines.join("\\n");
}

function renderEvents(events) {
  const body = document.querySelector("#events tbody");
  body.textContent = "";
  $("events-empty").style.display = events.length ? "none" : "block";
  for (const ev of events) {
    const row = el("tr", "event");
    row.dataset.uuid = ev.uuid;
    if (!state.first && !state.seen.has(ev.uuid)) row.classList.add("new");
    row.title = ev.uuid;
    const who = el("td", "who", ev.distinct_id);
    who.title = "show this person";
    who.addEventListener("click", () => showPerson(ev.distinct_id));  // and the row opens too
    const exc = exceptionOf(ev);
    row.append(el("td", "time", shortTime(ev.timestamp)), el("td", "ev-name", ev.event),
               who, el("td", exc ? "props exc" : "props", propsSummary(ev)));
    row.addEventListener("click", () => {
      state.open.has(ev.uuid) ? state.open.delete(ev.uuid) : state.open.add(ev.uuid);
      refreshEvents();
    });
    body.append(row);
    if (state.open.has(ev.uuid)) {
      const detail = el("tr", "detail");
      const cell = el("td", null);
      const stack = stackText(ev);
      if (stack) cell.append(el("div", "stack", stack + "\\n\\n"));
      cell.append(document.createTextNode(JSON.stringify(ev, null, 2)));
      cell.colSpan = 4;
      detail.append(cell);
      body.append(detail);
    }
  }
  state.seen = new Set(events.map((e) => e.uuid));
  state.first = false;
}

function renderCounts(byEvent) {
  const box = $("counts");
  box.textContent = "";
  const names = Object.keys(byEvent);
  if (!names.length) { box.append(el("div", "empty", "Nothing counted yet.")); return; }
  const max = Math.max(...names.map((n) => byEvent[n]));
  for (const name of names) {
    const line = el("div", "count");
    line.title = "show only " + name;
    const bar = el("span", "bar"); const fill = el("span");
    fill.style.width = (100 * byEvent[name] / max).toFixed(1) + "%";
    bar.append(fill);
    line.append(el("span", "name", name), bar, el("span", "n", byEvent[name]));
    line.addEventListener("click", () => { $("filter-event").value = name; refreshEvents(); });
    box.append(line);
  }
}

function renderFlags(data) {
  const box = $("flags");
  box.textContent = "";
  if (data.reload_error) box.append(el("div", "problem", data.reload_error));
  if (!data.flags.length) { box.append(el("div", "empty", "No flags loaded.")); return; }
  for (const flag of data.flags) {
    const card = el("div", "flag");
    card.dataset.key = flag.key;
    const top = el("div", "top");
    top.append(el("span", "key", flag.key),
               el("span", "badge " + (flag.active ? "on" : "off"), flag.active ? "on" : "off"));
    if (!flag.local_evaluation) top.append(el("span", "badge remote", "server only"));
    if ("value" in flag) {
      const v = flag.value === null ? "unknown" : JSON.stringify(flag.value);
      const value = el("span", "value", v);
      value.title = flag.reason || "";
      top.append(value);
    }
    card.append(top);
    if (flag.aggregation !== "users") card.append(el("div", "variants", "by " + flag.aggregation));
    for (const cond of flag.conditions) {
      const line = el("div", "cond");
      const pct = cond.rollout_percentage === null || cond.rollout_percentage === undefined
        ? 100 : Number(cond.rollout_percentage);
      const bar = el("span", "rollout"); const fill = el("span");
      fill.style.width = Math.max(0, Math.min(100, pct)) + "%";
      bar.append(fill);
      line.append(bar, document.createTextNode(cond.summary));
      card.append(line);
    }
    if (!flag.conditions.length) card.append(el("div", "cond", "no conditions"));
    if (flag.variants.length) {
      card.append(el("div", "variants", "variants: " + flag.variants
        .map((v) => v.key + " " + v.rollout_percentage + "%").join(" / ")));
    }
    if (flag.local_evaluation_problem) card.append(el("div", "problem",
      flag.local_evaluation_problem));
    box.append(card);
  }
}

function setLive(ok) {
  $("live").className = ok ? "ok" : "down";
  $("live").textContent = ok ? "live" : "server unreachable";
}

async function refreshEvents() {
  const params = new URLSearchParams({ limit: String(PAGE_SIZE) });
  if ($("filter-event").value) params.set("event", $("filter-event").value);
  if ($("filter-distinct").value) params.set("distinct_id", $("filter-distinct").value);
  if (state.before !== null) params.set("before", String(state.before));
  const data = await getJSON("/api/events?" + params);
  state.lastPage = data.events;
  renderEvents(data.events);
  $("page-info").textContent = (state.before === null ? "newest " : "older page, ") +
    data.events.length + " event(s)";
  $("page-older").disabled = data.events.length < PAGE_SIZE;
}

async function refreshStats() {
  const stats = await getJSON("/api/stats");
  $("stat-events").textContent = stats.events;
  $("stat-persons").textContent = stats.persons;
  $("stat-flags").textContent = stats.flags;
  renderCounts(stats.by_event);
}

async function refreshFlags() {
  const who = $("flags-for").value.trim();
  renderFlags(await getJSON("/api/flags" + (who ? "?distinct_id=" + encodeURIComponent(who) : "")));
}

async function tick() {
  try {
    await Promise.all([refreshEvents(), refreshStats(), refreshExposures()]);
    setLive(true);
  } catch (err) {
    setLive(false);
  }
}

let flagTicks = 0;
function loop() {
  if ($("auto").checked) {
    tick();
    if (++flagTicks % 5 === 0) refreshFlags().catch(() => setLive(false));
  }
  setTimeout(loop, 1000);
}

$("filter-event").addEventListener("input", () => refreshEvents().catch(() => setLive(false)));
$("filter-distinct").addEventListener("input", () => refreshEvents().catch(() => setLive(false)));
$("flags-for").addEventListener("change", () => refreshFlags().catch(() => setLive(false)));
$("filter-clear").addEventListener("click", () => {
  $("filter-event").value = ""; $("filter-distinct").value = ""; refreshEvents();
});
$("page-older").addEventListener("click", () => {
  const events = state.lastPage || [];
  if (!events.length) return;
  state.pages.push(state.before);
  state.before = events[events.length - 1].seq;
  refreshEvents();
});
$("page-newest").addEventListener("click", () => {
  state.before = null; state.pages = []; refreshEvents();
});
$("store-clear").addEventListener("click", async () => {
  if (!window.confirm("Delete every stored event, person and group?")) return;
  await fetch("/api/clear", { method: "POST", headers: { "Content-Type": "application/json" },
                               body: JSON.stringify({ confirm: true }) });
  state.before = null; tick();
});
@@WORKBENCH_JS@@
tick();
refreshFlags().catch(() => setLive(false));
setTimeout(loop, 1000);
</script>
</body>
</html>
"""
PAGE_HTML = (PAGE_HTML.replace("@@WORKBENCH_CSS@@", WORKBENCH_CSS)
             .replace("@@WORKBENCH_HTML@@", WORKBENCH_HTML)
             .replace("@@WORKBENCH_JS@@", WORKBENCH_JS))
