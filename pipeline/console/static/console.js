// citywatch operations console: live incidents over Server-Sent Events, camera map, acknowledgements.
// No framework, no build step; every value from the server goes into the DOM as text (never HTML).
"use strict";

const SEVERITY_RANK = { minor: 1, moderate: 2, severe: 3, extreme: 4 };
const KNOWN_TYPES = ["fire", "smoke", "flood", "congestion", "camera_offline", "camera_obstructed"];
// 16x16 icons drawn as SVG paths (no icon font or emoji font needed on the operator's machine)
const ICONS = {
  fire: { d: "M8 1c1 3 4.5 4.5 4.5 8.5a4.5 4.5 0 0 1-9 0c0-2.2 1.2-3.6 2.3-4.6.1 2 1 3.1 2.2 3.4C7.4 6 7 4 8 1z" },
  smoke: { d: "M4.5 13a3.5 3.5 0 0 1-.4-7A4.5 4.5 0 0 1 12.6 6 3.5 3.5 0 0 1 12 13z" },
  flood: { d: "M1 5.5q1.75-2 3.5 0t3.5 0 3.5 0 3.5 0M1 9.5q1.75-2 3.5 0t3.5 0 3.5 0 3.5 0M1 13.5q1.75-2 3.5 0t3.5 0 3.5 0 3.5 0", stroke: true },
  congestion: { d: "M2 9.5 3.6 5h8.8L14 9.5V13h-2v1.5h-2V13H6v1.5H4V13H2zM4 9.5h8l-1-3H5z" },
  camera_offline: { d: "M1.5 5h3l1.2-2h4.6l1.2 2h3v8h-13zM8 11.2a2.6 2.6 0 1 0 0-5.2 2.6 2.6 0 0 0 0 5.2z" },
  camera_obstructed: { d: "M8 1.5a6.5 6.5 0 1 1 0 13 6.5 6.5 0 0 1 0-13zM3.8 4.9l7.3 7.3M5 3.6l7.4 7.4", stroke: true },
};
const state = { incidents: new Map(), cameras: new Map(), meta: {}, loaded: false, sound: false };
const $ = (id) => document.getElementById(id);

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (v !== null && v !== undefined) node.setAttribute(k, v);
  }
  for (const c of children) if (c !== null && c !== undefined) node.append(c);
  return node;
}

function svg(tag, attrs = {}) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  return node;
}

function fmtTime(iso) {
  if (!iso) return "–";
  const d = new Date(iso);
  return isNaN(d) ? String(iso) : d.toLocaleString(undefined, { month: "short", day: "2-digit",
    hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false });
}

function fmtNumber(v) {
  if (typeof v !== "number") return String(v);
  return Math.abs(v) >= 100 ? v.toFixed(0) : Math.abs(v) >= 10 ? v.toFixed(1) : v.toFixed(2);
}

function label(type) { return (type || "?").replace(/_/g, " "); }

// ---- live feed ------------------------------------------------------------------------------
let source = null;
function connect() {
  if (source) source.close();
  setPill("link-status", "connecting…", "pending");
  source = new EventSource("/api/events");
  source.addEventListener("open", () => setPill("link-status", "live", "ok"));
  source.addEventListener("error", () => {
    setPill("link-status", "reconnecting…", "bad");
    if (source.readyState === EventSource.CLOSED) setTimeout(connect, 3000); // e.g. server restarted with 5xx
  });
  source.addEventListener("snapshot", (e) => applySnapshot(JSON.parse(e.data)));
  source.addEventListener("incident", (e) => applyIncident(JSON.parse(e.data).incident, true));
  source.addEventListener("camera", (e) => { const c = JSON.parse(e.data).camera; state.cameras.set(c.id, c); renderCameras(); });
  source.addEventListener("broker", (e) => setBroker(JSON.parse(e.data).connected));
}

function setPill(id, text, cls) { const p = $(id); p.textContent = text; p.className = "pill " + cls; }
function setBroker(ok) { setPill("broker-status", ok ? "broker connected" : "broker unreachable", ok ? "ok" : "bad"); }

function applySnapshot(snap) {
  state.meta = snap.meta || {};
  const fresh = new Map();
  for (const inc of snap.incidents) fresh.set(inc.incident_id, inc);
  if (state.loaded) for (const inc of fresh.values()) cueIfNew(state.incidents.get(inc.incident_id), inc);
  state.incidents = fresh;
  state.cameras = new Map(snap.cameras.map((c) => [c.id, c]));
  state.loaded = true;
  setBroker(!!state.meta.broker_connected);
  renderAll();
}

function applyIncident(inc, live) {
  const before = state.incidents.get(inc.incident_id);
  state.incidents.set(inc.incident_id, inc);
  if (live) cueIfNew(before, inc);
  renderIncidents();
  renderMap();
}

// ---- cue on a new severe incident ----------------------------------------------------------
function cueIfNew(before, inc) {
  const rank = SEVERITY_RANK[inc.severity] || 0;
  const wasRank = before ? SEVERITY_RANK[before.severity] || 0 : 0;
  if (rank >= 3 && wasRank < 3 && inc.state !== "end" && !inc.ack) {
    flash();
    if (state.sound && !inc.test) beep(rank === 4 ? 3 : 2);
    state.fresh = inc.incident_id;
  }
}

function flash() {
  const f = $("flash");
  f.classList.remove("on"); void f.offsetWidth; f.classList.add("on");
}

let audio = null;
function beep(times) {
  audio = audio || new AudioContext();
  for (let i = 0; i < times; i++) {
    const osc = audio.createOscillator(), gain = audio.createGain(), t = audio.currentTime + i * 0.35;
    osc.type = "square"; osc.frequency.value = 880;
    gain.gain.setValueAtTime(0.0001, t); gain.gain.exponentialRampToValueAtTime(0.2, t + 0.02);
    gain.gain.exponentialRampToValueAtTime(0.0001, t + 0.25);
    osc.connect(gain).connect(audio.destination); osc.start(t); osc.stop(t + 0.3);
  }
}

// ---- incidents ----------------------------------------------------------------------------
function filtered() {
  const type = $("filter-type").value, district = $("filter-district").value;
  const openOnly = $("filter-open").checked, showTest = $("filter-test").checked;
  return [...state.incidents.values()]
    .filter((i) => (!type || i.type === type) && (!district || i.district === district)
      && (!openOnly || i.state !== "end") && (showTest || !i.test))
    .sort((a, b) => (b.started_at || "").localeCompare(a.started_at || ""));
}

function renderIncidents() {
  refreshFilterOptions();
  const list = $("incident-list");
  const items = filtered();
  list.replaceChildren(...items.map(incidentCard));
  $("empty-note").hidden = items.length > 0;
  const open = [...state.incidents.values()].filter((i) => i.state !== "end" && !i.test);
  $("count-active").textContent = `${open.length} open`;
  const unacked = open.filter((i) => !i.ack).length;
  $("count-unacked").textContent = `${unacked} unacknowledged`;
  $("count-unacked").classList.toggle("zero", unacked === 0);
}

function incidentCard(inc) {
  const ended = inc.state === "end";
  const card = el("article", { class: `incident sev-${inc.severity || "minor"}${ended ? " ended" : ""}${inc.ack ? " acked" : ""}${state.fresh === inc.incident_id ? " fresh" : ""}`,
    "data-incident": inc.incident_id });
  const badges = el("div", { class: "badges" },
    el("span", { class: `badge sev ${inc.severity}`, text: inc.severity || "?" }),
    el("span", { class: `badge state ${ended ? "ended" : "open"}`, text: ended ? "ended" : inc.state === "start" ? "new" : "ongoing" }),
    inc.test ? el("span", { class: "badge test", text: "TEST" }) : null);
  const head = el("header", {},
    el("h3", {}, typeIcon(inc.type), label(inc.type)), badges);
  const where = el("p", { class: "where" },
    el("strong", { text: inc.camera_name || inc.camera_id }),
    el("span", { text: inc.district ? ` · ${inc.district}` : "" }),
    el("span", { class: "muted", text: ` · ${inc.camera_id}` }));
  const when = el("p", { class: "when muted", text: `started ${fmtTime(inc.started_at)}` +
    (ended ? ` · ended ${fmtTime(inc.ended_at)}` : ` · last frame ${fmtTime(inc.frame_time)}`) +
    (inc.peak_severity && inc.peak_severity !== inc.severity ? ` · peak ${inc.peak_severity}` : "") });
  const snap = inc.snapshot_url
    ? el("a", { class: "snapshot", href: inc.snapshot_url, target: "_blank", rel: "noopener noreferrer" },
        el("img", { src: inc.snapshot_url, alt: `annotated snapshot of ${label(inc.type)} at ${inc.camera_name}`, loading: "lazy" }))
    : el("div", { class: "snapshot none", text: "no snapshot" });
  const rows = Object.entries(inc.measurements || {}).map(([k, v]) =>
    el("tr", {}, el("th", { text: label(k) }), el("td", { text: fmtNumber(v) })));
  if (inc.level) rows.unshift(el("tr", {}, el("th", { text: "level" }), el("td", { text: inc.level })));
  if (typeof inc.confidence === "number") rows.push(el("tr", {}, el("th", { text: "confidence" }), el("td", { text: `${Math.round(inc.confidence * 100)} %` })));
  const measures = el("table", { class: "measures" }, el("tbody", {}, ...rows));
  const timeline = el("ol", { class: "timeline" }, ...inc.messages.map((m) =>
    el("li", { class: `st-${m.state}`, title: `message #${m.seq}` },
      el("span", { class: "seq", text: `#${m.seq}` }), ` ${m.state} · ${m.severity || "?"} · ${fmtTime(m.time)}`)));
  const ack = inc.ack
    ? el("p", { class: "ack-done", text: `✔ acknowledged by ${inc.ack.operator} at ${fmtTime(inc.ack.time)}` })
    : el("button", { class: "ack", type: "button", onclick: (e) => acknowledge(inc, e.currentTarget) }, "Acknowledge");
  const body = el("div", { class: "body" }, snap,
    el("div", { class: "details" }, measures, timeline));
  card.append(head, where, when, body, el("footer", {}, ack, el("span", { class: "iid muted", text: inc.incident_id })));
  return card;
}

async function acknowledge(inc, button) {
  let operator = $("operator").value.trim();
  if (!operator) { $("operator").focus(); $("operator").classList.add("need"); return; }
  localStorage.setItem("citywatch.operator", operator);
  button.disabled = true; button.textContent = "Sending…";
  try {
    const r = await fetch(`/api/incidents/${encodeURIComponent(inc.incident_id)}/ack`, {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ operator }) });
    if (!r.ok) throw new Error((await r.json().catch(() => ({}))).error || `HTTP ${r.status}`);
    button.textContent = "Sent, waiting for broker…"; // the ack topic round trip marks it acknowledged
  } catch (err) {
    button.disabled = false; button.textContent = "Acknowledge";
    button.after(el("span", { class: "error", text: ` ${err.message}` }));
  }
}

function refreshFilterOptions() {
  const types = new Set(KNOWN_TYPES), districts = new Set();
  for (const i of state.incidents.values()) { types.add(i.type); if (i.district) districts.add(i.district); }
  for (const c of state.cameras.values()) if (c.district) districts.add(c.district);
  fillSelect($("filter-type"), [...types].sort(), "all types", label);
  fillSelect($("filter-district"), [...districts].sort(), "all districts", (d) => d);
}

function fillSelect(select, values, allText, show) {
  const current = select.value;
  const key = values.join("|");
  if (select.dataset.key === key) return;
  select.dataset.key = key;
  select.replaceChildren(el("option", { value: "", text: allText }), ...values.map((v) => el("option", { value: v, text: show(v) })));
  select.value = values.includes(current) ? current : "";
}

// ---- cameras: health table and map --------------------------------------------------------
function health(cam) {
  const s = cam.status;
  if (!s || !s.state) return { state: "unknown", note: "no status report yet" };
  const age = (Date.now() - Date.parse(s.checked_at)) / 1000;
  if (isFinite(age) && age > (state.meta.offline_after_s || 120)) return { state: "offline", note: `no status report for ${Math.round(age)} s` };
  return { state: s.state, note: `silent ${fmtNumber(s.silent_s ?? 0)} s` };
}

function renderCameras() {
  const rows = [...state.cameras.values()].sort((a, b) => a.id.localeCompare(b.id)).map((c) => {
    const h = health(c);
    return el("tr", { "data-camera": c.id },
      el("td", {}, el("strong", { text: c.name }), el("div", { class: "muted", text: c.id })),
      el("td", { text: c.district || "–" }),
      el("td", { title: h.note }, el("i", { class: `dot ${h.state}` }), ` ${h.state === "unknown" ? "no report" : h.state}`),
      el("td", { text: fmtTime(c.status && c.status.last_frame_time) }),
      el("td", { text: c.status && c.status.fps ? fmtNumber(c.status.fps) : "–" }));
  });
  $("camera-rows").replaceChildren(...rows);
  renderMap();
}

const W = 600, H = 380, PAD = 48;
function mercator(lat, lon) {
  const s = Math.sin((Math.max(-85, Math.min(85, lat)) * Math.PI) / 180);
  return [(lon + 180) / 360, 0.5 - Math.log((1 + s) / (1 - s)) / (4 * Math.PI)];
}

function renderMap() {
  const map = $("map");
  const cams = [...state.cameras.values()].filter((c) => typeof c.lat === "number" && typeof c.lon === "number");
  map.replaceChildren();
  if (!cams.length) { map.append(svgText(W / 2, H / 2, "no camera positions in the registry", "map-note")); return; }
  const pts = cams.map((c) => mercator(c.lat, c.lon));
  const xs = pts.map((p) => p[0]), ys = pts.map((p) => p[1]);
  const span = Math.max(Math.max(...xs) - Math.min(...xs), Math.max(...ys) - Math.min(...ys), 1e-5);
  const scale = Math.min((W - 2 * PAD) / span, (H - 2 * PAD) / span);
  const cx = (Math.max(...xs) + Math.min(...xs)) / 2, cy = (Math.max(...ys) + Math.min(...ys)) / 2;
  const project = (p) => [W / 2 + (p[0] - cx) * scale, H / 2 + (p[1] - cy) * scale];
  map.append(svg("rect", { x: 0, y: 0, width: W, height: H, class: "map-bg" }));
  if (state.meta.tile_url) drawTiles(map, scale, cx, cy);
  else for (let g = 0; g <= W; g += 40) { map.append(svg("line", { x1: g, y1: 0, x2: g, y2: H, class: "grid" })); if (g <= H) map.append(svg("line", { x1: 0, y1: g, x2: W, y2: g, class: "grid" })); }
  const byDistrict = new Map();
  cams.forEach((c, i) => { if (c.district) (byDistrict.get(c.district) || byDistrict.set(c.district, []).get(c.district)).push(project(pts[i])); });
  for (const [name, ps] of byDistrict) {
    const mx = ps.reduce((s, p) => s + p[0], 0) / ps.length, my = ps.reduce((s, p) => s + p[1], 0) / ps.length;
    map.append(svgText(mx, my - 26, name.toUpperCase(), "district-label"));
  }
  const open = new Map();
  for (const i of state.incidents.values()) if (i.state !== "end") {
    const r = SEVERITY_RANK[i.severity] || 0;
    if (r > (open.get(i.camera_id) || 0)) open.set(i.camera_id, r);
  }
  cams.forEach((c, i) => {
    const [x, y] = project(pts[i]);
    const g = svg("g", { class: "cam", "data-camera": c.id });
    const sev = open.get(c.id);
    if (sev) g.append(svg("circle", { cx: x, cy: y, r: 16, class: `halo sev-${Object.keys(SEVERITY_RANK)[sev - 1]}` }));
    g.append(svg("circle", { cx: x, cy: y, r: 7, class: `cam-dot ${health(c).state}` }));
    g.append(svgText(x + 11, y + 4, c.name, "cam-label"));
    const title = svg("title"); title.textContent = `${c.name} (${c.id}) · ${health(c).state}${sev ? " · open incident" : ""}`;
    g.append(title);
    g.addEventListener("click", () => { if (c.district) { $("filter-district").value = c.district; renderIncidents(); } });
    map.append(g);
  });
}

function typeIcon(type) {
  const icon = ICONS[type] || { d: "M8 2a6 6 0 1 1 0 12A6 6 0 0 1 8 2z" };
  const box = svg("svg", { viewBox: "0 0 16 16", class: "type-icon", "aria-hidden": "true" });
  box.append(svg("path", icon.stroke ? { d: icon.d, fill: "none", stroke: "currentColor", "stroke-width": 1.6,
    "stroke-linecap": "round" } : { d: icon.d, fill: "currentColor", "fill-rule": "evenodd" }));
  return box;
}

function svgText(x, y, text, cls) { const t = svg("text", { x, y, class: cls }); t.textContent = text; return t; }

function drawTiles(map, scale, cx, cy) {
  const z = Math.max(0, Math.min(19, Math.round(Math.log2(scale / 256))));
  const n = 2 ** z, tilePx = scale / n;
  const x0 = Math.floor((cx - W / 2 / scale) * n), x1 = Math.floor((cx + W / 2 / scale) * n);
  const y0 = Math.floor((cy - H / 2 / scale) * n), y1 = Math.floor((cy + H / 2 / scale) * n);
  for (let tx = x0; tx <= x1; tx++) for (let ty = Math.max(0, y0); ty <= Math.min(n - 1, y1); ty++) {
    const href = state.meta.tile_url.replace("{z}", z).replace("{x}", ((tx % n) + n) % n).replace("{y}", ty);
    map.append(svg("image", { href, x: W / 2 + (tx / n - cx) * scale, y: H / 2 + (ty / n - cy) * scale,
      width: tilePx + 0.5, height: tilePx + 0.5, class: "tile" }));
  }
}

function renderAll() { renderIncidents(); renderCameras(); }

// ---- wiring -------------------------------------------------------------------------------
document.addEventListener("DOMContentLoaded", () => {
  $("operator").value = localStorage.getItem("citywatch.operator") || "";
  $("operator").addEventListener("input", () => $("operator").classList.remove("need"));
  for (const id of ["filter-type", "filter-district", "filter-open", "filter-test"]) $(id).addEventListener("change", renderIncidents);
  $("sound-toggle").addEventListener("click", (e) => {
    state.sound = !state.sound;
    if (state.sound) { audio = audio || new AudioContext(); audio.resume(); beep(1); }
    e.currentTarget.textContent = state.sound ? "♪ Sound on" : "♪ Sound off";
    e.currentTarget.setAttribute("aria-pressed", String(state.sound));
  });
  setInterval(renderCameras, 5000); // health ages even when no message arrives
  connect();
});
