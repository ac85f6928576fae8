// citywatch operations console: live incidents over Server-Sent Events, triage, alarm, camera map, acks.
// No framework, no build step; every value from the server goes into the DOM as text (never HTML).
// Needs i18n.js (t, fmtTime, measurement), alarm.js (triage, alarm) and map.js (cameraMap) first.
"use strict";

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
const state = { incidents: new Map(), cameras: new Map(), workers: [], meta: {}, loaded: false, fresh: null };
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

// ---- live feed ------------------------------------------------------------------------------
let source = null;
function connect() {
  if (source) source.close();
  setPill("link-status", t("link.connecting"), "pending");
  source = new EventSource("/api/events");
  source.addEventListener("open", () => setPill("link-status", t("link.live"), "ok"));
  source.addEventListener("error", () => {
    setPill("link-status", t("link.reconnecting"), "bad");
    if (source.readyState === EventSource.CLOSED) setTimeout(connect, 3000); // e.g. server restarted with 5xx
  });
  source.addEventListener("snapshot", (e) => applySnapshot(JSON.parse(e.data)));
  source.addEventListener("incident", (e) => applyIncident(JSON.parse(e.data).incident));
  source.addEventListener("camera", (e) => { const c = JSON.parse(e.data).camera; state.cameras.set(c.id, c); renderCameras(); });
  source.addEventListener("workers", (e) => { state.workers = JSON.parse(e.data).workers; renderCameras(); });
  source.addEventListener("broker", (e) => setBroker(JSON.parse(e.data).connected));
}

function setPill(id, text, cls) { const p = $(id); p.textContent = text; p.className = "pill " + cls; }
function setBroker(ok) { setPill("broker-status", t(ok ? "broker.ok" : "broker.bad"), ok ? "ok" : "bad"); }

function applySnapshot(snap) {
  state.meta = snap.meta || {};
  setTimezone(state.meta.timezone);
  alarm.configure(state.meta.alarm);
  cameraMap.init(state.meta);
  state.incidents = new Map(snap.incidents.map((i) => [i.incident_id, i]));
  state.cameras = new Map(snap.cameras.map((c) => [c.id, c]));
  state.workers = snap.workers || [];
  state.loaded = true;
  setBroker(!!state.meta.broker_connected);
  renderSound();
  renderAll();
}

function applyIncident(inc) {
  const before = state.incidents.get(inc.incident_id);
  state.incidents.set(inc.incident_id, inc);
  if (!before || (!isAlarming(before, alarm.settings) && isAlarming(inc, alarm.settings))) state.fresh = inc.incident_id;
  renderIncidents();
  renderMap();
}

// ---- incidents ----------------------------------------------------------------------------
function filtered() {
  const type = $("filter-type").value, district = $("filter-district").value;
  const openOnly = $("filter-open").checked, showTest = $("filter-test").checked;
  return [...state.incidents.values()].filter((i) => (!type || i.type === type) && (!district || i.district === district)
    && (!openOnly || i.state !== "end") && (showTest || !i.test));
}

function renderIncidents() {
  refreshFilterOptions();
  const groups = triage(filtered(), alarm.settings);
  const sections = [["pinned", "list.pinned"], ["open", "list.open"], ["ended", "list.ended"]]
    .filter(([name]) => groups[name].length)
    .map(([name, key]) => el("section", { class: `group group-${name}`, "data-group": name },
      el("h2", { class: "group-title", text: `${t(key)} (${groups[name].length})` }), ...groups[name].map(incidentCard)));
  $("incident-list").replaceChildren(...sections);
  $("empty-note").hidden = sections.length > 0;
  const all = [...state.incidents.values()], open = all.filter((i) => i.state !== "end");
  const live = open.filter((i) => !i.test), unacked = live.filter((i) => !i.ack).length;
  $("count-live").textContent = t("count.open_live", { n: live.length });
  $("count-test").textContent = t("count.open_test", { n: open.length - live.length });
  $("count-test").classList.toggle("zero", open.length === live.length);
  $("count-unacked").textContent = t("count.unacked", { n: unacked });
  $("count-unacked").classList.toggle("zero", unacked === 0);
  const alarming = all.filter((i) => isAlarming(i, alarm.settings));
  $("alarm-bar").hidden = !alarming.length;
  $("alarm-text").textContent = t("alarm.title", { n: alarming.length });
  alarm.update(alarming);
}

function minutesSince(iso) { const ms = Date.now() - Date.parse(iso); return isFinite(ms) ? Math.max(0, Math.floor(ms / 60000)) : 0; }

function incidentCard(inc) {
  const ended = inc.state === "end", sev = inc.severity || "minor", alarming = isAlarming(inc, alarm.settings);
  const card = el("article", { class: `incident sev-${sev}${ended ? " ended" : ""}${inc.ack ? " acked" : ""}`
    + `${alarming ? " alarming" : ""}${inc.escalated_at ? " escalated" : ""}${state.fresh === inc.incident_id ? " fresh" : ""}`,
    "data-incident": inc.incident_id, "data-severity": sev });
  const badges = el("div", { class: "badges" },
    inc.escalated_at && !inc.ack && !ended ? el("span", { class: "badge escalated", text: t("badge.escalated") }) : null,
    inc.test ? el("span", { class: "badge test", text: t("badge.test") }) : null,
    el("span", { class: "badge sev", text: severityName(sev) }),
    el("span", { class: `badge state ${ended ? "ended" : "open"}`, text: t(ended ? "badge.ended" : "badge.open") }));
  const head = el("header", {}, el("h3", {}, typeIcon(inc.type), el("span", { class: "type-name", text: typeName(inc.type) })), badges);
  const where = el("p", { class: "where" }, el("strong", { text: inc.camera_name || inc.camera_id }),
    el("span", { text: inc.district ? ` · ${inc.district}` : "" }), el("span", { class: "muted", text: ` · ${inc.camera_id}` }));
  const parts = [t("card.started", { time: fmtTime(inc.started_at) }),
    ended ? t("card.ended", { time: fmtTime(inc.ended_at) }) : t("card.last_frame", { time: fmtTime(inc.frame_time) })];
  if (inc.peak_severity && inc.peak_severity !== inc.severity) parts.push(t("card.peak", { severity: severityName(inc.peak_severity) }));
  if (alarming && inc.alarm_since) parts.push(t("card.unacked_for", { minutes: minutesSince(inc.alarm_since) }));
  const when = el("p", { class: "when muted", text: parts.join(" · ") });
  const snap = inc.snapshot_url
    ? el("a", { class: "snapshot", href: inc.snapshot_url, target: "_blank", rel: "noopener noreferrer" },
        el("img", { src: inc.snapshot_url, alt: t("card.snapshot_alt", { type: typeName(inc.type), camera: inc.camera_name }), loading: "lazy" }))
    : el("div", { class: "snapshot none", text: t("card.no_snapshot") });
  const rows = Object.entries(inc.measurements || {}).map(([k, v]) => {
    const [name, value] = measurement(k, v);
    return el("tr", { "data-measure": k }, el("th", { text: name }), el("td", { text: value }));
  });
  if (inc.level) rows.unshift(el("tr", {}, el("th", { text: t("card.level") }), el("td", { text: inc.level })));
  if (typeof inc.confidence === "number") rows.push(el("tr", {}, el("th", { text: t("card.confidence") }), el("td", { text: `${Math.round(inc.confidence * 100)} %` })));
  const timeline = el("ol", { class: "timeline" }, ...inc.messages.map((m) =>
    el("li", { class: `st-${m.state}`, title: t("card.message", { seq: m.seq }) },
      el("span", { class: "seq", text: `#${m.seq}` }), ` ${t(`state.${m.state}`)} · ${severityName(m.severity)} · ${fmtTime(m.time)}`)));
  const ack = inc.ack
    ? el("p", { class: "ack-done", text: t("ack.done", { operator: inc.ack.operator, time: fmtTime(inc.ack.time) }) })
    : el("button", { class: "ack", type: "button", onclick: (e) => acknowledge(inc, e.currentTarget) }, t("ack.button"));
  const body = el("div", { class: "body" }, snap, el("div", { class: "details" }, el("table", { class: "measures" }, el("tbody", {}, ...rows)), timeline));
  card.append(head, where, when, body, el("footer", {}, ack, el("span", { class: "iid muted", text: inc.incident_id })));
  return card;
}

async function acknowledge(inc, button) {
  const operator = $("operator").value.trim();
  if (!operator) { $("operator").focus(); $("operator").classList.add("need"); return; }
  localStorage.setItem("citywatch.operator", operator);
  button.disabled = true; button.textContent = t("ack.sending");
  try {
    const r = await fetch(`/api/incidents/${encodeURIComponent(inc.incident_id)}/ack`, {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ operator }) });
    if (!r.ok) throw new Error((await r.json().catch(() => ({}))).error || `HTTP ${r.status}`);
    button.textContent = t("ack.waiting"); // the ack topic round trip marks it acknowledged
  } catch (err) {
    button.disabled = false; button.textContent = t("ack.button");
    button.after(el("span", { class: "error", text: ` ${err.message}` }));
  }
}

function refreshFilterOptions() {
  const types = new Set(KNOWN_TYPES), districts = new Set();
  for (const i of state.incidents.values()) { types.add(i.type); if (i.district) districts.add(i.district); }
  for (const c of state.cameras.values()) if (c.district) districts.add(c.district);
  fillSelect($("filter-type"), [...types].sort(), t("filter.all_types"), typeName);
  fillSelect($("filter-district"), [...districts].sort(), t("filter.all_districts"), (d) => d);
}

function fillSelect(select, values, allText, show) {
  const current = select.value, key = values.join("|");
  if (select.dataset.key === key) return;
  select.dataset.key = key;
  select.replaceChildren(el("option", { value: "", text: allText }), ...values.map((v) => el("option", { value: v, text: show(v) })));
  select.value = values.includes(current) ? current : "";
}

// ---- cameras: health, honestly: a report that stopped coming is stale, then offline ---------
function health(cam) {
  const s = cam.status;
  if (!s || !s.state) return { state: "unknown", label: t("health.unknown"), note: t("health.no_report_yet") };
  const reported = Date.parse(s.checked_at), age = (Date.now() - reported) / 1000;
  // the camera-health job ("<worker>-health") says "offline, stopped" after each run: it handles no camera
  // a status names its worker: only that worker's last will speaks for the camera (older statuses: any worker's)
  const owner = typeof s.worker === "string" ? s.worker : null;
  const down = state.workers.find((w) => w.state === "offline" && !/-health$/.test(w.name) && (owner === null || w.name === owner)
    && Date.parse(w.ts) >= reported - 5000);
  if (down) return { state: "offline", label: t("health.worker_offline"), note: t("health.worker_down", { worker: down.name, time: fmtTime(down.ts) }) };
  if (isFinite(age) && age > (state.meta.offline_after_s || 120)) return { state: "offline", label: t("health.offline"), note: t("health.no_report_for", { seconds: Math.round(age) }) };
  if (isFinite(age) && age > (state.meta.stale_after_s || 30)) return { state: "stale", label: t("health.stale"), note: t("health.no_report_for", { seconds: Math.round(age) }) };
  const known = ["online", "stale", "offline"].includes(s.state) ? s.state : "unknown";
  return { state: known, label: t(`health.${known}`), note: t("health.silent", { seconds: fmtNumber(s.silent_s ?? 0) }) };
}

function renderCameras() {
  const rows = [...state.cameras.values()].sort((a, b) => a.id.localeCompare(b.id)).map((c) => {
    const h = health(c);
    return el("tr", { "data-camera": c.id, "data-health": h.state },
      el("td", {}, el("strong", { text: c.name }), el("div", { class: "muted", text: c.id })),
      el("td", { text: c.district || "–" }),
      el("td", { title: h.note }, el("i", { class: `dot ${h.state}` }), ` ${h.label}`, el("div", { class: "muted", text: h.note })),
      el("td", { text: fmtTime(c.status && c.status.last_frame_time) }),
      el("td", { text: c.status && c.status.fps ? fmtNumber(c.status.fps) : "–" }));
  });
  $("camera-rows").replaceChildren(...rows);
  const workers = state.workers.filter((w) => !/-health$/.test(w.name)); // detector workers only
  $("workers").replaceChildren(...workers.map((w) => el("span", { class: `pill ${w.state === "online" ? "ok" : "bad"}`,
    "data-worker": w.name, title: w.reason || "", text: `${w.name}: ${t(w.state === "online" ? "health.online" : "health.offline")}` })));
  $("workers-panel").hidden = !workers.length;
  renderMap();
}

function renderMap() {
  cameraMap.render([...state.cameras.values()], [...state.incidents.values()], health, (c) => {
    if (c.district) { $("filter-district").value = c.district; renderIncidents(); }
  });
}

function typeIcon(type) {
  const icon = ICONS[type] || { d: "M8 2a6 6 0 1 1 0 12A6 6 0 0 1 8 2z" };
  const box = svg("svg", { viewBox: "0 0 16 16", class: "type-icon", "aria-hidden": "true" });
  box.append(svg("path", icon.stroke ? { d: icon.d, fill: "none", stroke: "currentColor", "stroke-width": 1.6,
    "stroke-linecap": "round" } : { d: icon.d, fill: "currentColor", "fill-rule": "evenodd" }));
  return box;
}

function renderSound() {
  const b = $("sound-toggle");
  b.textContent = !alarm.soundOn ? t("sound.off") : alarm.soundBlocked() ? t("sound.blocked") : t("sound.on");
  b.setAttribute("aria-pressed", String(alarm.soundOn));
  b.classList.toggle("blocked", alarm.soundBlocked());
}

function renderClock() { $("clock").textContent = `${fmtTime(new Date().toISOString())} ${zoneOffset()}`; }
function renderAll() { renderIncidents(); renderCameras(); renderClock(); }

// ---- wiring -------------------------------------------------------------------------------
document.addEventListener("DOMContentLoaded", async () => {
  $("operator").value = localStorage.getItem("citywatch.operator") || "";
  $("operator").addEventListener("input", () => $("operator").classList.remove("need"));
  for (const id of ["filter-type", "filter-district", "filter-open", "filter-test"]) $(id).addEventListener("change", renderIncidents);
  $("sound-toggle").addEventListener("click", () => {
    alarm.soundOn = alarm.soundBlocked() ? true : !alarm.soundOn;
    if (alarm.soundOn) alarm.ensureAudio();
    setTimeout(renderSound, 100);
  });
  document.addEventListener("click", () => { if (alarm.soundOn) { alarm.ensureAudio(); setTimeout(renderSound, 100); } }, { capture: true });
  $("notify-toggle").addEventListener("click", async () => {
    if ("Notification" in window) await Notification.requestPermission();
    $("notify-toggle").classList.toggle("on", "Notification" in window && Notification.permission === "granted");
  });
  $("notify-toggle").classList.toggle("on", "Notification" in window && Notification.permission === "granted");
  await loadStrings().catch((err) => console.error(err));
  alarm.ensureAudio();
  renderSound();
  setInterval(() => { renderCameras(); renderClock(); }, 5000); // health ages even when no message arrives
  setInterval(() => { if (state.loaded) renderIncidents(); }, 30000); // "unacknowledged for N min"
  connect();
});
