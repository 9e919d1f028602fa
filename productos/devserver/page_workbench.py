"""The workbench panels of the viewer page: funnel, trend chart, person view, flag exposures.

Plain HTML, CSS and JavaScript spliced into ``page.py``'s document (no CDN, no build step).
The numbers shown are the JSON API's, unrounded counts in ``data-count`` attributes.
"""

from __future__ import annotations

__all__ = ["WORKBENCH_CSS", "WORKBENCH_HTML", "WORKBENCH_JS"]

WORKBENCH_CSS = """
.workbench { display:grid; grid-template-columns:repeat(auto-fit, minmax(340px, 1fr)); gap:18px;
             padding:0 24px 18px; }
.funnel-step { display:flex; align-items:center; gap:8px; margin:6px 0; }
.funnel-step .name { flex:0 0 32%; overflow:hidden; text-overflow:ellipsis; white-space:nowrap;
                     font-weight:600; }
.funnel-step .bar { flex:1; height:16px; background:#eef2ff; border-radius:3px; overflow:hidden; }
.funnel-step .bar span { display:block; height:100%; background:var(--accent); }
.funnel-step .n { flex:0 0 120px; text-align:right; font-variant-numeric:tabular-nums;
                  font-size:12px; }
.median { font-size:12px; color:var(--muted); margin:-2px 0 4px 34%; }
#trend-chart svg { width:100%; height:140px; display:block; }
#trend-chart rect { fill:var(--accent); }
.trend-total { font-size:12px; color:var(--muted); }
.kv { display:grid; grid-template-columns:max-content 1fr; gap:2px 12px; font-size:12px; }
.kv dt { color:var(--muted); } .kv dd { margin:0; font-family:ui-monospace,Menlo,monospace; }
.timeline { list-style:none; padding:0; margin:8px 0 0; font-size:12px; max-height:260px;
            overflow:auto; }
.timeline li { padding:3px 0; border-bottom:1px solid var(--line); }
.timeline .t { color:var(--muted); margin-right:8px; font-variant-numeric:tabular-nums; }
.problem-text { color:#b91c1c; }
.exposure { font-size:12px; margin:3px 0; }
.exposure b { font-family:ui-monospace,Menlo,monospace; }
td.exc { color:#b91c1c; }
.stack { color:#7f1d1d; }
.pager { display:flex; gap:8px; align-items:center; margin-top:8px; font-size:12px;
         color:var(--muted); }
button.danger { color:#b91c1c; border-color:#fecaca; }
"""

WORKBENCH_HTML = """
<div class="workbench">
  <section id="funnel-section">
    <h2>Funnel</h2>
    <form id="funnel-form" class="filters">
      <input id="funnel-steps" placeholder="step1,step2,step3" aria-label="funnel steps">
      <input id="funnel-window" type="number" min="1" value="86400" aria-label="window seconds"
             title="conversion window (seconds)" style="min-width:0;width:110px">
      <input id="funnel-breakdown" placeholder="breakdown property" aria-label="breakdown">
      <button id="funnel-run" type="submit">run</button>
    </form>
    <div id="funnel-result" class="empty">Steps in order, comma-separated; window in seconds.
    </div>
  </section>
  <section id="trend-section">
    <h2>Trend</h2>
    <form id="trend-form" class="filters">
      <input id="trend-event" placeholder="event name" aria-label="trend event">
      <select id="trend-interval" aria-label="interval">
        <option value="day">per day</option><option value="hour">per hour</option></select>
      <button id="trend-run" type="submit">show</button>
    </form>
    <div id="trend-chart" class="empty">Pick an event.</div>
  </section>
  <section id="person-section">
    <h2>Person</h2>
    <form id="person-form" class="filters">
      <input id="person-id" placeholder="distinct id" aria-label="person distinct id">
      <button id="person-run" type="submit">look up</button>
    </form>
    <div id="person-view" class="empty">Enter a distinct id, or click one in the events.</div>
  </section>
  <section id="exposures-section">
    <h2>Flag exposures</h2>
    <div id="exposures" class="empty">No $feature_flag_called events yet.</div>
  </section>
</div>
"""

WORKBENCH_JS = r"""
function pct(x) { return (100 * x).toFixed(1) + "%"; }
function secondsText(s) {
  if (s === null || s === undefined) return "-";
  if (s >= 86400) return (s / 86400).toFixed(1) + "d";
  if (s >= 3600) return (s / 3600).toFixed(1) + "h";
  if (s >= 60) return (s / 60).toFixed(1) + "m";
  return s.toFixed(0) + "s";
}
async function getOrProblem(url) {
  const response = await fetch(url, { cache: "no-store" });
  const body = await response.json();
  if (!response.ok) throw new Error(body.detail || (url + " answered " + response.status));
  return body;
}
function showProblem(box, err) {
  box.className = ""; box.textContent = "";
  box.append(el("div", "problem-text", err.message));
}

function renderFunnelSteps(box, steps) {
  const top = steps.length ? Math.max(steps[0].count, 1) : 1;
  steps.forEach((step, i) => {
    const line = el("div", "funnel-step");
    line.dataset.event = step.event; line.dataset.count = step.count;
    const bar = el("span", "bar"); const fill = el("span");
    fill.style.width = (100 * step.count / top).toFixed(1) + "%";
    bar.append(fill);
    line.append(el("span", "name", (i + 1) + ". " + step.event), bar,
                el("span", "n", step.count + " · " + pct(step.conversion)));
    box.append(line);
    if (i) box.append(el("div", "median", "median " +
                         secondsText(step.median_seconds_from_previous) + " after step " + i));
  });
}

async function runFunnel(ev) {
  if (ev) ev.preventDefault();
  const box = $("funnel-result");
  const params = new URLSearchParams({ steps: $("funnel-steps").value,
                                       window: $("funnel-window").value });
  if ($("funnel-breakdown").value) params.set("breakdown", $("funnel-breakdown").value);
  try {
    const data = await getOrProblem("/api/funnel?" + params);
    box.className = ""; box.textContent = "";
    renderFunnelSteps(box, data.steps);
    if (data.breakdown) {
      for (const group of data.breakdown.values) {
        const sub = el("div", "breakdown-group");
        sub.dataset.value = group.value;
        sub.append(el("h3", "props", data.breakdown.property + " = " + group.value));
        renderFunnelSteps(sub, group.steps);
        box.append(sub);
      }
    }
  } catch (err) { showProblem(box, err); }
}

async function runTrend(ev) {
  if (ev) ev.preventDefault();
  const box = $("trend-chart");
  const params = new URLSearchParams({ event: $("trend-event").value,
                                       interval: $("trend-interval").value });
  try {
    const data = await getOrProblem("/api/trends?" + params);
    box.className = ""; box.textContent = "";
    const total = el("div", "trend-total", data.total + " events, " + data.persons +
                     " persons, " + data.series.length + " " + data.interval + "(s)");
    total.dataset.total = data.total;
    box.append(total);
    box.insertAdjacentHTML("beforeend", "<svg></svg>");  // the HTML parser sets SVG's namespace
    const svg = box.lastElementChild;
    const ns = svg.namespaceURI;
    const n = Math.max(data.series.length, 1);
    const peak = Math.max(1, ...data.series.map((r) => r.count));
    svg.setAttribute("viewBox", "0 0 " + (n * 10) + " 100");
    svg.setAttribute("preserveAspectRatio", "none");
    data.series.forEach((row, i) => {
      const rect = document.createElementNS(ns, "rect");
      const h = 100 * row.count / peak;
      rect.setAttribute("x", i * 10 + 1); rect.setAttribute("width", 8);
      rect.setAttribute("y", 100 - h); rect.setAttribute("height", h);
      rect.setAttribute("data-count", row.count);
      const title = document.createElementNS(ns, "title");
      title.textContent = row.bucket + ": " + row.count + " (" + row.persons + " persons)";
      rect.append(title);
      svg.append(rect);
    });
  } catch (err) { showProblem(box, err); }
}

async function showPerson(id) {
  const box = $("person-view");
  $("person-id").value = id;
  try {
    const p = await getOrProblem("/api/persons/" + encodeURIComponent(id));
    box.className = ""; box.textContent = "";
    const ids = el("div", "person-ids", "distinct ids: " + p.distinct_ids.join(", "));
    ids.dataset.count = p.distinct_ids.length;
    box.append(ids);
    const props = el("dl", "kv");
    for (const key of Object.keys(p.properties).sort()) {
      props.append(el("dt", null, key), el("dd", null, JSON.stringify(p.properties[key])));
    }
    box.append(props);
    const count = el("div", "props person-events", p.event_count + " event(s)" +
                     (p.event_count > p.events.length ? ", latest " + p.events.length : ""));
    count.dataset.count = p.event_count;
    box.append(count);
    const list = el("ul", "timeline");
    for (const e of p.events) {
      const li = el("li");
      li.append(el("span", "t", shortTime(e.timestamp)), el("b", null, e.event),
                document.createTextNode("  " + e.distinct_id));
      list.append(li);
    }
    box.append(list);
  } catch (err) { showProblem(box, err); }
}

async function refreshExposures() {
  const data = await getJSON("/api/exposures");
  const box = $("exposures");
  const flags = Object.keys(data.flags);
  box.textContent = "";
  if (!flags.length) {
    box.className = "empty"; box.textContent = "No $feature_flag_called events yet."; return;
  }
  box.className = "";
  for (const flag of flags) {
    const line = el("div", "exposure");
    line.dataset.flag = flag;
    line.append(el("b", null, flag), document.createTextNode(": " + data.flags[flag]
      .map((v) => v.variant + " " + v.count + " (" + v.persons + " persons)").join(" / ")));
    box.append(line);
  }
}

$("funnel-form").addEventListener("submit", runFunnel);
$("trend-form").addEventListener("submit", runTrend);
$("person-form").addEventListener("submit", (ev) => {
  ev.preventDefault(); showPerson($("person-id").value.trim());
});
"""
