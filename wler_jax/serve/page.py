'''The page of `python -m wler_jax.serve`: one HTML document with its CSS and JavaScript inline
(no build step, nothing fetched from elsewhere: it works offline).

It uploads a chosen file, or a microphone recording (MediaRecorder, decoded by the browser and
sent as 16-bit WAV, since libsndfile cannot read the WebM/Opus that browsers record), to
`POST /api/predict`, then draws the clip tags (classes above the decision threshold), a
class x segment heat map on a canvas (click it to play from there; a playhead follows the
audio) and the event timeline as inline SVG (one `rect.event` per event of the record). Error
responses show their one-line message in `#error`.
'''

PAGE = r"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>wler_jax: what the model hears</title>
<style>
  body { font: 15px/1.4 system-ui, sans-serif; margin: 1.5em auto; max-width: 1000px;
         padding: 0 1em; color: #222; }
  h1 { font-size: 1.4em; margin: 0 0 .2em; }
  h2 { font-size: 1.05em; margin: 1.2em 0 .4em; }
  #model, #limits, .note { color: #666; font-size: .9em; }
  #controls { display: flex; gap: .8em; align-items: center; flex-wrap: wrap;
              padding: .8em; border: 1px dashed #aaa; border-radius: 6px; }
  #controls.drag { background: #eef5ff; }
  button { font: inherit; padding: .25em .8em; }
  #error { color: #fff; background: #b3261e; padding: .4em .7em; border-radius: 4px; }
  #status { min-height: 1.4em; }
  .tag { display: inline-block; margin: .15em; padding: .1em .6em; border-radius: 1em;
         background: #1f6f43; color: #fff; }
  .tag.none { background: #888; }
  table.scores { border-collapse: collapse; font-size: .9em; }
  table.scores td { padding: 1px 6px; }
  .bar { height: 10px; background: #4a78c2; }
  .bar.on { background: #1f6f43; }
  #plot { position: relative; }
  #heatmap { display: block; cursor: crosshair; }
  #playhead { position: absolute; top: 0; width: 2px; background: #19d3ff; pointer-events: none;
              display: none; }
  #hover { font-size: .85em; color: #444; min-height: 1.3em; }
  svg text { font: 11px system-ui, sans-serif; fill: #333; }
  pre { max-height: 20em; overflow: auto; background: #f5f5f5; padding: .5em; font-size: .8em; }
</style>
</head>
<body>
<h1>wler_jax: what the model hears</h1>
<p id="model">loading the model&hellip;</p>
<div id="controls">
  <label>Recording: <input type="file" id="file" accept="audio/*,.wav,.flac,.ogg,.oga,.opus,.mp3,.aif,.aiff"></label>
  <button id="record" type="button">&#9679; Record</button>
  <button id="stop" type="button" disabled>&#9632; Stop</button>
  <span id="limits"></span>
</div>
<p id="status" role="status"></p>
<p id="error" role="alert" hidden></p>
<section id="results" hidden>
  <h2>Clip tags <span class="note" id="threshold"></span></h2>
  <div id="tags"></div>
  <details><summary>all clip scores</summary><table class="scores" id="scores"></table></details>
  <h2>Segment scores <span class="note">(one column per 1.5-s segment, hop 0.37 s; click to
    play from there)</span></h2>
  <div id="plot"><canvas id="heatmap"></canvas><div id="playhead"></div></div>
  <div id="hover"></div>
  <audio id="player" controls></audio>
  <h2>Events <span class="note">(segments above threshold, merged: predict's "segments")</span></h2>
  <div id="timeline"></div>
  <details><summary>JSON (the record python -m wler_jax.predict writes)</summary>
    <p><a id="download" download="prediction.json">download</a></p><pre id="json"></pre></details>
</section>
<script>
"use strict";
const $ = id => document.getElementById(id);
const SVG = "http://www.w3.org/2000/svg";
let info = null, lastDoc = null, lastUrl = null;
const LABEL_W = 150, ROW_H = 16, AXIS_H = 22;

function showError(msg) { $("error").textContent = msg; $("error").hidden = false; $("status").textContent = ""; }
function clearError() { $("error").hidden = true; $("error").textContent = ""; }
function thresholdOf(doc, c) { return typeof doc.threshold === "number" ? doc.threshold : doc.threshold[c]; }
function fmtBytes(n) { return (n / 1048576).toFixed(n < 10485760 ? 1 : 0) + " MB"; }

async function loadInfo() {
  try {
    const r = await fetch("/api/info");
    info = await r.json();
    $("model").textContent = `${info.method.toUpperCase()} (${info.pooling} pooling, width ${info.width}), ` +
      `${info.class_names.length} classes: ${info.class_names.slice(0, 8).join(", ")}` +
      (info.class_names.length > 8 ? ", ..." : "");
    $("limits").textContent = `at most ${fmtBytes(info.limits.max_bytes)} and ${info.limits.max_seconds} s`;
  } catch (e) { showError("cannot reach the server: " + e); }
}

async function upload(blob, name) {
  clearError();
  if (info && blob.size > info.limits.max_bytes) {  // the server would refuse it (413): say so now
    showError(`${name} is ${fmtBytes(blob.size)}; this server accepts at most ` +
      `${fmtBytes(info.limits.max_bytes)} (--max_upload_mb): send a shorter or compressed (FLAC, OGG) recording`);
    $("results").hidden = true;
    return;
  }
  $("status").textContent = `scoring ${name} (${fmtBytes(blob.size)})...`;
  const started = performance.now();
  let r;
  try {
    r = await fetch("/api/predict?name=" + encodeURIComponent(name), {method: "POST",
      headers: {"Content-Type": blob.type || "application/octet-stream"}, body: blob});
  } catch (e) { showError("upload failed: " + e); return; }
  let body;
  try { body = await r.json(); } catch (e) { body = {error: `unexpected answer (${r.statusText})`}; }
  if (!r.ok) { showError(`HTTP ${r.status}: ${body.error}`); $("results").hidden = true; return; }
  $("status").textContent = `${name}: ${body.results[0].duration.toFixed(2)} s scored in ` +
    `${((performance.now() - started) / 1000).toFixed(2)} s`;
  if (lastUrl) URL.revokeObjectURL(lastUrl);
  lastUrl = URL.createObjectURL(blob);
  $("player").src = lastUrl;
  render(body);
}

function render(doc) {
  lastDoc = doc;
  const rec = doc.results[0], names = doc.class_names;
  $("results").hidden = false;
  $("threshold").textContent = typeof doc.threshold === "number"
    ? `(score > ${doc.threshold})` : "(score > each class's fitted threshold)";
  const order = names.slice().sort((a, b) => rec.scores[b] - rec.scores[a]);
  const tags = $("tags"); tags.replaceChildren();
  for (const c of order.filter(c => rec.scores[c] > thresholdOf(doc, c))) {
    const s = document.createElement("span"); s.className = "tag";
    s.textContent = `${c} ${rec.scores[c].toFixed(2)}`; tags.append(s);
  }
  if (!tags.children.length) {
    const s = document.createElement("span"); s.className = "tag none";
    s.textContent = `no class above threshold (top: ${order[0]} ${rec.scores[order[0]].toFixed(2)})`;
    tags.append(s);
  }
  const table = $("scores"); table.replaceChildren();
  for (const c of order) {
    const tr = table.insertRow(), p = rec.scores[c];
    tr.insertCell().textContent = c; tr.insertCell().textContent = p.toFixed(3);
    const bar = document.createElement("div");
    bar.className = "bar" + (p > thresholdOf(doc, c) ? " on" : "");
    bar.style.width = Math.max(1, 200 * p) + "px"; tr.insertCell().append(bar);
  }
  drawHeatmap(doc);
  drawTimeline(doc);
  $("json").textContent = JSON.stringify(doc, null, 1);
  $("download").href = "data:application/json," + encodeURIComponent(JSON.stringify(doc, null, 1));
}

// A perceptual dark-to-bright scale (magma's key colours), interpolated.
const STOPS = [[0, 0, 4], [59, 15, 112], [140, 41, 129], [222, 73, 104], [254, 159, 109], [252, 253, 191]];
function colour(p) {
  const x = Math.min(1, Math.max(0, p)) * (STOPS.length - 1), i = Math.min(STOPS.length - 2, Math.floor(x)), f = x - i;
  return `rgb(${STOPS[i].map((v, k) => Math.round(v + f * (STOPS[i + 1][k] - v))).join(",")})`;
}

function plotGeometry(doc) {
  const rec = doc.results[0];
  const width = Math.max(400, $("plot").clientWidth || 900) - 4;
  const end = Math.max(rec.duration, ...rec.segment_scores.map(s => s.end));
  return {rec, width, end, x: t => LABEL_W + (width - LABEL_W) * t / end};
}

function drawHeatmap(doc) {
  const g = plotGeometry(doc), names = doc.class_names, canvas = $("heatmap");
  canvas.width = g.width; canvas.height = names.length * ROW_H + AXIS_H;
  const ctx = canvas.getContext("2d");
  ctx.fillStyle = "#fff"; ctx.fillRect(0, 0, canvas.width, canvas.height);
  const segs = g.rec.segment_scores;
  const hop = segs.length > 1 ? segs[1].start - segs[0].start : segs[0].end - segs[0].start;
  const half = (segs[0].end - segs[0].start) / 2;
  segs.forEach((s, k) => {
    // column k: the times nearer segment k's centre than any other's (the first column reaches
    // back to 0 s, the last on to the end: the only segments covering those edges)
    const centre = s.start + half;
    const x0 = g.x(k === 0 ? 0 : centre - hop / 2);
    const x1 = g.x(k === segs.length - 1 ? g.end : centre + hop / 2);
    names.forEach((c, row) => {
      ctx.fillStyle = colour(s.scores[c]);
      ctx.fillRect(x0, row * ROW_H, Math.max(1, x1 - x0 + 0.5), ROW_H - 1);
    });
  });
  ctx.fillStyle = "#333"; ctx.font = "11px system-ui, sans-serif"; ctx.textBaseline = "middle";
  names.forEach((c, row) => ctx.fillText(c.length > 22 ? c.slice(0, 21) + "\u2026" : c, 2, row * ROW_H + ROW_H / 2));
  drawAxis(ctx, g, names.length * ROW_H);
  $("playhead").style.height = names.length * ROW_H + "px";
  canvas.onmousemove = ev => {
    const t = (ev.offsetX - LABEL_W) / (g.width - LABEL_W) * g.end, row = Math.floor(ev.offsetY / ROW_H);
    if (t < 0 || row >= names.length) { $("hover").textContent = ""; return; }
    const s = segs.filter(s => s.start <= t && t < s.end);
    const best = s.length ? Math.max(...s.map(x => x.scores[names[row]])) : NaN;
    $("hover").textContent = `${names[row]} at ${t.toFixed(2)} s: ${best.toFixed(3)} (max over the ${s.length} segments covering it)`;
  };
  canvas.onclick = ev => {
    const t = (ev.offsetX - LABEL_W) / (g.width - LABEL_W) * g.end;
    if (t >= 0 && $("player").src) { $("player").currentTime = t; $("player").play(); }
  };
}

function ticks(g) {
  const step = [0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300].find(s => g.end / s <= 12) || 600;
  const out = [];
  for (let k = 0; k * step <= g.end + 1e-9; k++) out.push(k * step);
  return out;
}

function drawAxis(ctx, g, y) {
  ctx.strokeStyle = "#333"; ctx.beginPath(); ctx.moveTo(LABEL_W, y + 1); ctx.lineTo(g.width, y + 1); ctx.stroke();
  ctx.textBaseline = "top"; ctx.textAlign = "center";
  for (const t of ticks(g)) {
    ctx.beginPath(); ctx.moveTo(g.x(t), y + 1); ctx.lineTo(g.x(t), y + 5); ctx.stroke();
    ctx.fillText(t + " s", Math.min(g.x(t), g.width - 14), y + 7);
  }
  ctx.textAlign = "start";
}

function drawTimeline(doc) {
  const g = plotGeometry(doc), events = g.rec.segments;
  const labels = doc.class_names.filter(c => events.some(e => e.label === c));
  const h = Math.max(1, labels.length) * ROW_H + AXIS_H;
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("width", g.width); svg.setAttribute("height", h); svg.id = "timeline-svg";
  const add = (tag, attrs, text) => {
    const el = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
    if (text !== undefined) el.textContent = text;
    svg.append(el); return el;
  };
  if (!labels.length) add("text", {x: LABEL_W, y: ROW_H - 3}, "no events above threshold");
  labels.forEach((c, row) => add("text", {x: 2, y: row * ROW_H + ROW_H - 4}, c));
  for (const e of events) {
    const row = labels.indexOf(e.label);
    const r = add("rect", {class: "event", x: g.x(e.start), y: row * ROW_H + 2,
      width: Math.max(2, g.x(e.end) - g.x(e.start)), height: ROW_H - 4, rx: 3,
      fill: "#1f6f43", "fill-opacity": 0.35 + 0.65 * e.score});
    const title = document.createElementNS(SVG, "title");
    title.textContent = `${e.label}: ${e.start.toFixed(2)}-${e.end.toFixed(2)} s, score ${e.score.toFixed(3)}`;
    r.append(title);
  }
  const y = Math.max(1, labels.length) * ROW_H;
  add("line", {x1: LABEL_W, x2: g.width, y1: y + 1, y2: y + 1, stroke: "#333"});
  for (const t of ticks(g)) {
    add("line", {x1: g.x(t), x2: g.x(t), y1: y + 1, y2: y + 5, stroke: "#333"});
    add("text", {x: Math.min(g.x(t), g.width - 14), y: y + 17, "text-anchor": "middle"}, t + " s");
  }
  $("timeline").replaceChildren(svg);
}

$("player").addEventListener("timeupdate", () => {
  if (!lastDoc) return;
  const g = plotGeometry(lastDoc), ph = $("playhead");
  ph.style.left = g.x(Math.min($("player").currentTime, g.end)) + "px"; ph.style.display = "block";
});

$("file").addEventListener("change", ev => { const f = ev.target.files[0]; if (f) upload(f, f.name); });
const zone = $("controls");
zone.addEventListener("dragover", ev => { ev.preventDefault(); zone.classList.add("drag"); });
zone.addEventListener("dragleave", () => zone.classList.remove("drag"));
zone.addEventListener("drop", ev => {
  ev.preventDefault(); zone.classList.remove("drag");
  const f = ev.dataTransfer.files[0]; if (f) upload(f, f.name);
});

// Microphone: MediaRecorder (WebM/Opus in Chromium) -> decodeAudioData -> mono 16-bit WAV.
let recorder = null, recTimer = null;
async function startRecording() {
  clearError();
  if (!navigator.mediaDevices || !window.MediaRecorder) {
    showError("recording needs a browser with MediaRecorder, and the page opened from localhost or over https");
    return;
  }
  let stream;
  try { stream = await navigator.mediaDevices.getUserMedia({audio: true}); }
  catch (e) { showError("no microphone: " + e.message); return; }
  const chunks = [];
  recorder = new MediaRecorder(stream);
  recorder.ondataavailable = ev => { if (ev.data.size) chunks.push(ev.data); };
  recorder.onstop = async () => {
    stream.getTracks().forEach(t => t.stop()); clearInterval(recTimer);
    $("record").disabled = false; $("stop").disabled = true;
    try { upload(await toWav(new Blob(chunks, {type: recorder.mimeType})), "microphone.wav"); }
    catch (e) { showError("the recording could not be decoded: " + e.message); }
  };
  recorder.start(250);
  const t0 = performance.now();
  $("record").disabled = true; $("stop").disabled = false;
  recTimer = setInterval(() => {
    const s = (performance.now() - t0) / 1000;
    $("status").textContent = `recording ${s.toFixed(1)} s...`;
    if (info && s >= info.limits.max_seconds - 0.5) stopRecording();
  }, 200);
}
function stopRecording() { if (recorder && recorder.state !== "inactive") recorder.stop(); }
$("record").addEventListener("click", startRecording);
$("stop").addEventListener("click", stopRecording);

async function toWav(blob) {
  const ctx = new AudioContext();
  const buf = await ctx.decodeAudioData(await blob.arrayBuffer());
  ctx.close();
  const n = buf.length, channels = buf.numberOfChannels, mono = new Float32Array(n);
  for (let c = 0; c < channels; c++) {
    const d = buf.getChannelData(c);
    for (let i = 0; i < n; i++) mono[i] += d[i] / channels;
  }
  const view = new DataView(new ArrayBuffer(44 + 2 * n)), sr = buf.sampleRate;
  const str = (o, s) => [...s].forEach((ch, i) => view.setUint8(o + i, ch.charCodeAt(0)));
  str(0, "RIFF"); view.setUint32(4, 36 + 2 * n, true); str(8, "WAVE"); str(12, "fmt ");
  view.setUint32(16, 16, true); view.setUint16(20, 1, true); view.setUint16(22, 1, true);
  view.setUint32(24, sr, true); view.setUint32(28, 2 * sr, true); view.setUint16(32, 2, true);
  view.setUint16(34, 16, true); str(36, "data"); view.setUint32(40, 2 * n, true);
  for (let i = 0; i < n; i++) view.setInt16(44 + 2 * i, Math.round(32767 * Math.max(-1, Math.min(1, mono[i]))), true);
  return new Blob([view], {type: "audio/wav"});
}

loadInfo();
</script>
</body>
</html>
"""
