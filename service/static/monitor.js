// The live monitor of one model: each version's figures over a window (GET .../monitor)
// and over time (GET .../monitor/series), drawn as SVG. main#monitor says what it
// shows in data-state: loading, ready, off (capture is off) or error.
"use strict";

const el = (id) => document.getElementById(id);
const [, , name] = location.pathname.split("/").map(decodeURIComponent);
const api = `/v1/models/${encodeURIComponent(name)}/monitor`;
const BUCKETS = { 3600: 12, 86400: 24, 604800: 28 };
const COLOURS = ["#1f6feb", "#cf222e", "#1a7f37", "#8250df", "#bc4c00", "#0a3069"];
const SVG = "http://www.w3.org/2000/svg";
let WIDTH = 600; // the charts' own width in px, so their text keeps its size on a phone
const HEIGHT = 160;
const PAD = { left: 44, right: 8, top: 8, bottom: 22 };

function setState(state) {
  el("monitor").dataset.state = state;
  el("monitor").setAttribute("aria-busy", String(state === "loading"));
}

const pct = (x, digits = 0) => (typeof x === "number" ? ktl.percent(x, digits) : "—");

function cell(text, numeric) {
  return ktl.make("td", text, numeric ? "num" : "");
}

// "drift (p 0.003)", "no drift (p 0.41)", or why there is no test.
function driftCell(v) {
  const drift = v.drift;
  const text = drift
    ? `${drift.drifted ? "drift" : "no drift"} (p ${drift.p_value.toFixed(3)}, ${drift.images} images)`
    : `— ${v.drift_unavailable || ""}`.trim();
  const made = cell(text, false);
  if (drift && drift.drifted) made.className = "drifted";
  return made;
}

function renderVersions(versions) {
  el("versions").tBodies[0].replaceChildren(...versions.map((v) => {
    const tr = document.createElement("tr");
    const th = ktl.make("th", String(v.version));
    th.scope = "row";
    const feedback = v.feedback.count
      ? `${pct(v.feedback.accuracy)} (${ktl.interval(v.feedback.interval)}, ${v.feedback.count} labels)`
      : "no feedback";
    tr.append(th, cell(String(v.requests), true), cell(pct(v.abstain_rate), true),
      cell(pct(v.estimated_accuracy.average_confidence, 1), true),
      cell(pct(v.estimated_accuracy.average_thresholded_confidence, 1), true),
      cell(feedback, true),
      cell(typeof v.class_mix_distance === "number" ? v.class_mix_distance.toFixed(2) : "—", true),
      driftCell(v));
    return tr;
  }));
}

function node(tag, attributes, text) {
  const made = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attributes)) made.setAttribute(key, String(value));
  if (text !== undefined) made.textContent = text;
  return made;
}

// Axes of a chart from 0 to top: a frame, three value ticks, and the first and last
// bucket's times under it.
function axes(svg, top, format, points) {
  const inner = HEIGHT - PAD.top - PAD.bottom;
  svg.setAttribute("viewBox", `0 0 ${WIDTH} ${HEIGHT}`);
  svg.replaceChildren(node("rect", { x: PAD.left, y: PAD.top, width: WIDTH - PAD.left - PAD.right, height: inner, class: "frame" }));
  for (const share of [0, 0.5, 1]) {
    const y = PAD.top + inner * (1 - share);
    svg.append(node("line", { x1: PAD.left, x2: WIDTH - PAD.right, y1: y, y2: y, class: "grid" }),
      node("text", { x: PAD.left - 4, y: y + 4, class: "tick", "text-anchor": "end" }, format(top * share)));
  }
  const time = (iso) => new Date(iso).toLocaleString(undefined, { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" });
  if (points.length) {
    svg.append(node("text", { x: PAD.left, y: HEIGHT - 6, class: "tick" }, time(points[0].start)),
      node("text", { x: WIDTH - PAD.right, y: HEIGHT - 6, class: "tick", "text-anchor": "end" }, time(points[points.length - 1].end)));
  }
}

function place(points, index, value, top) {
  const inner = HEIGHT - PAD.top - PAD.bottom;
  const step = (WIDTH - PAD.left - PAD.right) / points.length;
  return [PAD.left + step * (index + 0.5), PAD.top + inner * (1 - value / (top || 1))];
}

// A line through a series' values (gaps where a bucket has none) with a mark on each
// value, so that a bucket alone still shows, in a version's colour.
function line(svg, points, values, top, colour, dashed = false) {
  let path = "";
  let open = false;
  values.forEach((value, i) => {
    if (typeof value !== "number") { open = false; return; }
    const [x, y] = place(points, i, value, top);
    path += `${open ? "L" : "M"}${x.toFixed(1)},${y.toFixed(1)} `;
    open = true;
    svg.append(node("circle", { cx: x, cy: y, r: 2.5, fill: colour, class: "mark" }));
  });
  if (path) svg.append(node("path", { d: path, stroke: colour, class: dashed ? "series dashed" : "series" }));
}

// Feedback accuracy: hollow rings, apart from the estimates' filled marks.
function dots(svg, points, values, top, colour) {
  values.forEach((value, i) => {
    if (typeof value !== "number") return;
    const [x, y] = place(points, i, value, top);
    svg.append(node("circle", { cx: x, cy: y, r: 5, stroke: colour, class: "dot" }));
  });
}

// Requests: a bar per bucket, the versions side by side within it.
function bars(svg, points, versions, top) {
  const inner = HEIGHT - PAD.top - PAD.bottom;
  const step = (WIDTH - PAD.left - PAD.right) / Math.max(1, points.length);
  const width = Math.max(1, (step * 0.8) / Math.max(1, versions.length));
  versions.forEach((v, k) => {
    v.points.forEach((p, i) => {
      if (!p.requests) return;
      const height = inner * (p.requests / top);
      svg.append(node("rect", {
        x: PAD.left + step * i + step * 0.1 + width * k, y: PAD.top + inner - height, width, height,
        fill: COLOURS[k % COLOURS.length], class: "bar-mark",
      }));
    });
  });
}

let drawn = null;

function renderCharts(series) {
  drawn = series;
  WIDTH = Math.max(280, Math.round(el("requests-chart").getBoundingClientRect().width) || 600);
  const versions = series.versions;
  const points = versions.length ? versions[0].points : [];
  el("legend").replaceChildren(...versions.map((v, i) => {
    const item = ktl.make("li", `version ${v.version}`);
    item.dataset.colour = String(i % COLOURS.length);
    return item;
  }));
  const most = Math.max(1, ...versions.flatMap((v) => v.points.map((p) => p.requests)));
  axes(el("requests-chart"), most, (x) => String(Math.round(x)), points);
  axes(el("accuracy-chart"), 1, (x) => pct(x), points);
  axes(el("abstain-chart"), 1, (x) => pct(x), points);
  bars(el("requests-chart"), points, versions, most);
  versions.forEach((v, i) => {
    const colour = COLOURS[i % COLOURS.length];
    line(el("accuracy-chart"), v.points, v.points.map((p) => p.average_confidence), 1, colour);
    line(el("accuracy-chart"), v.points, v.points.map((p) => p.average_thresholded_confidence), 1, colour, true);
    dots(el("accuracy-chart"), v.points, v.points.map((p) => p.feedback_accuracy), 1, colour);
    line(el("abstain-chart"), v.points, v.points.map((p) => p.abstain_rate), 1, colour);
  });
}

let current = null;

async function load() {
  current?.abort();
  const controller = new AbortController();
  current = controller;
  setState("loading");
  el("loading").hidden = false;
  el("error").hidden = true;
  const span = el("window").value;
  const query = new URLSearchParams({ window: span, buckets: BUCKETS[span] });
  try {
    const [summary, series] = await Promise.all([
      ktl.json(`${api}?window=${span}`, { signal: controller.signal }),
      ktl.json(`${api}/series?${query}`, { signal: controller.signal }),
    ]);
    renderVersions(summary.versions);
    el("versions-section").hidden = false;
    el("charts-section").hidden = false;
    renderCharts(series);
    el("loading").textContent = summary.versions.length
      ? `From ${new Date(summary.since).toLocaleString()} to ${new Date(summary.until).toLocaleString()}.`
      : "No prediction in this window yet.";
    setState("ready");
  } catch (error) {
    if (ktl.aborted(error)) return;
    el("loading").hidden = true;
    if (error.code === "capture_off") {
      el("off-section").hidden = false;
      setState("off");
      return;
    }
    el("error").textContent = error.message;
    el("error").hidden = false;
    setState("error");
  }
}

el("title").textContent = `Live monitor: ${name}`;
el("try-link").href = "/?" + new URLSearchParams({ model: name });
el("review-link").href = "/review?" + new URLSearchParams({ model: name });
el("api-key").value = ktl.key();
el("api-key").addEventListener("change", () => {
  sessionStorage.setItem("ktl-api-key", el("api-key").value);
  load();
});
el("window").addEventListener("change", load);
// Drawn again at the new width when the screen turns or the window is resized.
new ResizeObserver(() => {
  if (drawn && Math.round(el("requests-chart").getBoundingClientRect().width) !== WIDTH) renderCharts(drawn);
}).observe(el("charts-section"));
load();
