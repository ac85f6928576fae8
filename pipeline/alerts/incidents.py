"""Incident lifecycle: turns per-frame findings into start / update / end events, one incident each.

Rules per camera and event type, on frame time only (no clock is read):

- **start** when ``debounce_hits`` of the last ``debounce_window`` *ready* findings are active,
  and the type is not cooling down.
- **evidence** while open has a lower bar than the start (hysteresis): one active frame, or a
  confidence of at least ``HOLD_RATIO`` x the mean confidence that started the incident, keeps it
  alive. A measure hovering at the detector's threshold therefore gives one incident.
- **update** at once when the severity rises; when it has stayed lower for
  ``DEESCALATE_AFTER_S`` (so a measure flapping across a severity bound reports its peak rather
  than a message per swing); when the level changes (at most every ``MIN_UPDATE_GAP_S``); when
  the primary measurement (smoothed over ~10 s) changes materially (> 25 % and a floor, see
  :func:`pipeline.alerts.severity.material_change`; at most every ``MEASUREMENT_UPDATE_GAP_S``); and at
  least every ``update_heartbeat_s``.
- **end** after ``end_after_s`` of frame time without evidence (or :meth:`IncidentTracker.expire`
  when frames stop); then ``cooldown_s`` must pass before the same type starts again.

Incident ids are ``<camera>-<type>-<YYYYmmddTHHMMSSfff>`` of the start frame, so a replay after a
crash gives the same id; ``seq`` counts the messages of an incident from 1.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from detectors.base import Finding
from pipeline.alerts.severity import growth_ratio, material_change, primary_value, severity_for, severity_rank
from pipeline.config.settings import AlertSettings

HOLD_RATIO = 0.6
"""Fraction of the starting confidence that still counts as evidence while an incident is open."""
HOLD_MIN_CONFIDENCE = 0.2
"""A confidence below this never holds an incident open on its own."""
MIN_UPDATE_GAP_S = 10.0
"""Least frame time between a message and an update for a level change."""
MEASUREMENT_UPDATE_GAP_S = 30.0
"""Least frame time between a message and an update for a measurement change alone."""
PRIMARY_SMOOTHING_S = 10.0
"""Time constant of the smoothing applied to the primary measurement before judging a change."""
DEESCALATE_AFTER_S = 30.0
"""Frame time a lower severity must persist before the incident is graded down."""

State = Literal["start", "update", "end"]


@dataclass(frozen=True)
class IncidentEvent:
    """One message of an incident's life: its start, an update, or its end."""

    incident_id: str
    camera_id: str
    type: str
    state: State
    seq: int
    severity: str
    confidence: float
    measurements: dict[str, float] = field(default_factory=dict)
    level: str | None = None
    boxes: tuple[tuple[float, float, float, float], ...] = ()
    frame_ts: float = 0.0
    started_ts: float = 0.0
    ended_ts: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def incident_id(camera_id: str, event_type: str, started_ts: float) -> str:
    """``<camera>-<type>-<YYYYmmddTHHMMSSfff>`` (UTC, milliseconds) of the start frame."""
    ms = round(started_ts * 1000)
    t = datetime.fromtimestamp(ms // 1000, tz=UTC)
    return f"{camera_id}-{event_type}-{t:%Y%m%dT%H%M%S}{ms % 1000:03d}"


class _Snapshot(BaseModel):
    """The latest evidence of an open incident (what its next message reports)."""

    confidence: float = 0.0
    measurements: dict[str, float] = Field(default_factory=dict)
    level: str | None = None
    boxes: list[tuple[float, float, float, float]] = Field(default_factory=list)


class _OpenIncident(BaseModel):
    incident_id: str
    started_ts: float
    seq: int = 1
    last_evidence_ts: float
    last_sent_ts: float
    severity: str
    sent_primary: float
    sent_level: str | None = None
    start_primary: float
    hold_bar: float
    lower_since: float | None = None
    smoothed_primary: float = 0.0
    latest: _Snapshot


class _TypeState(BaseModel):
    history: list[tuple[bool, float]] = Field(default_factory=list)
    last_ts: float | None = None
    cooldown_until: float | None = None
    open: _OpenIncident | None = None


class _TrackerState(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: Literal[1] = 1
    camera_id: str
    types: dict[str, _TypeState] = Field(default_factory=dict)


class IncidentTracker:
    """The incidents of one camera: feed findings in frame-time order, get lifecycle events."""

    def __init__(self, camera_id: str, settings: AlertSettings) -> None:
        self.camera_id = camera_id
        self.settings = settings
        self._types: dict[str, _TypeState] = {}

    # -- public API ------------------------------------------------------------------------
    def observe(self, findings: Iterable[Finding], ts: float) -> list[IncidentEvent]:
        """Take one frame's findings (frame time ``ts``) and return the events they cause."""
        if not math.isfinite(ts):
            raise ValueError(f"frame time must be a finite number, got {ts!r}")
        by_type: dict[str, Finding] = {}
        for f in findings:
            if f.type in by_type:
                raise ValueError(f"two findings of type {f.type!r} for one frame at {ts}")
            by_type[f.type] = f
        events: list[IncidentEvent] = []
        for event_type in sorted(by_type):
            st = self._types.setdefault(event_type, _TypeState())
            if st.last_ts is not None and ts < st.last_ts:
                continue  # an older frame than one already judged: ignore, never reorder time
            st.last_ts = ts
            finding = by_type[event_type]
            if finding.ready:
                events.extend(self._judge(event_type, st, finding, ts))
        for event_type in sorted(self._types):
            st = self._types[event_type]
            if st.open and ts - st.open.last_evidence_ts >= self.settings.end_after_s:
                events.append(self._end(event_type, st, frame_ts=ts, ended_ts=ts))
        return events

    def expire(self, now_ts: float) -> list[IncidentEvent]:
        """End open incidents whose last evidence is ``end_after_s`` older than ``now_ts``.

        ``now_ts`` must be in the frame-time base, e.g. the last frame time plus the time waited
        since it arrived."""
        events = []
        for event_type in sorted(self._types):
            st = self._types[event_type]
            if st.open and now_ts - st.open.last_evidence_ts >= self.settings.end_after_s:
                last = st.last_ts if st.last_ts is not None else now_ts
                events.append(self._end(event_type, st, frame_ts=last, ended_ts=now_ts))
        return events

    def open_incidents(self) -> dict[str, str]:
        """``{type: incident_id}`` of the incidents open now."""
        return {t: st.open.incident_id for t, st in self._types.items() if st.open}

    def to_state(self) -> dict[str, Any]:
        """A JSON-able snapshot; :meth:`from_state` continues exactly where this left off."""
        return _TrackerState(camera_id=self.camera_id, types=self._types).model_dump(mode="json")

    @classmethod
    def from_state(cls, camera_id: str, settings: AlertSettings, state: dict[str, Any]) -> IncidentTracker:
        """Rebuild a tracker from :meth:`to_state` output; ValueError if it is not one."""
        try:
            parsed = _TrackerState.model_validate(state)
        except ValidationError as exc:
            raise ValueError(f"incident state of camera {camera_id!r} is not valid: {exc}") from None
        if parsed.camera_id != camera_id:
            raise ValueError(f"incident state belongs to camera {parsed.camera_id!r}, not {camera_id!r}")
        tracker = cls(camera_id, settings)
        for st in parsed.types.values():
            st.history = st.history[-settings.debounce_window:]
        tracker._types = dict(parsed.types)
        return tracker

    # -- lifecycle -------------------------------------------------------------------------
    def _judge(self, event_type: str, st: _TypeState, f: Finding, ts: float) -> list[IncidentEvent]:
        s = self.settings
        if st.open is None:
            st.history = (st.history + [(f.active, float(f.confidence))])[-s.debounce_window:]
            cooling = st.cooldown_until is not None and ts < st.cooldown_until
            if not cooling and sum(1 for active, _ in st.history if active) >= s.debounce_hits:
                return [self._start(event_type, st, f, ts)]
            return []
        inc = st.open
        if not (f.active or (inc.hold_bar >= HOLD_MIN_CONFIDENCE and f.confidence >= inc.hold_bar)):
            return []
        dt, inc.last_evidence_ts = ts - inc.last_evidence_ts, ts
        if f.active:
            inc.latest = _snapshot(f)
        latest = inc.latest
        alpha = 1.0 - math.exp(-max(dt, 0.0) / PRIMARY_SMOOTHING_S)
        inc.smoothed_primary += alpha * (primary_value(event_type, latest.measurements, latest.confidence)
                                         - inc.smoothed_primary)
        primary = inc.smoothed_primary
        computed = self._severity(event_type, latest, inc.start_primary, ts - inc.started_ts)
        severity, regraded = inc.severity, False
        if severity_rank(computed) > severity_rank(inc.severity):
            severity, regraded, inc.lower_since = computed, True, None
        elif severity_rank(computed) < severity_rank(inc.severity):
            inc.lower_since = ts if inc.lower_since is None else inc.lower_since
            if ts - inc.lower_since >= DEESCALATE_AFTER_S:
                severity, regraded, inc.lower_since = computed, True, None
        else:
            inc.lower_since = None
        since_sent = ts - inc.last_sent_ts
        level_changed = latest.level != inc.sent_level and since_sent >= MIN_UPDATE_GAP_S
        moved = material_change(event_type, inc.sent_primary, primary)
        if (regraded or level_changed or since_sent >= s.update_heartbeat_s
                or (moved and since_sent >= MEASUREMENT_UPDATE_GAP_S)):
            inc.seq += 1
            inc.severity, inc.sent_primary, inc.sent_level, inc.last_sent_ts = severity, primary, latest.level, ts
            return [self._event(event_type, inc, "update", frame_ts=ts)]
        return []

    def _start(self, event_type: str, st: _TypeState, f: Finding, ts: float) -> IncidentEvent:
        actives = [c for active, c in st.history if active]
        latest = _snapshot(f)
        latest.confidence = round(sum(actives) / len(actives), 4)
        primary = primary_value(event_type, latest.measurements, latest.confidence)
        st.open = _OpenIncident(
            incident_id=incident_id(self.camera_id, event_type, ts), started_ts=ts,
            last_evidence_ts=ts, last_sent_ts=ts,
            severity=self._severity(event_type, latest, primary, 0.0),
            sent_primary=primary, sent_level=latest.level, start_primary=primary, smoothed_primary=primary,
            hold_bar=HOLD_RATIO * latest.confidence, latest=latest,
        )
        st.history = []
        return self._event(event_type, st.open, "start", frame_ts=ts)

    def _end(self, event_type: str, st: _TypeState, *, frame_ts: float, ended_ts: float) -> IncidentEvent:
        inc = st.open
        assert inc is not None
        inc.seq += 1
        event = self._event(event_type, inc, "end", frame_ts=frame_ts, ended_ts=ended_ts)
        st.open = None
        st.history = []
        # counted in frame time even when expire() was given another clock
        st.cooldown_until = inc.last_evidence_ts + self.settings.end_after_s + self.settings.cooldown_s
        return event

    def _severity(self, event_type: str, snap: _Snapshot, start_primary: float, duration_s: float) -> str:
        area = snap.measurements.get("area_pct")
        growth = growth_ratio(start_primary if area is not None else None, area)
        return severity_for(event_type, snap.measurements, confidence=snap.confidence,
                            level=snap.level, growth=growth, duration_s=duration_s)

    def _event(self, event_type: str, inc: _OpenIncident, state: State, *, frame_ts: float,
               ended_ts: float | None = None) -> IncidentEvent:
        snap = inc.latest
        return IncidentEvent(
            incident_id=inc.incident_id, camera_id=self.camera_id, type=event_type, state=state,
            seq=inc.seq, severity=inc.severity, confidence=round(float(snap.confidence), 4),
            measurements=dict(snap.measurements), level=snap.level,
            boxes=tuple((b[0], b[1], b[2], b[3]) for b in snap.boxes), frame_ts=frame_ts,
            started_ts=inc.started_ts, ended_ts=ended_ts,
        )


def _snapshot(f: Finding) -> _Snapshot:
    return _Snapshot(confidence=float(f.confidence), level=f.level,
                     measurements={k: float(v) for k, v in f.measurements.items()},
                     boxes=[tuple(float(v) for v in b) for b in f.boxes])
