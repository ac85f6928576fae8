// citywatch console: triage order and the alarm that repeats (flash, title, sound, browser notification)
// while any open, unacknowledged severe or extreme incident is on the board. Loaded before console.js.
"use strict";

const SEVERITY_RANK = { minor: 1, moderate: 2, severe: 3, extreme: 4 };

function rankOf(inc) { return SEVERITY_RANK[inc.peak_severity || inc.severity] || 0; }

// open, not acknowledged, severe or extreme at its peak; test incidents only if the config says so
function isAlarming(inc, settings) {
  return inc.state !== "end" && !inc.ack && rankOf(inc) >= 3 && (!inc.test || !!(settings && settings.include_test));
}

// pinned (needs an ack), other open, ended; each by severity (worst first), then newest first
function triage(incidents, settings) {
  const bySeverityThenTime = (a, b) => (SEVERITY_RANK[b.severity] || 0) - (SEVERITY_RANK[a.severity] || 0)
    || (b.started_at || "").localeCompare(a.started_at || "") || a.incident_id.localeCompare(b.incident_id);
  const pinned = [], open = [], ended = [];
  for (const inc of incidents) (isAlarming(inc, settings) ? pinned : inc.state !== "end" ? open : ended).push(inc);
  pinned.sort((a, b) => rankOf(b) - rankOf(a) || bySeverityThenTime(a, b));
  open.sort(bySeverityThenTime);
  ended.sort((a, b) => (b.started_at || "").localeCompare(a.started_at || ""));
  return { pinned, open, ended };
}

const alarm = {
  settings: { repeat_s: 20, sound: true, include_test: false },
  active: [], cues: 0, beeps: 0, notified: 0, timer: null, titleTimer: null, audio: null, soundOn: true,

  configure(settings) {
    const first = !this.configured;
    this.settings = Object.assign(this.settings, settings || {});
    if (first) { this.soundOn = !!this.settings.sound; this.configured = true; }
  },

  // called after every board change with the alarming incidents
  update(alarming) {
    const before = new Set(this.active.map((i) => i.incident_id));
    this.active = alarming;
    document.body.classList.toggle("alarming", alarming.length > 0);
    if (!alarming.length) return this.stop();
    const fresh = alarming.some((i) => !before.has(i.incident_id));
    if (!this.timer) this.timer = setInterval(() => this.cue(), this.settings.repeat_s * 1000);
    if (!this.titleTimer) this.titleTimer = setInterval(() => this.blinkTitle(), 1000);
    if (fresh) this.cue();
    this.blinkTitle(true);
  },

  stop() {
    clearInterval(this.timer); clearInterval(this.titleTimer);
    this.timer = this.titleTimer = null;
    document.title = t("app.title");
    $("flash").classList.remove("on");
  },

  cue() {
    if (!this.active.length) return;
    this.cues += 1;
    document.body.dataset.alarmCues = String(this.cues);
    const f = $("flash");
    f.classList.remove("on"); void f.offsetWidth; f.classList.add("on");
    if (this.soundOn) this.beep(this.active.some((i) => rankOf(i) === 4) ? 3 : 2);
    this.notify();
  },

  blinkTitle(force) {
    const text = t("alarm.title", { n: this.active.length });
    document.title = force || document.title !== text ? text : t("app.title");
  },

  ensureAudio() {
    try { this.audio = this.audio || new AudioContext(); } catch (e) { return null; }
    if (this.audio.state === "suspended") this.audio.resume().catch(() => {});
    return this.audio;
  },

  soundBlocked() { return this.soundOn && (!this.audio || this.audio.state !== "running"); },

  beep(times) {
    const audio = this.ensureAudio();
    if (!audio || audio.state !== "running") return renderSound();
    this.beeps += 1;
    for (let i = 0; i < times; i++) {
      const osc = audio.createOscillator(), gain = audio.createGain(), at = audio.currentTime + i * 0.35;
      osc.type = "square"; osc.frequency.value = 880;
      gain.gain.setValueAtTime(0.0001, at); gain.gain.exponentialRampToValueAtTime(0.25, at + 0.02);
      gain.gain.exponentialRampToValueAtTime(0.0001, at + 0.25);
      osc.connect(gain).connect(audio.destination); osc.start(at); osc.stop(at + 0.3);
    }
  },

  notify() {
    if (!("Notification" in window) || Notification.permission !== "granted") return;
    for (const inc of this.active) {
      try {
        new Notification(t("alarm.notify_title", { severity: severityName(inc.peak_severity || inc.severity),
          type: typeName(inc.type), camera: inc.camera_name || inc.camera_id }), {
          body: t("alarm.notify_body", { district: inc.district || "–", time: fmtTime(inc.started_at) }),
          tag: inc.incident_id, renotify: true, requireInteraction: rankOf(inc) === 4 });
        this.notified += 1;
      } catch (e) { /* a browser without page notifications (e.g. Android Chrome) still flashes and beeps */ }
    }
  },
};
