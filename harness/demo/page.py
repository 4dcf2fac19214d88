"""The demo's page, one HTML file with its style and script inline and no
external asset: the live page (its figures updated by Server-Sent Events
from /events) and the offline demo.html (the last state and the audio
embedded, with a replay of the whole demo) are the same page in two modes.

The script draws four per-second plots on canvases (loss, bitrate, jitter,
E-model MOS) with the phase boundaries, the censor's rule counters, the
running phase's explanation and its sources, each phase's figures and checks,
and a player for each finished phase's received audio."""

from __future__ import annotations

import html
import json
from collections.abc import Mapping

# JSON inside <script>: a "</" would end the element.
_SCRIPT_SAFE = str.maketrans({"<": "\\u003c", ">": "\\u003e", "&": "\\u0026"})


def embed_json(value: object) -> str:
    return json.dumps(value).translate(_SCRIPT_SAFE)


def render_page(view_json: str, *, live: bool, audio: Mapping[str, str], title: str,
                timeline_png: str | None = None) -> str:
    """The page around `view_json` (a DemoView as JSON). `audio` maps each
    phase audio file name to where the page gets it (a URL of the live server
    or a data: URI); `timeline_png` an image (data: URI) shown below the plots."""
    data = view_json.translate(_SCRIPT_SAFE)
    figure = (f'<section><h2>The whole demo</h2><img class="timeline" alt="annotated '
              f'timeline of the demo" src="{html.escape(timeline_png)}"></section>'
              if timeline_png else "")
    return (_TEMPLATE
            .replace("@TITLE@", html.escape(title))
            .replace("@FIGURE@", figure)
            .replace("@DATA@", data)
            .replace("@AUDIO@", embed_json(dict(audio)))
            .replace("@LIVE@", "true" if live else "false"))


_TEMPLATE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>@TITLE@</title>
<style>
:root { --fg:#1d2330; --muted:#5d6675; --line:#d8dce3; --bg:#f6f7f9; --ok:#1a7f37;
        --bad:#c62828; --warn:#b26a00; --call:#1f5fbf; --attempt:#e07b00; }
* { box-sizing: border-box; }
body { margin:0; font:15px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif;
       color:var(--fg); background:var(--bg); }
header { padding:14px 22px; background:#1d2330; color:#fff; }
header h1 { margin:0; font-size:21px; }
header .sub { color:#c9d1de; font-size:14px; margin-top:3px; }
#status { margin-top:8px; font-weight:600; }
#status.failed, #status.stopped { color:#ffb4a8; }
#status.done { color:#9be3a9; }
main { display:grid; grid-template-columns: minmax(0,3fr) minmax(300px,2fr); gap:16px;
       padding:16px 22px; }
section { background:#fff; border:1px solid var(--line); border-radius:8px; padding:12px 16px;
          margin-bottom:16px; }
h2 { font-size:16px; margin:0 0 8px; }
#now h2 { font-size:19px; }
#now .explain { font-size:16px; }
.sources { color:var(--muted); font-size:13px; margin-top:6px; }
.plots { display:grid; grid-template-columns: 1fr 1fr; gap:10px; }
canvas { width:100%; height:190px; background:#fff; border:1px solid var(--line);
         border-radius:6px; }
.legend { font-size:13px; color:var(--muted); margin-top:6px; }
.legend span { display:inline-block; margin-right:14px; }
.swatch { display:inline-block; width:18px; height:0; border-top:3px solid; vertical-align:middle;
          margin-right:4px; }
table { border-collapse:collapse; width:100%; font-size:13px; }
th, td { text-align:left; padding:3px 6px; border-bottom:1px solid var(--line); }
td.num { text-align:right; font-variant-numeric:tabular-nums; }
.phase { border-left:5px solid var(--line); padding:6px 10px; margin:8px 0; }
.phase.running { border-color:var(--call); background:#f1f5fd; }
.phase.pass { border-color:var(--ok); }
.phase.fail { border-color:var(--bad); }
.phase h3 { margin:0; font-size:15px; }
.phase .meta { color:var(--muted); font-size:13px; }
.check.ok { color:var(--ok); } .check.bad { color:var(--bad); }
.check.rare { color:var(--warn); }
.error { color:var(--bad); font-weight:600; }
audio { width:100%; margin-top:4px; }
#events { max-height:220px; overflow:auto; font-size:13px; }
#events div.error { color:var(--bad); } #events div.ok { color:var(--ok); }
.timeline { width:100%; }
#replay { display:none; margin-top:8px; }
#replay button { font-size:14px; padding:3px 12px; }
#replay input { width:55%; vertical-align:middle; }
</style>
</head>
<body>
<header>
  <h1 id="title"></h1>
  <div class="sub" id="subtitle"></div>
  <div id="status"></div>
  <div id="replay"><button id="play" type="button">Replay</button>
    <input id="cursor" type="range" min="0" max="100" step="0.1" value="100">
    <span id="cursor-label"></span></div>
</header>
<main>
<div>
  <section id="now"></section>
  <section>
    <h2>Per second, what each side heard</h2>
    <div class="plots">
      <canvas id="plot-loss" width="560" height="190"></canvas>
      <canvas id="plot-bitrate" width="560" height="190"></canvas>
      <canvas id="plot-jitter" width="560" height="190"></canvas>
      <canvas id="plot-mos" width="560" height="190"></canvas>
    </div>
    <div class="legend" id="legend"></div>
  </section>
  @FIGURE@
</div>
<div>
  <section><h2>The censor's rules <span id="policy" class="meta"></span></h2>
    <table><thead><tr><th>rule</th><th class="num">packets</th><th class="num">per s</th>
    <th class="num">bytes</th></tr></thead><tbody id="counters"></tbody></table></section>
  <section><h2>Phases</h2><div id="phases"></div></section>
  <section><h2>Events</h2><div id="events"></div></section>
</div>
</main>
<script id="demo-data" type="application/json">@DATA@</script>
<script id="demo-audio" type="application/json">@AUDIO@</script>
<script>
"use strict";
const LIVE = @LIVE@;
let state = JSON.parse(document.getElementById("demo-data").textContent);
const AUDIO = JSON.parse(document.getElementById("demo-audio").textContent);
let cursor = null;  // seconds on the demo's clock; null: everything so far
const COLORS = ["#1f5fbf", "#e07b00", "#2e8b57", "#8e44ad", "#c0392b"];

function el(tag, attrs, text) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}
function fmt(v, digits, unit) {
  if (v === null || v === undefined) return "-";
  return Number(v).toFixed(digits) + (unit || "");
}
function upTo(t) { return cursor === null || (t !== null && t !== undefined && t <= cursor); }
function phaseStarts() {
  let t = 0;
  return state.phases.map(p => {
    const start = p.start_t !== null ? p.start_t : t;
    t = (p.end_t !== null ? p.end_t : start + p.planned_s);
    return [start, t];
  });
}
function currentPhase() {
  if (cursor === null) return state.current;
  const spans = phaseStarts();
  for (let i = spans.length - 1; i >= 0; i--) if (spans[i][0] <= cursor) return i;
  return null;
}

function drawPlot(id, title, key, yMin, yMaxFloor) {
  const canvas = document.getElementById(id);
  const ctx = canvas.getContext("2d");
  const W = canvas.width, H = canvas.height, L = 44, R = 10, T = 22, B = 22;
  ctx.clearRect(0, 0, W, H);
  const spans = phaseStarts();
  const x0 = Math.min(0, ...Object.values(state.calls).flatMap(c =>
    c.to_callee.concat(c.to_caller).map(r => r.t - 1)));
  const x1 = Math.max(1, spans.length ? spans[spans.length - 1][1] : 1);
  let yMax = yMaxFloor;
  for (const call of Object.values(state.calls))
    for (const r of call.to_callee.concat(call.to_caller))
      if (upTo(r.t) && typeof r[key] === "number") yMax = Math.max(yMax, r[key] * 1.1);
  const X = t => L + (W - L - R) * (t - x0) / (x1 - x0);
  const Y = v => H - B - (H - T - B) * (v - yMin) / (yMax - yMin);
  ctx.font = "12px system-ui, sans-serif";
  ctx.fillStyle = "#1d2330"; ctx.fillText(title, L, 14);
  ctx.strokeStyle = "#d8dce3"; ctx.fillStyle = "#5d6675"; ctx.lineWidth = 1;
  for (let i = 0; i <= 4; i++) {
    const v = yMin + (yMax - yMin) * i / 4, y = Y(v);
    ctx.beginPath(); ctx.moveTo(L, y); ctx.lineTo(W - R, y); ctx.stroke();
    ctx.fillText(v >= 100 ? v.toFixed(0) : v.toFixed(1), 4, y + 4);
  }
  spans.forEach((span, i) => {
    const x = X(span[0]);
    if (i % 2 === 1) { ctx.fillStyle = "rgba(31,95,191,0.05)";
      ctx.fillRect(x, T, X(span[1]) - x, H - T - B); }
    ctx.strokeStyle = "#5d6675"; ctx.setLineDash([3, 3]);
    ctx.beginPath(); ctx.moveTo(x, T); ctx.lineTo(x, H - B); ctx.stroke(); ctx.setLineDash([]);
    ctx.fillStyle = "#5d6675"; ctx.fillText(String(i + 1), x + 3, T + 11);
  });
  ctx.fillStyle = "#5d6675";
  ctx.fillText("s", W - R - 8, H - 6);
  for (let s = Math.ceil(x0 / 10) * 10; s <= x1; s += 10) ctx.fillText(String(s), X(s) - 6, H - 6);
  Object.values(state.calls).forEach((call, index) => {
    const color = COLORS[index % COLORS.length];
    [["to_callee", []], ["to_caller", [5, 4]]].forEach(([dir, dash]) => {
      ctx.strokeStyle = color; ctx.lineWidth = 2; ctx.setLineDash(dash);
      ctx.beginPath(); let open = false;
      for (const r of call[dir]) {
        if (!upTo(r.t) || typeof r[key] !== "number") { open = false; continue; }
        const x = X(r.t), y = Y(Math.min(r[key], yMax));
        if (open) ctx.lineTo(x, y); else ctx.moveTo(x, y);
        open = true;
      }
      ctx.stroke(); ctx.setLineDash([]);
    });
  });
  const now = cursor !== null ? cursor : state.now_t;
  if (now !== null && now !== undefined) {
    ctx.strokeStyle = "#c62828"; ctx.lineWidth = 1;
    ctx.beginPath(); ctx.moveTo(X(now), T); ctx.lineTo(X(now), H - B); ctx.stroke();
  }
}

function renderHeader() {
  document.getElementById("title").textContent = state.title;
  document.getElementById("subtitle").textContent =
    `${state.profile} call, ${state.strategy}, topology ${state.topology}` +
    (state.speed !== 1 ? `, phases ${state.speed}x shorter` : "") +
    (LIVE ? "" : " (offline replay)");
  const status = document.getElementById("status");
  const index = currentPhase();
  let text = state.message;
  if (state.status === "running" && index !== null)
    text = `Phase ${index + 1} of ${state.phases.length}: ${state.phases[index].title}`;
  if (cursor !== null) text = `t = ${cursor.toFixed(1)} s` +
    (index !== null ? ` - phase ${index + 1}: ${state.phases[index].title}` : "");
  status.textContent = text;
  status.className = cursor === null ? state.status : "";
}

function renderNow() {
  const box = document.getElementById("now");
  box.replaceChildren();
  const index = currentPhase();
  if (index === null) {
    box.append(el("h2", {}, state.title), el("p", {class: "explain"}, state.description));
    return;
  }
  const p = state.phases[index];
  box.append(el("h2", {}, `${index + 1}. ${p.title}`));
  const what = [];
  if (p.loads_policy) what.push(`the censor loads policy ${p.policy}`);
  else what.push(`the censor keeps policy ${p.policy}`);
  if (p.hang_up) what.push("the running call is hung up");
  if (p.attempt) what.push(`a new call is placed (${p.attempt})`);
  box.append(el("div", {class: "meta"}, what.join("; ")));
  if (p.change_error)
    box.append(el("div", {class: "error"}, "policy change failed: " + p.change_error));
  box.append(el("p", {class: "explain"}, p.explain));
  box.append(el("div", {class: "sources"}, "Sources: " +
    p.sources.map(s => `${s.id} - ${s.title}${s.date ? " (" + s.date + ")" : ""}`).join("; ")));
}

function counterAt() {
  let snap = null;
  for (const c of state.counters) if (upTo(c.t)) snap = c;
  return snap;
}
function renderCounters() {
  const body = document.getElementById("counters");
  body.replaceChildren();
  const snap = counterAt();
  document.getElementById("policy").textContent = snap ? `(policy ${snap.policy})` : "";
  if (!snap) return;
  const before = state.counters.filter(c => c.t < snap.t - 0.5 && c.policy === snap.policy).pop();
  const rules = Object.keys(snap.rules);
  if (!rules.length) {
    const row = el("tr");
    row.append(el("td", {colspan: "4"}, "no rule: the censor forwards everything"));
    body.append(row);
  }
  for (const rule of rules) {
    const row = el("tr");
    const rate = before ? (snap.rules[rule] - (before.rules[rule] || 0)) / (snap.t - before.t)
                        : null;
    row.append(el("td", {}, rule), el("td", {class: "num"}, String(snap.rules[rule])),
               el("td", {class: "num"}, rate === null ? "-" : rate.toFixed(1)),
               el("td", {class: "num"}, String(snap.bytes[rule])));
    body.append(row);
  }
}

function figureLine(name, f) {
  const parts = [`${name}: ${f.media === false ? "no media" : "MOS " + fmt(f.mos, 2)}`];
  if (f.media !== false) parts.push(`loss ${fmt(f.loss_pct, 1, " %")}`,
    `jitter ${fmt(f.jitter_ms, 1, " ms")}`, `${fmt(f.bitrate_kbps, 1, " kbit/s")}`);
  if (f.pesq !== null) parts.push(`PESQ ${fmt(f.pesq, 2)}`);
  if (f.failure) parts.push(`failed: ${f.failure}`);
  if (f.note) parts.push(f.note);
  return parts.join(", ");
}
function renderPhases() {
  const box = document.getElementById("phases");
  box.replaceChildren();
  const index = currentPhase();
  state.phases.forEach((p, i) => {
    const finished = p.status === "done" && upTo(p.end_t);
    let cls = "phase";
    if (i === index && !(finished && cursor === null && state.status !== "running"))
      cls += " running";
    if (finished)
      cls += p.change_error || p.error || p.checks.some(c => !c.ok) ? " fail" : " pass";
    const card = el("div", {class: cls});
    card.append(el("h3", {}, `${i + 1}. ${p.title}`));
    const span = p.start_t !== null ? ` from ${fmt(p.start_t, 1, " s")}` : "";
    card.append(el("div", {class: "meta"},
      `policy ${p.policy}${p.attempt ? ", new call: " + p.attempt : ""}, ` +
      `${fmt(p.planned_s, 0, " s")}${span}` +
      (p.change_s !== null ? `, change took ${fmt(p.change_s, 2, " s")}` : "")));
    if (p.change_error)
      card.append(el("div", {class: "error"}, "policy change failed: " + p.change_error));
    if (p.error) card.append(el("div", {class: "error"}, p.error));
    if (finished) {
      for (const [name, f] of Object.entries(p.figures)) {
        card.append(el("div", {}, figureLine(name === "call" ? "running call" : "new call", f)));
        if (f.audio && AUDIO[f.audio]) {
          const player = el("audio", {controls: "", preload: "none", src: AUDIO[f.audio],
                                      title: `${name}, phase ${i + 1}`});
          card.append(player);
        }
      }
      for (const c of p.checks)
        card.append(el("div", {class: "check " + (c.ok ? "ok" : "bad") + (c.rare ? " rare" : "")},
          `${c.ok ? "\\u2713" : "\\u2717"} ${c.subject}: expected ${c.expected}; ` +
          `observed ${c.observed}`));
    }
    box.append(card);
  });
}

function renderEvents() {
  const box = document.getElementById("events");
  box.replaceChildren();
  for (const e of state.events) {
    if (cursor !== null && (e.t === null || e.t > cursor)) continue;
    const at = e.t === null ? "" : fmt(e.t, 1, " s") + "  ";
    box.append(el("div", {class: e.level}, at + e.text));
  }
  box.scrollTop = box.scrollHeight;
}

function renderLegend() {
  const box = document.getElementById("legend");
  box.replaceChildren();
  Object.values(state.calls).forEach((call, index) => {
    const color = COLORS[index % COLORS.length];
    const item = el("span");
    const solid = el("span", {class: "swatch", style: `border-color:${color}`});
    const dashed = el("span", {class: "swatch",
                               style: `border-color:${color};border-top-style:dashed`});
    item.append(solid, `${call.label}: heard by the callee  `, dashed, "heard by the caller");
    box.append(item);
  });
  box.append(el("span", {}, "numbers: phases; red line: now"));
}

function render() {
  renderHeader(); renderNow(); renderCounters(); renderPhases(); renderEvents(); renderLegend();
  drawPlot("plot-loss", "loss (%)", "loss_pct", 0, 10);
  drawPlot("plot-bitrate", "received bitrate (kbit/s)", "bitrate_kbps", 0, 10);
  drawPlot("plot-jitter", "jitter (ms)", "jitter_ms", 0, 5);
  drawPlot("plot-mos", "MOS (E-model)", "mos", 1, 4.5);
}

function endOfDemo() {
  const spans = phaseStarts();
  return spans.length ? spans[spans.length - 1][1] : 0;
}

if (LIVE) {
  const source = new EventSource("events");
  source.onmessage = msg => { state = JSON.parse(msg.data); render(); };
  source.onerror = () => {
    if (state.status === "running" || state.status === "starting") {
      document.getElementById("status").textContent += " (connection to the demo lost)";
    }
  };
} else {
  const bar = document.getElementById("replay"), slider = document.getElementById("cursor");
  const label = document.getElementById("cursor-label"), button = document.getElementById("play");
  bar.style.display = "block";
  const end = endOfDemo();
  slider.max = String(end); slider.value = String(end);
  let timer = null;
  const show = t => { cursor = t >= end ? null : t; slider.value = String(t);
                      label.textContent = cursor === null ? "the end" : `${t.toFixed(1)} s`;
                      render(); };
  slider.oninput = () => show(Number(slider.value));
  button.onclick = () => {
    if (timer) { clearInterval(timer); timer = null; button.textContent = "Replay"; return; }
    let t = Number(slider.value) >= end ? 0 : Number(slider.value);
    button.textContent = "Pause";
    timer = setInterval(() => { t += 0.25; show(Math.min(t, end));
      if (t >= end) { clearInterval(timer); timer = null; button.textContent = "Replay"; } }, 250);
  };
}
render();
</script>
</body>
</html>
"""
