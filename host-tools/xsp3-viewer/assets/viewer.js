// The live page: asks /api/live 10 times a second, plots the newest frame with uPlot and fills
// the tables. The frame is only sent when it changed (`since`), so an idle page is cheap, and
// table cells are only written when their text changes: rebuilding the tables on every update
// cost a headless Chromium more than plotting the spectra (docs/viewer.md, "Benchmark").
"use strict";

const PERIOD_MS = 100;
const LOSS_COUNTERS = ["frames_lost", "sdk_overruns", "stream_drops", "ring_full_events"];
const COUNTERS = [
  ["state", "state"], ["frames_requested", "frames requested"],
  ["frames_acquired", "frames acquired"], ["frames_written", "frames written"],
  ["frames_flushed", "frames flushed"], ["frames_sent", "frames sent"],
  ["frames_lost", "frames lost (SDK)"], ["sdk_overruns", "SDK overruns"],
  ["stream_drops", "stream drops"], ["ring_fill", "ring fill"],
  ["ring_high_water", "ring high water"], ["ring_full_events", "ring full events"],
  ["rate_hz", "rate (frames/s)"], ["mb_per_s", "MB/s"], ["elapsed_s", "elapsed (s)"],
  ["monitor_requests", "monitor requests"], ["last_error", "last error"],
];
const COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2",
  "#7f7f7f", "#bcbd22", "#17becf"];

const viewer = {
  version: null,     // frame version the page has
  frame: null,       // {number, shape, exptime, received_ms, spectra}
  meta: null,        // everything else from /api/live
  plot: null,
  plotKey: null,     // channels/bins/log the plot was built for
  updates: 0,        // successful /api/live answers
  rate: 0,           // of those, per second (last second)
  errors: 0,
  binsPerPoint: 1,  // detector bins behind each plotted point
};
window.xsp3Viewer = viewer;

const $ = (id) => document.getElementById(id);

function selectedChannel() {
  const v = $("channel").value;
  return v === "all" ? null : Number(v);
}

// Window limits per channel: the status's own (per channel) or the viewer's --window (all).
function windowsOf(channel) {
  const status = viewer.meta && viewer.meta.status;
  if (status && Array.isArray(status.windows) && status.windows[channel]) {
    const [l0, h0, l1, h1] = status.windows[channel];
    return [[0, l0, h0], [1, l1, h1]];
  }
  return (viewer.meta && viewer.meta.windows) || [];
}

viewer.windowsDrawn = function () {
  if (!viewer.frame || !$("windows").checked) return [];
  const sel = selectedChannel();
  const channels = sel === null ? [...Array(viewer.frame.shape[0]).keys()] : [sel];
  return channels.flatMap((c) => windowsOf(c).map(([win, lo, hi]) => ({channel: c, win, lo, hi})));
};

function drawWindows(u) {
  const ctx = u.ctx;
  ctx.save();
  for (const w of viewer.windowsDrawn()) {
    ctx.strokeStyle = w.win === 0 ? "rgba(0,120,0,0.8)" : "rgba(200,100,0,0.8)";
    ctx.setLineDash([6, 4]);
    ctx.lineWidth = 1.5;
    for (const bin of [w.lo, w.hi]) {
      const x = Math.round(u.valToPos(bin, "x", true));
      ctx.beginPath();
      ctx.moveTo(x, u.bbox.top);
      ctx.lineTo(x, u.bbox.top + u.bbox.height);
      ctx.stroke();
    }
  }
  ctx.restore();
}

// Bins per plotted point: at most one point per pixel column of the plot. Drawing all 4 x 4096
// bins on every update doubled the page's CPU time for nothing the screen can show.
function binsPerPoint(nBins) {
  return Math.max(1, Math.ceil(nBins / plotWidth()));
}

function plotWidth() {
  return Math.max(600, window.innerWidth - 40);
}

// [x, ch0, ch1, ...]: point i is bins [g*i, g*i + g) (x = g*i), the largest count among them, so
// peaks keep their height; the tables use every bin.
function plotData() {
  const f = viewer.frame;
  const log = $("log").checked;
  const g = binsPerPoint(f.shape[1]);
  viewer.binsPerPoint = g;
  const n = Math.ceil(f.shape[1] / g);
  const x = Array.from({length: n}, (_, i) => i * g);
  const ys = f.spectra.map((s) => {
    const y = new Array(n);
    for (let i = 0; i < n; i++) {
      let top = s[i * g];
      for (let b = i * g + 1; b < Math.min((i + 1) * g, s.length); b++) top = Math.max(top, s[b]);
      // A log axis cannot show 0: those points are left out of the line.
      y[i] = log && top <= 0 ? null : top;
    }
    return y;
  });
  return [x, ...ys];
}

// Makes the plot for the frame's shape and the scale, with the frame's data; false if the
// plot already fitted.
function buildPlot() {
  const f = viewer.frame;
  const log = $("log").checked;
  const key = `${f.shape[0]}x${f.shape[1]}:${log}`;
  if (viewer.plot && viewer.plotKey === key) return false;
  if (viewer.plot) viewer.plot.destroy();
  const data = plotData();
  const series = [{label: "bin"}];
  for (let c = 0; c < f.shape[0]; c++) {
    series.push({label: `ch ${c}`, stroke: COLOURS[c % COLOURS.length], width: 1,
      points: {show: false}});
  }
  const opts = {
    width: plotWidth(), height: 420,
    scales: {x: {time: false}, y: log ? {distr: 3} : {}},
    axes: [{label: viewer.binsPerPoint > 1 ? `bin (max of ${viewer.binsPerPoint} bins per point)`
      : "bin"}, {label: "counts"}],
    series,
    hooks: {draw: [drawWindows]},
  };
  viewer.plot = new uPlot(opts, data, $("plot"));
  viewer.plotKey = key;
  const select = $("channel");
  const keep = select.value;
  select.length = 1;
  for (let c = 0; c < f.shape[0]; c++) select.add(new Option(`ch ${c}`, String(c)));
  select.value = keep !== "all" && Number(keep) < f.shape[0] ? keep : "all";
  showSelected();
  return true;
}

function showSelected() {
  if (!viewer.plot) return;
  const sel = selectedChannel();
  for (let c = 0; c < viewer.frame.shape[0]; c++) {
    viewer.plot.setSeries(c + 1, {show: sel === null || sel === c});
  }
}

// What the plot shows now: [bins, ch0, ch1, ...] as uPlot holds it.
viewer.plotted = function () {
  return viewer.plot ? viewer.plot.data : null;
};

function sumRange(s, lo, hi) {
  let total = 0;
  for (let b = lo; b <= hi && b < s.length; b++) total += s[b];
  return total;
}

// Writes `text` into `cell` unless it is already there (no layout work for unchanged values).
function setText(cell, text) {
  if (cell.textContent !== text) cell.textContent = text;
}

// The table body's rows, `n` of them with `cells` cells each, made only when the count changes.
function rows(body, n, cells) {
  if (body.rows.length !== n || (n > 0 && body.rows[0].cells.length !== cells)) {
    body.textContent = "";
    for (let r = 0; r < n; r++) {
      const row = body.insertRow();
      for (let c = 0; c < cells; c++) row.insertCell();
    }
  }
  return body.rows;
}

function fillChannels() {
  const f = viewer.frame;
  const tableRows = rows($("channels").tBodies[0], f.spectra.length, 6);
  f.spectra.forEach((s, c) => {
    const counts = s.reduce((a, b) => a + b, 0);
    const wins = windowsOf(c);
    const win = (n) => {
      const w = wins.find(([k]) => k === n);
      return w ? String(sumRange(s, w[1], w[2])) : "-";
    };
    const rate = f.exptime > 0 ? (counts / f.exptime).toExponential(3) : "-";
    // xsp3-acquire's monitor sends the frame's correction (null: saturated); MAX IV's does not.
    const dtcs = f.dead_time_correction;
    const dtc = !dtcs ? "n/a" : dtcs[c] === null ? "saturated" : dtcs[c].toFixed(4);
    const cells = [String(c), String(counts), rate, win(0), win(1), dtc];
    const row = tableRows[c];
    cells.forEach((text, i) => setText(row.cells[i], text));
    row.dataset.channel = String(c);
  });
}

// The software ROIs' values of the frame: one row per ROI, counts per channel.
function fillRois() {
  const rois = viewer.frame.rois || [];
  $("rois-panel").hidden = rois.length === 0;
  const tableRows = rows($("rois").tBodies[0], rois.length, 2);
  rois.forEach((roi, r) => {
    setText(tableRows[r].cells[0], roi.name);
    setText(tableRows[r].cells[1], roi.counts.join(" "));
  });
}

function fillCounters() {
  const m = viewer.meta;
  const status = m.status || {};
  const shown = COUNTERS.filter(([key]) => key in status);
  const body = $("counters").tBodies[0];
  const tableRows = rows(body, shown.length, 2);
  shown.forEach(([key, label], r) => {
    const row = tableRows[r];
    row.id = `counter-${key}`;
    setText(row.cells[0], label);
    row.cells[0].className = "name";
    let value = status[key];
    if (key === "ring_fill" && "ring_slots" in status) value = `${value} / ${status.ring_slots}`;
    if (typeof value === "number" && !Number.isInteger(value)) value = value.toFixed(2);
    const cell = row.cells[1];
    setText(cell, String(value));
    cell.dataset.value = String(status[key]);
    cell.className = LOSS_COUNTERS.includes(key) && status[key] > 0 ? "loss-nonzero" : "";
  });
  let state = status.state || (m.monitor.ok ? "monitor answering" : "no acquisition");
  if (!m.status && !m.status_source) state = m.monitor.ok ? "running" : "idle";
  if (m.status_error) state = "absent";
  const el = $("state");
  setText(el, state);
  el.className = state;
  const notes = [`monitor ${m.monitor.endpoint}: ${m.monitor.ok ? "answering" : m.monitor.error || "not asked yet"}`];
  if (m.status_source) notes.push(`status (${m.status_source}): ${m.status_error || "ok"}`);
  // Between acquisitions the monitor either keeps answering with the last frame (serve) or is
  // gone (run): either way the page shows the last frame it got, and says so.
  const ended = status.state && status.state !== "running";
  if ((!m.monitor.ok || ended) && viewer.frame) notes.push(`showing the last frame, ${viewer.frame.number}`);
  setText($("health"), notes.join(" | "));
}

function apply(answer) {
  viewer.meta = answer.meta;
  if (answer.frame) {
    viewer.version = answer.frame.version;
    viewer.frame = answer.frame.frame;
    if (!buildPlot()) viewer.plot.setData(plotData());
    fillChannels();
    fillRois();
    $("frame-number").textContent = String(viewer.frame.number);
  }
  fillCounters();
}

let windowStart = performance.now();
let windowUpdates = 0;

async function tick() {
  const started = performance.now();
  try {
    const since = viewer.version === null ? "" : `?since=${viewer.version}`;
    const response = await fetch(`/api/live${since}`, {cache: "no-store"});
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    apply(await response.json());
    viewer.updates += 1;
    windowUpdates += 1;
  } catch (e) {
    viewer.errors += 1;
    $("state").textContent = "viewer unreachable";
    $("state").className = "absent";
  }
  const now = performance.now();
  if (now - windowStart >= 1000) {
    viewer.rate = (windowUpdates * 1000) / (now - windowStart);
    $("update-rate").textContent = `${viewer.rate.toFixed(1)} updates/s`;
    windowStart = now;
    windowUpdates = 0;
  }
  setTimeout(tick, Math.max(0, PERIOD_MS - (now - started)));
}

$("channel").addEventListener("change", showSelected);
$("windows").addEventListener("change", () => viewer.plot && viewer.plot.redraw(false));
$("log").addEventListener("change", () => {
  if (!viewer.frame) return;
  buildPlot();
});
tick();
