// golfq's charts: small SVG scatter, line and parallel-coordinate plots, no library (see docs/architecture.md).
(function () {
"use strict";
const SVGNS = "http://www.w3.org/2000/svg";

function el(name, attrs, parent) {
  const node = document.createElementNS(SVGNS, name);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  if (parent) parent.appendChild(node);
  return node;
}

function text(parent, x, y, content, attrs) {
  const node = el("text", Object.assign({ x, y }, attrs || {}), parent);
  node.textContent = content;
  return node;
}

// Round tick steps (1, 2, 5 x 10^k) covering [lo, hi].
function ticks(lo, hi, count) {
  if (!(hi > lo)) { const pad = Math.abs(lo) * 0.05 || 1; lo -= pad; hi += pad; }
  const raw = (hi - lo) / Math.max(1, count);
  const mag = Math.pow(10, Math.floor(Math.log10(raw)));
  const step = [1, 2, 5, 10].map(m => m * mag).find(s => s >= raw) || raw;
  const out = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(+v.toPrecision(12));
  return { lo, hi, step, values: out };
}

function fmtTick(v, step) {
  const digits = Math.max(0, -Math.floor(Math.log10(step) + 1e-9));
  return v.toFixed(Math.min(digits, 6));
}

// The data's own range, padded; a limit is brought into view only when it is near the data
// (within 1.6 times the span), otherwise the chart says where it is instead of squashing the data.
function fitRange(values, limit) {
  let lo = Math.min(...values), hi = Math.max(...values);
  if (!isFinite(lo)) { lo = 0; hi = 1; }
  const span = hi - lo || Math.abs(hi) * 0.1 || 1;
  let limitIn = false;
  if (limit != null && limit >= lo - span * 0.6 && limit <= hi + span * 0.6) {
    lo = Math.min(lo, limit); hi = Math.max(hi, limit); limitIn = true;
  }
  const pad = (hi - lo || span) * 0.08;
  return { lo: lo - pad, hi: hi + pad, limitIn };
}

function frame(container, opts) {
  const W = opts.width || 520, H = opts.height || 330, m = { l: 58, r: 18, t: 26, b: 42 };
  const svg = el("svg", { class: "chart", width: W, height: H, viewBox: `0 0 ${W} ${H}` });
  container.appendChild(svg);
  const xt = ticks(opts.x.lo, opts.x.hi, 6), yt = ticks(opts.y.lo, opts.y.hi, 6);
  const sx = v => m.l + (v - opts.x.lo) / (opts.x.hi - opts.x.lo || 1) * (W - m.l - m.r);
  const sy = v => H - m.b - (v - opts.y.lo) / (opts.y.hi - opts.y.lo || 1) * (H - m.t - m.b);
  const grid = el("g", { class: "grid" }, svg), axis = el("g", { class: "axis" }, svg);
  for (const v of xt.values) {
    if (v < opts.x.lo || v > opts.x.hi) continue;
    el("line", { x1: sx(v), x2: sx(v), y1: m.t, y2: H - m.b }, grid);
    text(axis, sx(v), H - m.b + 14, fmtTick(v, xt.step), { "text-anchor": "middle" });
  }
  for (const v of yt.values) {
    if (v < opts.y.lo || v > opts.y.hi) continue;
    el("line", { x1: m.l, x2: W - m.r, y1: sy(v), y2: sy(v) }, grid);
    text(axis, m.l - 5, sy(v) + 4, fmtTick(v, yt.step), { "text-anchor": "end" });
  }
  el("path", { d: `M${m.l} ${m.t}V${H - m.b}H${W - m.r}`, fill: "none" }, axis);
  text(svg, (m.l + W - m.r) / 2, H - 8, opts.xLabel, { "text-anchor": "middle" });
  text(svg, 14, (m.t + H - m.b) / 2, opts.yLabel, { "text-anchor": "middle", transform: `rotate(-90 14 ${(m.t + H - m.b) / 2})` });
  if (opts.title) text(svg, m.l, 16, opts.title, { class: "title" });
  return { svg, sx, sy, m, W, H };
}

// Scatter of configs: y val_bpb with a ±1 std bar, x a field; the limit line or an edge note.
// points: [{x, y, std, cls: "on-front"|"dominated", infeasible, incumbent, confirmed, label, key}]
function scatterChart(container, points, opts) {
  const xr = fitRange(points.map(p => p.x), opts.limit);
  const ys = points.flatMap(p => [p.y - (p.std || 0), p.y + (p.std || 0)]);
  const yr = fitRange(ys, null);
  const f = frame(container, Object.assign({}, opts, { x: xr, y: yr }));
  if (opts.limit != null) {
    if (xr.limitIn) {
      el("line", { class: "limit", x1: f.sx(opts.limit), x2: f.sx(opts.limit), y1: f.m.t, y2: f.H - f.m.b }, f.svg);
      text(f.svg, f.sx(opts.limit) - 4, f.m.t + 10, opts.limitLabel, { class: "limit-text", "text-anchor": "end" });
    } else {
      const right = opts.limit > xr.hi;
      const x = right ? f.W - f.m.r - 4 : f.m.l + 4;
      text(f.svg, x, f.m.t + 10, (right ? "" : "\u2190 ") + opts.limitLabel + (right ? " further right \u2192" : ""),
           { class: "limit-text", "text-anchor": right ? "end" : "start" });
    }
  }
  const layer = el("g", {}, f.svg), placed = [];
  const order = points.slice().sort((a, b) => (a.cls === "on-front") - (b.cls === "on-front"));
  for (const p of order) {
    const g = el("g", { class: "pt", "data-config": p.key, "data-front": p.cls === "on-front" ? "1" : "0",
                        "data-feasible": p.infeasible ? "0" : "1" }, layer);
    const x = f.sx(p.x), y = f.sy(p.y);
    if (p.std) el("line", { class: "errbar", x1: x, x2: x, y1: f.sy(p.y - p.std), y2: f.sy(p.y + p.std) }, g);
    const r = p.cls === "on-front" ? 5.5 : 4;
    if (p.infeasible) {
      el("circle", { cx: x, cy: y, r: r + 2, fill: "transparent", stroke: "none" }, g);
      el("path", { class: "infeasible", d: `M${x - r} ${y - r}L${x + r} ${y + r}M${x + r} ${y - r}L${x - r} ${y + r}` }, g);
    } else {
      el("circle", { cx: x, cy: y, r, class: p.cls + (p.confirmed ? " confirmed" : "") }, g);
    }
    if (p.incumbent) el("circle", { cx: x, cy: y, r: r + 3, class: "incumbent-ring" }, g);
    if (p.label) {  // a label only where it overlaps no other label, flipped left near the right edge
      const w = p.label.length * 5.6 + 2, left = x + 8 + w > f.W - f.m.r;
      const box = { x0: left ? x - 8 - w : x + 8, y0: y - 16, x1: left ? x - 8 : x + 8 + w, y1: y - 4 };
      if (!placed.some(b => box.x0 < b.x1 && b.x0 < box.x1 && box.y0 < b.y1 && b.y0 < box.y1)) {
        placed.push(box);
        text(g, left ? x - 8 : x + 8, y - 6, p.label, { class: "pt-label", "text-anchor": left ? "end" : "start" });
      }
    }
    if (opts.onHover) {
      g.addEventListener("mousemove", ev => opts.onHover(p, ev));
      g.addEventListener("mouseleave", () => opts.onHover(null));
    }
    if (opts.onClick) g.addEventListener("click", () => opts.onClick(p, g));
  }
  return f.svg;
}

const PALETTE = ["#1f63c6", "#d1495b", "#2e7d32", "#8e44ad", "#e08e0b", "#00838f", "#6d4c41", "#c2185b",
                 "#546e7a", "#7cb342"];

// Curves: series [{key, label, points: [{x, y}], stopped}]
function lineChart(container, series, opts) {
  const xs = series.flatMap(s => s.points.map(p => p.x)), ys = series.flatMap(s => s.points.map(p => p.y));
  if (!xs.length) { container.textContent = opts.empty || "no points yet"; return null; }
  const f = frame(container, Object.assign({}, opts, { x: fitRange(xs, null), y: fitRange(ys, null) }));
  let total = 0;
  series.forEach((s, i) => {
    const colour = PALETTE[i % PALETTE.length];
    const g = el("g", { class: "series", "data-job": s.key, "data-points": s.points.length }, f.svg);
    if (s.points.length > 1) {
      el("path", { d: s.points.map((p, j) => `${j ? "L" : "M"}${f.sx(p.x).toFixed(1)} ${f.sy(p.y).toFixed(1)}`).join(""),
                   fill: "none", stroke: colour, "stroke-width": 1.8 }, g);
    }
    for (const p of s.points) el("circle", { class: "cpt", cx: f.sx(p.x), cy: f.sy(p.y), r: 2.4, fill: colour }, g);
    total += s.points.length;
    if (s.stopped && s.points.length) {
      const last = s.points[s.points.length - 1], x = f.sx(last.x), y = f.sy(last.y);
      el("path", { class: "stop-mark", d: `M${x - 6} ${y - 6}L${x + 6} ${y + 6}M${x + 6} ${y - 6}L${x - 6} ${y + 6}`,
                   stroke: colour, "stroke-width": 2.5 }, g);
      text(g, x + 8, y + 4, "stopped", { fill: colour });
    }
  });
  f.svg.setAttribute("data-points", total);
  return f.svg;
}

// Parallel coordinates: axes [{key, kind, values?}], lines [{values, val_bpb, id}]
function parallelChart(container, axes, lines, opts) {
  const all = axes.concat([{ key: "val_bpb", kind: "number" }]);
  const W = Math.max(720, Math.min(1400, 180 * all.length)), H = 400, m = { l: 50, r: 110, t: 40, b: 22 };
  const svg = el("svg", { class: "chart", width: W, height: H, viewBox: `0 0 ${W} ${H}` });
  container.appendChild(svg);
  const X = i => m.l + i * (W - m.l - m.r) / Math.max(1, all.length - 1);
  const scales = all.map((a, i) => {
    const vals = lines.map(l => i < axes.length ? l.values[i] : l.val_bpb);
    if (a.kind === "number") {
      const nums = vals.filter(v => v != null).map(Number);
      const lo = Math.min(...nums), hi = Math.max(...nums);
      const span = hi - lo || 1;
      return { f: v => v == null ? null : H - m.b - (Number(v) - lo) / span * (H - m.t - m.b),
               labels: [0, 0.25, 0.5, 0.75, 1].map(q => [lo + q * (hi - lo), H - m.b - q * (H - m.t - m.b)]) };
    }
    const cats = a.values, n = Math.max(1, cats.length - 1);
    return { f: v => H - m.b - cats.indexOf(v == null ? "(unset)" : v) / n * (H - m.t - m.b),
             labels: cats.map((c, j) => [c, H - m.b - j / n * (H - m.t - m.b)]) };
  });
  const bpbs = lines.map(l => l.val_bpb), best = Math.min(...bpbs), worst = Math.max(...bpbs);
  const colour = v => { const t = worst > best ? (v - best) / (worst - best) : 0; return `hsl(${220 - 180 * t}, 70%, ${32 + 30 * t}%)`; };
  const layer = el("g", {}, svg);
  for (const l of lines.slice().reverse()) {  // the best drawn last, on top
    const pts = all.map((a, i) => [X(i), scales[i].f(i < axes.length ? l.values[i] : l.val_bpb)]).filter(p => p[1] != null);
    const path = el("path", { class: "pline", "data-job": l.id, d: pts.map((p, j) => `${j ? "L" : "M"}${p[0].toFixed(1)} ${p[1].toFixed(1)}`).join(""),
                              fill: "none", stroke: colour(l.val_bpb), "stroke-width": 1.3, "stroke-opacity": 0.75 }, layer);
    if (opts.onHover) { path.addEventListener("mousemove", ev => opts.onHover(l, ev)); path.addEventListener("mouseleave", () => opts.onHover(null)); }
    if (opts.onClick) path.addEventListener("click", () => opts.onClick(l));
  }
  all.forEach((a, i) => {
    const g = el("g", { class: "axis" }, svg);
    el("line", { x1: X(i), x2: X(i), y1: m.t, y2: H - m.b, stroke: "#555" }, g);
    text(g, X(i), m.t - 14, a.key === "val_bpb" ? "val_bpb (lower better)" : a.key, { "text-anchor": "middle", class: "title" });
    const labels = scales[i].labels, step = Math.ceil(labels.length / 12);
    labels.forEach(([v, y], j) => { if (j % step === 0) text(g, X(i) + 4, y + 4, typeof v === "number" ? +v.toPrecision(4) : v); });
  });
  return svg;
}

window.golfqCharts = { scatterChart, lineChart, parallelChart, PALETTE };
})();
