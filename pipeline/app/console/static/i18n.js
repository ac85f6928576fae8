// citywatch console: the page's strings from the server's catalogue (vi / en), times in the configured
// zone with their offset, measurements in plain words with units. Loaded before console.js.
"use strict";

const I18N = { language: "en", strings: {}, measures: {}, timezone: "UTC" };

async function loadStrings() {
  const lang = new URLSearchParams(location.search).get("lang");
  const r = await fetch("/api/i18n" + (lang ? `?lang=${encodeURIComponent(lang)}` : ""));
  if (!r.ok) throw new Error(`strings: HTTP ${r.status}`);
  const body = await r.json();
  Object.assign(I18N, { language: body.language, strings: body.strings, measures: body.measures });
  document.documentElement.lang = body.language;
  for (const node of document.querySelectorAll("[data-i18n]")) node.textContent = t(node.dataset.i18n);
  for (const node of document.querySelectorAll("[data-i18n-title]")) node.title = t(node.dataset.i18nTitle);
  for (const node of document.querySelectorAll("[data-i18n-placeholder]")) node.placeholder = t(node.dataset.i18nPlaceholder);
  for (const node of document.querySelectorAll("[data-i18n-aria]")) node.setAttribute("aria-label", t(node.dataset.i18nAria));
  document.title = t("app.title");
}

// t("count.unacked", { n: 2 }) -> "2 chưa xác nhận"; a missing key shows as itself (and is reported once)
const missingKeys = new Set();
function t(key, values = {}) {
  let text = I18N.strings[key];
  if (text === undefined) {
    if (!missingKeys.has(key)) { missingKeys.add(key); console.warn("citywatch: no string", key); }
    text = key;
  }
  return text.replace(/\{(\w+)\}/g, (m, name) => (name in values ? String(values[name]) : m));
}

function typeName(type) { return I18N.strings[`type.${type}`] || (type || "?").replace(/_/g, " "); }
function severityName(sev) { return I18N.strings[`severity.${sev}`] || sev || "?"; }

function locale() { return I18N.language === "vi" ? "vi-VN" : "en-GB"; }

let timeFormat = null, offsetFormat = null;
function setTimezone(zone) {
  if (zone === I18N.timezone && timeFormat) return;
  I18N.timezone = zone || "UTC";
  timeFormat = new Intl.DateTimeFormat(locale(), { timeZone: I18N.timezone, day: "2-digit", month: "2-digit",
    hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false });
  offsetFormat = new Intl.DateTimeFormat("en-US", { timeZone: I18N.timezone, timeZoneName: "shortOffset" });
}

// "02/12 01:26:40" in the configured zone; the zone's offset is shown once, in the top bar clock
function fmtTime(iso) {
  if (!iso) return "–";
  const d = new Date(iso);
  if (isNaN(d)) return String(iso);
  if (!timeFormat) setTimezone(I18N.timezone);
  return timeFormat.format(d);
}

function zoneOffset(date = new Date()) {
  if (!offsetFormat) setTimezone(I18N.timezone);
  const part = offsetFormat.formatToParts(date).find((p) => p.type === "timeZoneName");
  return part ? part.value : I18N.timezone;
}

function fmtNumber(v) {
  if (typeof v !== "number") return String(v);
  const a = Math.abs(v);
  const text = a >= 10 ? v.toFixed(0) : a >= 1 ? v.toFixed(1) : v.toFixed(2);
  return text.includes(".") ? text.replace(/\.?0+$/, "") : text;
}

// [label, value with unit]; the same rules as pipeline.i18n.Catalogue.measurement
function measurement(key, value) {
  const label = I18N.strings[`measure.${key}`] || key.replace(/_/g, " ");
  if (typeof value !== "number") return [label, String(value)];
  switch (I18N.measures[key] || "number") {
    case "pct": return [label, `${fmtNumber(value)} ${t("unit.pct")}`];
    case "fraction": return [label, `${fmtNumber(100 * value)} ${t("unit.pct")}`];
    case "seconds": return [label, `${fmtNumber(value)} ${t("unit.s")}`];
    case "times": return [label, `x${value.toFixed(1)}`];
    case "flag": return [label, t(value ? "bool.yes" : "bool.no")];
    default: return [label, fmtNumber(value)];
  }
}
