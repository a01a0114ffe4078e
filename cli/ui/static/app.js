// golfq ui: one page, six views, reading the JSON API of `golfq ui` (cli/ui/server.py).
"use strict";
const { scatterChart, lineChart, parallelChart } = window.golfqCharts;
const $ = id => document.getElementById(id);
const state = { info: null, view: "front", seq: -1, sort: "submitted_at", desc: true, offset: 0, limit: 100,
                ticked: new Set(), filterSeq: 0, curveTimer: null, firstRender: false };

async function api(path, options) {
  const response = await fetch(path, options);
  const body = await response.json().catch(() => ({ error: `HTTP ${response.status}` }));
  if (!response.ok) throw new Error(body.error || `HTTP ${response.status}`);
  return body;
}

const esc = s => String(s == null ? "" : s).replace(/[&<>"']/g, c => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
const num = (v, d) => v == null ? "" : Number(v).toFixed(d);
const mb = v => v == null ? "" : (v / 1e6).toFixed(3) + " MB";
const secs = v => v == null ? "" : Number(v).toFixed(1) + " s";
const usd = v => v == null ? "" : v === 0 ? "$0" : "$" + Number(v).toFixed(v < 1 ? 4 : 2);
const pval = v => v == null ? "n/a" : Number(v).toPrecision(3);
const short = v => String(v).slice(0, 8);

function tip(html, ev) {
  const t = $("tip");
  if (!html) { t.hidden = true; return; }
  t.innerHTML = html; t.hidden = false;
  const x = Math.min(ev.clientX + 14, window.innerWidth - t.offsetWidth - 8);
  t.style.left = x + "px"; t.style.top = (ev.clientY + 14) + "px";
}

function idCell(id) {
  return `<td class="id"><a data-open="${esc(id)}">${esc(id)}</a><button class="copy" data-copy="${esc(id)}" title="Copy the id">copy</button></td>`;
}

document.addEventListener("click", ev => {
  const open = ev.target.closest("[data-open]"), copy = ev.target.closest("[data-copy]");
  if (copy) {
    const value = copy.getAttribute("data-copy");
    if (navigator.clipboard && window.isSecureContext) navigator.clipboard.writeText(value);
    else { const ta = document.createElement("textarea"); ta.value = value; document.body.appendChild(ta); ta.select(); document.execCommand("copy"); ta.remove(); }
    copy.textContent = "copied"; setTimeout(() => { copy.textContent = "copy"; }, 900);
  } else if (open) showJob(open.getAttribute("data-open"));
});

// ---------------------------------------------------------------- router
function route() {
  const view = (location.hash.slice(1).split("?")[0]) || "front";
  state.view = ["front", "runs", "curves", "parallel", "compare", "ops"].includes(view) ? view : "front";
  document.querySelectorAll(".view").forEach(s => s.classList.toggle("active", s.id === "view-" + state.view));
  document.querySelectorAll("#nav a").forEach(a => a.classList.toggle("active", a.dataset.view === state.view));
  clearInterval(state.curveTimer);
  if (state.view === "curves") { loadCurves(); state.curveTimer = setInterval(loadCurves, 2000); }
  render();
}

function render() {
  ({ front: loadFronts, runs: loadRuns, parallel: loadParallel, ops: loadOps, compare: () => {}, curves: () => {} })[state.view]();
}

// ---------------------------------------------------------------- front
async function loadFronts() {
  const doc = await api("/api/fronts");
  const box = $("fronts");
  box.innerHTML = "";
  if (!doc.tracks.length) box.innerHTML = '<p class="muted">No results yet: the front appears when the first job succeeds.</p>';
  for (const t of doc.tracks) {
    const div = document.createElement("div");
    div.className = "track"; div.dataset.track = t.track;
    const inc = t.points.find(p => p.incumbent);
    div.innerHTML = `<h2>${esc(t.track)}</h2><div class="muted">${t.points.filter(p => p.on_front).length} point(s) on the front of
      ${t.groups} config(s), ${t.results} result(s); ${inc ? `incumbent ${esc(inc.name || short(inc.config))} ${num(inc.val_bpb, 4)} (${inc.seeds} seeds)` : "no incumbent yet (it needs 2 seeds)"}${t.shown < t.groups ? `; drawing the best ${t.shown}` : ""}</div><div class="charts"></div>`;
    box.appendChild(div);
    const charts = div.querySelector(".charts");
    const labelled = new Set(t.points.filter(p => p.on_front || !p.feasible).map(p => p.config));
    const width = Math.max(420, Math.min(720, Math.floor((box.clientWidth - 12) / 2) - 2));  // two side by side
    const base = p => ({ y: p.val_bpb, std: p.val_bpb_std, cls: p.on_front ? "on-front" : "dominated", infeasible: !p.feasible,
                         incumbent: p.incumbent, confirmed: p.confirmed, key: p.config, doc: p,
                         label: labelled.has(p.config) ? (p.name || short(p.config)) : "" });
    const hover = (p, ev) => tip(p && pointTip(p.doc, t), ev);
    const click = (p, g) => { document.querySelectorAll(".pt.selected").forEach(n => n.classList.remove("selected")); g.classList.add("selected"); showConfigJobs(p.doc); };
    scatterChart(charts, t.points.map(p => Object.assign(base(p), { x: p.artifact_bytes / 1e6 })),
      { xLabel: "artifact (MB)", yLabel: "val_bpb (lower is better)", title: "val_bpb vs artifact size",
        limit: t.limits.artifact_bytes / 1e6, limitLabel: "16,000,000-byte limit", width, onHover: hover, onClick: click });
    scatterChart(charts, t.points.map(p => Object.assign(base(p), { x: p.train_seconds })),
      { xLabel: "training time (s)", yLabel: "val_bpb (lower is better)", title: "val_bpb vs training time",
        limit: t.limits.train_seconds, limitLabel: t.limits.time_rule_applies ? "600 s limit" : "600 s limit (8xH100 track)",
        width, onHover: hover, onClick: click });
  }
  markFirstRender("front");
}

function pointTip(p, t) {
  const against = t.points.find(q => q.config === p.tested_against);
  const gain = p.gain == null ? "" : `<br>gain over ${esc(against && against.name ? against.name : short(p.tested_against))}: ${p.gain >= 0 ? "+" : ""}${num(p.gain, 4)} bpb, record-rule p = ${pval(p.p_value)}${p.significant ? " (significant)" : ""}`;
  return `<b>${esc(p.name || p.config)}</b> ${p.incumbent ? "(incumbent)" : ""}<br>config ${esc(p.config)}
    <br>val_bpb ${num(p.val_bpb, 4)} ± ${num(p.val_bpb_std, 4)} over ${p.seeds} seed(s)
    <br>${mb(p.artifact_bytes)}, ${secs(p.train_seconds)} training
    <br>${p.feasible ? "feasible" : "<b>infeasible</b>: over a limit"}; ${p.on_front ? "on the front" : "dominated"}${p.confirmed ? "; confirmed" : ""}${gain}`;
}

async function showConfigJobs(p) {
  const doc = await api(`/api/jobs?filter=${encodeURIComponent("config=" + p.config)}&limit=100`);
  const against = p.tested_against ? ` <button id="cmp-incumbent">Compare with ${p.incumbent ? "the runner-up" : "the incumbent"}</button>` : "";
  $("front-jobs").innerHTML = `<h3>Jobs of config ${esc(p.name || "")} <span class="muted">${esc(p.config)}</span>${against}</h3>` +
    `<div class="table-wrap"><table id="config-jobs">${rowsHtml(doc.rows, ["id", "state", "pool", "seed", "val_bpb", "artifact_bytes", "train_seconds", "cost_usd", "name"], false)}</table></div>`;
  if ($("cmp-incumbent")) $("cmp-incumbent").onclick = () => { $("cmp-a").value = p.config; $("cmp-b").value = p.tested_against; location.hash = "#compare"; runCompare(); };
}

// ---------------------------------------------------------------- runs
const LABELS = { artifact_bytes: "bytes", train_seconds: "seconds", cost_usd: "cost", submitted_at: "submitted", val_bpb: "val_bpb" };
const NUMERIC = new Set(["seed", "attempt", "val_bpb", "artifact_bytes", "train_seconds", "cost_usd"]);

function cell(row, c) {
  if (c === "id") return idCell(row.id);
  if (c === "parent") return row.parent ? idCell(row.parent) : "<td></td>";
  if (c === "state") return `<td class="state-${row.state}">${row.state}${waitBadge(row)}</td>`;
  if (c === "tags") return `<td>${esc(row.tags.join(", "))}</td>`;
  if (c === "val_bpb") return `<td class="num">${num(row.val_bpb, 4)}</td>`;
  if (c === "artifact_bytes") return `<td class="num">${row.artifact_bytes == null ? "" : row.artifact_bytes.toLocaleString("en")}</td>`;
  if (c === "train_seconds") return `<td class="num">${num(row.train_seconds, 1)}</td>`;
  if (c === "cost_usd") return `<td class="num">${usd(row.cost_usd)}</td>`;
  if (c === "submitted_at") return `<td>${new Date(row.submitted_at * 1000).toISOString().slice(0, 19).replace("T", " ")}</td>`;
  if (/^[A-Z]/.test(c)) return `<td class="num">${esc(row.env[c] == null ? "" : row.env[c])}</td>`;
  return `<td${NUMERIC.has(c) ? ' class="num"' : ""}>${esc(row[c])}</td>`;
}

// A queued job a spend cap holds back: a badge whose tooltip is the reason `golfq status` gives.
const waitBadge = row => row.waiting ? ` <span class="wait" data-waiting="${esc(row.waiting)}" title="${esc(row.waiting_reason)}">waits: ${esc(row.waiting)}</span>` : "";

function rowsHtml(rows, columns, tick) {
  const head = (tick ? "<th></th>" : "") + columns.map(c => `<th data-sort="${c}" class="${c === state.sort ? "sorted" + (state.desc ? " desc" : "") : ""}">${esc(LABELS[c] || c)}</th>`).join("");
  const body = rows.map(r => `<tr data-id="${r.id}">` + (tick ? `<td><input type="checkbox" data-tick="${r.id}"${state.ticked.has(r.id) ? " checked" : ""}></td>` : "") +
    columns.map(c => cell(r, c)).join("") + "</tr>").join("");
  return `<thead><tr>${head}</tr></thead><tbody>${body}</tbody>`;
}

async function loadRuns() {
  const filter = $("filter").value, mine = ++state.filterSeq;
  const q = `/api/jobs?filter=${encodeURIComponent(filter)}&sort=${state.sort}&desc=${state.desc ? 1 : 0}&offset=${state.offset}&limit=${state.limit}`;
  let doc;
  try { doc = await api(q); } catch (e) { if (mine === state.filterSeq) $("filter-error").textContent = e.message; return; }
  if (mine !== state.filterSeq) return;  // a newer filter is on its way
  $("filter-error").textContent = "";
  const columns = ["id", "state", "pool", "name", "val_bpb", "artifact_bytes", "train_seconds", "cost_usd", "tags", "parent", "seed", ...doc.hyperparameters, "submitted_at"];
  $("runs").innerHTML = rowsHtml(doc.rows, columns, true);
  $("runs-count").textContent = `${doc.total.toLocaleString("en")} of ${doc.of.toLocaleString("en")} job(s)`;
  $("page").textContent = doc.total ? `${state.offset + 1}-${Math.min(doc.total, state.offset + state.limit)}` : "";
  $("runs").dataset.total = doc.total;
  performance.mark("golfq:runs-rendered");
  markFirstRender("runs");
}

function markFirstRender(view) {
  if (state.firstRender) return;
  state.firstRender = true;
  performance.mark("golfq:first-render");
  document.body.dataset.firstRender = view;
}

let filterTimer = null;
$("filter").addEventListener("input", () => {
  performance.mark("golfq:filter-input");
  clearTimeout(filterTimer);
  filterTimer = setTimeout(() => { state.offset = 0; performance.mark("golfq:filter-start"); loadRuns(); }, 150);
});
$("runs").addEventListener("click", ev => {
  const th = ev.target.closest("th[data-sort]");
  if (th) { const c = th.dataset.sort; state.desc = state.sort === c ? !state.desc : false; state.sort = c; state.offset = 0; loadRuns(); }
  const box = ev.target.closest("[data-tick]");
  if (box) { box.checked ? state.ticked.add(box.dataset.tick) : state.ticked.delete(box.dataset.tick); }
});
$("prev").onclick = () => { state.offset = Math.max(0, state.offset - state.limit); loadRuns(); };
$("next").onclick = () => { const total = +($("runs").dataset.total || 0); if (state.offset + state.limit < total) { state.offset += state.limit; loadRuns(); } };
$("to-curves").onclick = () => { $("curve-ids").value = [...state.ticked].join(","); location.hash = "#curves"; };
$("to-compare").onclick = () => { const [a, b] = [...state.ticked]; $("cmp-a").value = a || ""; $("cmp-b").value = b || ""; location.hash = "#compare"; if (a && b) runCompare(); };

// ---------------------------------------------------------------- curves
async function loadCurves() {
  const ids = $("curve-ids").value.split(/[\s,]+/).filter(Boolean);
  let doc;
  try { doc = await api("/api/curves" + (ids.length ? "?ids=" + encodeURIComponent(ids.join(",")) : "")); }
  catch (e) { $("curve-status").textContent = e.message; return; }
  const y = $("curve-y").value, x = $("curve-x").value;
  const series = doc.curves.map(c => ({ key: c.id, stopped: c.stopped,
    points: c.points.filter(p => p[y] != null && p[x] != null).map(p => ({ x: p[x], y: p[y] })) }));
  $("curve-chart").innerHTML = "";
  lineChart($("curve-chart"), series, { width: 900, height: 420, xLabel: x === "step" ? "step" : "training seconds",
    yLabel: y + " (lower is better)", empty: doc.curves.length ? "no points with " + y + " yet" : "no running jobs: tick jobs in Runs, or give ids" });
  $("curve-legend").innerHTML = doc.curves.map((c, i) => `<span><svg width="14" height="4"><rect width="14" height="4" fill="${window.golfqCharts.PALETTE[i % 10]}"/></svg>
    <a data-open="${esc(c.id)}">${esc(c.id)}</a> ${esc(c.name)} <span class="state-${c.state}">${c.state}</span> (${c.points.length} pt)</span>`).join("");
  $("curve-status").textContent = `${doc.curves.length} curve(s), updated ${new Date().toLocaleTimeString()}`;
}
["curve-y", "curve-x"].forEach(id => $(id).addEventListener("change", loadCurves));
$("curve-ids").addEventListener("change", loadCurves);

// ---------------------------------------------------------------- parallel coordinates
async function loadParallel() {
  const select = $("parallel-track"), tracks = state.info ? state.info.tracks : [];
  if (select.options.length !== tracks.length) select.innerHTML = tracks.map(t => `<option>${esc(t)}</option>`).join("");
  const chart = $("parallel-chart");
  if (!select.value) { chart.innerHTML = '<p class="muted">No results yet.</p>'; return; }
  const doc = await api("/api/parallel?track=" + encodeURIComponent(select.value));
  chart.innerHTML = "";
  $("parallel-status").textContent = `${doc.shown} of ${doc.jobs} succeeded job(s); ${doc.axes.length} varying hyperparameter(s)`;
  if (!doc.lines.length) return;
  parallelChart(chart, doc.axes, doc.lines, {
    onHover: (l, ev) => tip(l && `<b>${esc(l.id)}</b><br>val_bpb ${num(l.val_bpb, 4)}<br>` + doc.axes.map((a, i) => `${esc(a.key)}=${esc(l.values[i])}`).join("<br>"), ev),
    onClick: l => showJob(l.id) });
}
$("parallel-track").addEventListener("change", loadParallel);

// ---------------------------------------------------------------- compare
async function runCompare() {
  $("cmp-error").textContent = ""; $("cmp-result").innerHTML = "";
  let c;
  try { c = await api(`/api/compare?a=${encodeURIComponent($("cmp-a").value.trim())}&b=${encodeURIComponent($("cmp-b").value.trim())}`); }
  catch (e) { $("cmp-error").textContent = e.message; return; }
  const side = s => `<td>${esc(s.name)} <span class="muted">${esc(s.config)}, ${esc(s.track)}</span></td>`;
  const ci = c.ci ? `[${c.ci[0] >= 0 ? "+" : ""}${num(c.ci[0], 5)}, ${c.ci[1] >= 0 ? "+" : ""}${num(c.ci[1], 5)}]` : "n/a (needs 2 seeds a side)";
  $("cmp-result").innerHTML = `<table class="cmp" id="cmp-table"><tr><td></td><th>A (candidate)</th><th>B (baseline)</th></tr>
    <tr><td>config</td>${side(c.a)}${side(c.b)}</tr>
    <tr><td>val_bpb (mean ± std)</td><td>${num(c.a.val_bpb, 5)} ± ${num(c.a.val_bpb_std, 5)}</td><td>${num(c.b.val_bpb, 5)} ± ${num(c.b.val_bpb_std, 5)}</td></tr>
    <tr><td>seeds</td><td>${c.a.seeds}</td><td>${c.b.seeds}</td></tr>
    <tr><td>jobs</td><td>${c.a.job_ids.map(i => `<a data-open="${i}">${i}</a>`).join("<br>")}</td><td>${c.b.job_ids.map(i => `<a data-open="${i}">${i}</a>`).join("<br>")}</td></tr>
    <tr><td>A - B</td><td colspan="2" id="cmp-diff">${c.diff >= 0 ? "+" : ""}${num(c.diff, 5)} bpb (negative: A is better)</td></tr>
    <tr><td>${Math.round(c.level * 100)}% interval</td><td colspan="2">${ci}</td></tr>
    <tr><td>p (two-sided, Welch)</td><td colspan="2">${pval(c.p_value)}</td></tr>
    <tr><td>record rule</td><td colspan="2">${c.significant == null ? "n/a (a test needs at least 2 seeds on each side)" :
      `A beats B by &gt; ${num(c.threshold_bpb, 5)} bpb: p ${pval(c.p_record)}, ${c.significant ? "<b>significant</b>" : "not significant"}`}</td></tr></table>`;
}
$("cmp-go").onclick = runCompare;

// ---------------------------------------------------------------- operations
async function loadOps() {
  const doc = await api("/api/ops");
  $("ops-summary").innerHTML = `<p>${esc(doc.backend)} queue <code>${esc(doc.queue)}</code>: spend so far <b>${usd(doc.spend_usd)}</b>
    over ${num(doc.gpu_seconds / 3600, 2)} GPU-hours (as <code>golfq ops cost</code> counts it; on Modal, the billed GPU time); ${doc.last_seq} event(s).</p>`;
  renderBudget(doc.budget);
  const cols = ["queued", "leased", "succeeded", "failed", "dead", "cancelled", "stopped"];
  $("ops-pools").innerHTML = `<thead><tr><th>pool</th>${cols.map(c => `<th>${c}</th>`).join("")}<th>workers serving</th><th>draining</th></tr></thead><tbody>` +
    doc.pools.map(p => `<tr><td>${esc(p.pool)}</td>${cols.map(c => `<td class="num">${p[c]}</td>`).join("")}<td class="num">${p.workers == null ? "unknown" : p.workers}</td><td>${p.draining ? "yes" : ""}</td></tr>`).join("") + "</tbody>";
  $("ops-spend").innerHTML = "<thead><tr><th>pool</th><th>attempts</th><th>GPU-seconds</th><th>cost</th></tr></thead><tbody>" +
    doc.spend.map(r => `<tr><td>${esc(r.pool)}</td><td class="num">${r.attempts}</td><td class="num">${num(r.gpu_seconds, 1)}</td><td class="num">${usd(r.cost_usd)}</td></tr>`).join("") + "</tbody>";
  $("ops-actions").innerHTML = state.info && state.info.allow_actions ? `<h3>Promote</h3><div class="toolbar">
    <input id="pr-from" placeholder="from pool or track"><input id="pr-to" placeholder="to pool"><input id="pr-top" value="3" size="3"><input id="pr-seeds" value="3" size="3">
    <button id="pr-go">Promote</button><span id="pr-out" class="muted"></span></div>` : '<p class="muted">Read-only: start <code>golfq ui --allow-actions</code> to cancel, requeue and promote from here.</p>';
  if ($("pr-go")) $("pr-go").onclick = () => act("promote", { from: $("pr-from").value, to: $("pr-to").value, top: +$("pr-top").value, seeds: +$("pr-seeds").value }, $("pr-out"));
}

function renderBudget(b) {
  const actions = state.info && state.info.allow_actions;
  const money = v => v == null ? "" : "$" + Number(v).toLocaleString("en", { minimumFractionDigits: 2, maximumFractionDigits: 2 });
  const scopeOf = key => key === "queue" ? {} : key.startsWith("pool:") ? { pool: key.slice(5) } : { tag: key.slice(4) };
  const shown = b.scopes.filter(s => s.cap != null || !s.scope.startsWith("tag:"));  // a tag without a cap: one of many, no row
  const rows = shown.map(s => `<tr data-scope="${esc(s.scope)}"><td>${esc(s.label)}</td><td class="num">${s.cap == null ? '<span class="muted">none</span>' : money(s.cap)}</td>
    <td class="num">${money(s.spent)}</td><td class="num">${money(s.committed)}</td><td class="num${s.left != null && s.left <= 0 ? " over" : ""}">${money(s.left)}</td>` +
    (actions ? `<td class="cap-edit"><input class="cap-usd" size="7" placeholder="$" value="${s.cap == null ? "" : s.cap}"><button class="cap-set">Set</button>${s.cap == null ? "" : '<button class="cap-clear">Clear</button>'}</td>` : "") + "</tr>").join("");
  $("ops-budget").innerHTML = shown.length ? `<thead><tr><th>scope</th><th>cap</th><th>spent</th><th>committed</th><th>left</th>${actions ? '<th class="cap-edit">set or clear the cap</th>' : ""}</tr></thead><tbody>${rows}</tbody>`
    : '<tbody><tr><td class="muted">No caps and no spending yet.</td></tr></tbody>';
  $("ops-waiting").innerHTML = b.jobs_waiting ? `<p><a href="#runs" id="ops-waiting-link">${b.jobs_waiting} queued job(s)</a> wait on a cap; first in each pool:</p><ul>` +
    b.waiting.map(w => `<li><a data-open="${esc(w.job_id)}">${esc(w.job_id)}</a> (${esc(w.pool)}): ${esc(w.reason)}</li>`).join("") + "</ul>"
    : '<p class="muted">No job waits on a cap.</p>';
  if ($("ops-waiting-link")) $("ops-waiting-link").onclick = () => { $("filter").value = "waiting:budget"; state.offset = 0; };
  $("ops-budget-new").innerHTML = actions ? `<div class="toolbar"><select id="cap-kind"><option value="queue">the queue</option><option value="pool">pool</option><option value="tag">tag</option></select>
    <input id="cap-name" placeholder="pool or tag name" size="14"><input id="cap-new-usd" placeholder="dollars" size="8"><button id="cap-add">Set cap</button></div>`
    : '<p class="muted">Read-only: start <code>golfq ui --allow-actions</code> to set caps here (or <code>golfq ops budget set</code>).</p>';
  const setCap = body => act("budget", body, $("cap-out")).then(loadOps);
  document.querySelectorAll("#ops-budget tr[data-scope]").forEach(tr => {
    const scope = scopeOf(tr.dataset.scope), set = tr.querySelector(".cap-set"), clear = tr.querySelector(".cap-clear");
    if (set) set.onclick = () => setCap(Object.assign({ usd: tr.querySelector(".cap-usd").value }, scope));
    if (clear) clear.onclick = () => setCap(Object.assign({ usd: null }, scope));
  });
  if ($("cap-add")) $("cap-add").onclick = () => { const kind = $("cap-kind").value;
    setCap(Object.assign({ usd: $("cap-new-usd").value }, kind === "queue" ? {} : { [kind]: $("cap-name").value })); };
}

async function showLog(id) {
  $("log-error").textContent = "";
  try { const doc = await api(`/api/jobs/${encodeURIComponent(id)}/log`); $("log-text").textContent = (doc.truncated ? "... (the last 200 kB; source: " + doc.source + ")\n" : "") + (doc.text || "(empty)"); }
  catch (e) { $("log-error").textContent = e.message; $("log-text").textContent = ""; }
}
$("log-go").onclick = () => showLog($("log-id").value.trim());

async function act(action, body, out) {
  try { const r = await api("/api/actions/" + action, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
        out.textContent = r.budget ? "" : JSON.stringify(r.changed || r.promoted); out.classList.remove("error"); }
  catch (e) { out.textContent = e.message; out.classList.add("error"); }
}

// ---------------------------------------------------------------- one job: lineage, spec, log, actions
async function showJob(id) {
  let doc;
  try { doc = await api("/api/jobs/" + encodeURIComponent(id)); } catch (e) { tip(null); alert(e.message); return; }
  const j = doc.job, list = rows => rows.length ? rows.map(r => `<a data-open="${r.id}">${r.id}</a> ${r.state} ${num(r.val_bpb, 4)} ${esc(r.name)}`).join("<br>") : '<span class="muted">none</span>';
  const actions = state.info && state.info.allow_actions ? `<div class="toolbar"><button id="d-cancel">Cancel</button><button id="d-requeue">Requeue</button><span id="d-out" class="muted"></span></div>` : "";
  $("detail-body").innerHTML = `<h3>${esc(j.name || j.id)}</h3><dl>
    <dt>id</dt><dd>${esc(j.id)} <button class="copy" data-copy="${esc(j.id)}">copy</button></dd>
    <dt>state</dt><dd class="state-${j.state}">${j.state} (attempt ${j.attempt})${waitBadge(j)}</dd>${j.waiting_reason ? `<dt>waits on</dt><dd id="d-waiting">${esc(j.waiting_reason)}</dd>` : ""}<dt>pool / track</dt><dd>${esc(j.pool)} / ${esc(j.track)}</dd>
    <dt>config</dt><dd>${esc(j.config)}</dd><dt>seed</dt><dd>${j.seed}</dd><dt>tags</dt><dd>${esc(j.tags.join(", "))}</dd>
    <dt>hyperparameters</dt><dd>${Object.entries(j.env).map(([k, v]) => `${esc(k)}=${esc(v)}`).join(" ") || "-"}</dd>
    <dt>val_bpb</dt><dd>${num(j.val_bpb, 5)}</dd><dt>artifact</dt><dd>${j.artifact_bytes == null ? "" : j.artifact_bytes.toLocaleString("en") + " bytes"}</dd>
    <dt>training</dt><dd>${secs(j.train_seconds)}</dd><dt>cost</dt><dd>${usd(j.cost_usd)}</dd>
    <dt>budget</dt><dd>${doc.spec.train_seconds} s train, ${doc.spec.hard_timeout} s hard</dd><dt>error</dt><dd>${esc(j.error)}</dd>
    <dt>parent</dt><dd>${doc.parent ? list([doc.parent]) : (j.parent ? esc(j.parent) : '<span class="muted">none</span>')}</dd>
    <dt>children</dt><dd>${list(doc.children)}</dd><dt>other seeds</dt><dd>${list(doc.seeds)}</dd></dl>
    <div class="toolbar"><button id="d-curve">Curve</button><button id="d-log">Log</button><button id="d-cmp">Compare with&hellip;</button></div>${actions}`;
  $("detail").hidden = false;
  $("d-curve").onclick = () => { $("curve-ids").value = id; location.hash = "#curves"; loadCurves(); };
  $("d-log").onclick = () => { $("log-id").value = id; location.hash = "#ops"; showLog(id); };
  $("d-cmp").onclick = () => { $("cmp-a").value = id; location.hash = "#compare"; };
  if ($("d-cancel")) { $("d-cancel").onclick = () => act("cancel", { ids: [id] }, $("d-out")); $("d-requeue").onclick = () => act("requeue", { ids: [id] }, $("d-out")); }
}
$("detail-close").onclick = () => { $("detail").hidden = true; };

// ---------------------------------------------------------------- start, and follow the queue
async function poll() {
  try {
    const info = await api("/api/info");
    state.info = info;
    $("queue").textContent = info.queue;
    $("mode").textContent = info.allow_actions ? "actions on" : "read-only";
    $("mode").classList.toggle("actions", info.allow_actions);
    if (info.rows_version !== state.seq) { const first = state.seq === -1; state.seq = info.rows_version; if (!first) render(); }
  } catch (e) { $("queue").textContent = "queue unreachable: " + e.message; }
}
window.addEventListener("hashchange", route);
poll().then(route);
setInterval(poll, 3000);
