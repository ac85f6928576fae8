"""Incident lifecycle and severity rules: debounce, hysteresis, updates, end, cooldown, restart."""

from __future__ import annotations

import json
import random

import pytest

from detectors.base import Finding
from pipeline.alerts.incidents import IncidentTracker, incident_id
from pipeline.alerts.severity import material_change, severity_for
from pipeline.config.settings import AlertSettings

T0 = 1_763_800_000.0  # 2025-11-22T08:26:40Z
SETTINGS = AlertSettings(debounce_hits=3, debounce_window=5, end_after_s=30, update_heartbeat_s=60,
                         cooldown_s=60)


def fire(active: bool, area: float = 2.0, conf: float = 0.8, ready: bool = True) -> Finding:
    return Finding("fire", active, conf if active else 0.1, {"area_pct": area} if active else {},
                   ((0.4, 0.4, 0.1, 0.1),) if active else (), ready=ready)


def run(tracker: IncidentTracker, frames, fps: float = 2.0, t0: float = T0):
    events = []
    for i, findings in enumerate(frames):
        events += tracker.observe(findings, t0 + i / fps)
    return events


def test_one_incident_start_updates_end_under_one_id():
    tr = IncidentTracker("cam-1", SETTINGS)
    # 2 quiet frames, fire for 3 minutes growing from 1 % to 8 %, then 60 s of nothing
    frames = [[fire(False)]] * 2
    frames += [[fire(True, area=1.0 + 7.0 * i / 360)] for i in range(360)]
    frames += [[fire(False)]] * 120
    events = run(tr, frames)
    states = [e.state for e in events]
    assert states[0] == "start" and states[-1] == "end" and states.count("start") == 1
    assert "update" in states
    assert {e.incident_id for e in events} == {events[0].incident_id}
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    start = events[0]
    # third active frame (index 4 at 2 fps) declares the start; the id carries that frame time
    assert start.started_ts == T0 + 2.0
    assert start.incident_id == "cam-1-fire-20251122T082642000"
    assert start.boxes == ((0.4, 0.4, 0.1, 0.1),)
    # growing fire: the severity escalated from severe (1 %) to extreme
    assert start.severity == "severe" and events[-2].severity == "extreme"
    end = events[-1]
    last_active_ts = T0 + 361 / 2
    assert end.ended_ts == pytest.approx(last_active_ts + 30, abs=0.51)
    # updates are not per frame: bounded by escalations, changes (>= 10 s apart) and heartbeats
    assert len(events) < 25


def test_debounce_needs_hits_in_window_and_ignores_not_ready():
    tr = IncidentTracker("cam-1", SETTINGS)
    # isolated active frames (1 of 5) never start
    assert run(tr, [[fire(i % 5 == 0)] for i in range(50)]) == []
    tr = IncidentTracker("cam-1", SETTINGS)
    # active but not ready (warming up): no judgement at all
    assert run(tr, [[fire(True, ready=False)] for i in range(20)]) == []


def test_alternating_active_inactive_gives_one_incident():
    tr = IncidentTracker("cam-1", SETTINGS)
    events = run(tr, [[fire(i % 2 == 0, area=2.0)] for i in range(600)] + [[fire(False)]] * 100)
    assert [e.state for e in events if e.state != "update"] == ["start", "end"]


def test_confidence_hovering_around_threshold_gives_one_incident():
    rng = random.Random(7)
    tr = IncidentTracker("cam-1", SETTINGS)
    frames = []
    for _ in range(1200):  # 10 minutes at 2 fps, detector threshold 0.5, noise +-0.08
        conf = 0.5 + rng.uniform(-0.08, 0.08)
        frames.append([Finding("smoke", conf >= 0.5, conf, {"area_pct": 10 * conf})])
    events = run(tr, frames)
    assert [e.state for e in events].count("start") == 1
    assert not any(e.state == "end" for e in events)
    assert len(events) <= 1 + 600 / 60 + 5  # start + heartbeats + a few changes


def test_cooldown_blocks_restart_then_allows_it():
    tr = IncidentTracker("cam-1", SETTINGS)
    burst = [[fire(True)]] * 10
    quiet = [[fire(False)]] * 62  # 31 s: ends the incident
    events = run(tr, burst + quiet + burst + quiet)  # second burst within the 60 s cooldown
    assert [e.state for e in events if e.state != "update"] == ["start", "end"]
    later = run(tr, burst, t0=events[-1].ended_ts + 61)
    assert later[0].state == "start" and later[0].incident_id != events[0].incident_id


def test_restart_from_state_continues_same_incident():
    tr = IncidentTracker("cam-1", SETTINGS)
    first = run(tr, [[fire(True)]] * 10)
    state = json.loads(json.dumps(tr.to_state()))  # must survive JSON
    again = IncidentTracker.from_state("cam-1", SETTINGS, state)
    rest = run(again, [[fire(True)]] * 10 + [[fire(False)]] * 70, t0=T0 + 5)
    assert [e.state for e in first] == ["start"]
    assert "start" not in [e.state for e in rest] and rest[-1].state == "end"
    assert rest[-1].incident_id == first[0].incident_id and rest[-1].seq == len(first) + len(rest)


def test_replay_gives_same_ids():
    frames = [[fire(True)]] * 10 + [[fire(False)]] * 70
    a = run(IncidentTracker("cam-1", SETTINGS), frames)
    b = run(IncidentTracker("cam-1", SETTINGS), frames)
    assert a == b


def test_from_state_rejects_bad_state():
    with pytest.raises(ValueError, match="not valid"):
        IncidentTracker.from_state("cam-1", SETTINGS, {"camera_id": "cam-1", "types": {"fire": {"history": 3}}})
    good = IncidentTracker("cam-2", SETTINGS).to_state()
    with pytest.raises(ValueError, match="cam-2"):
        IncidentTracker.from_state("cam-1", SETTINGS, good)


def test_expire_ends_when_frames_stop():
    tr = IncidentTracker("cam-1", SETTINGS)
    run(tr, [[fire(True)]] * 10)
    assert tr.expire(T0 + 20) == []
    ended = tr.expire(T0 + 4.5 + 30)
    assert [e.state for e in ended] == ["end"] and ended[0].ended_ts == T0 + 34.5
    assert tr.open_incidents() == {}


def test_types_are_independent_and_duplicates_rejected():
    tr = IncidentTracker("cam-1", SETTINGS)
    smoke = Finding("smoke", True, 0.7, {"area_pct": 8.0})
    events = run(tr, [[fire(True), smoke]] * 4)
    assert sorted(e.type for e in events) == ["fire", "smoke"]
    with pytest.raises(ValueError, match="two findings"):
        tr.observe([smoke, smoke], T0 + 100)


def test_incident_id_format():
    assert incident_id("cam_7", "flood", 1_763_844_026.1234) == "cam_7-flood-20251122T204026123"


@pytest.mark.parametrize("event_type, measurements, kwargs, expected", [
    ("fire", {"area_pct": 0.5}, {}, "moderate"),
    ("fire", {"area_pct": 3.0}, {}, "severe"),
    ("fire", {"area_pct": 3.0}, {"growth": 2.5}, "extreme"),
    ("fire", {"area_pct": 6.0}, {}, "extreme"),
    ("smoke", {"area_pct": 3.0}, {}, "minor"),
    ("smoke", {"area_pct": 10.0}, {"growth": 3.0}, "severe"),
    ("smoke", {"area_pct": 50.0}, {"growth": 3.0}, "severe"),
    ("flood", {"water_level_index": 0.9, "flooded_pct": 10.0}, {}, "severe"),
    ("flood", {"water_level_index": 0.9, "flooded_pct": 65.0}, {}, "extreme"),
    ("flood", {"water_level_index": 0.4, "flooded_pct": 10.0}, {}, "moderate"),
    ("flood", {"water_level_index": 0.1, "flooded_pct": 10.0}, {}, "minor"),
    ("flood", {"flooded_pct": 30.0}, {}, "moderate"),
    ("flood", {"flooded_pct": 70.0}, {}, "severe"),
    ("congestion", {}, {"level": "medium"}, "minor"),
    ("congestion", {}, {"level": "heavy"}, "moderate"),
    ("congestion", {}, {"level": "heavy", "duration_s": 1000}, "severe"),
    ("camera_obstructed", {}, {}, "minor"),
    ("camera_obstructed", {}, {"duration_s": 700}, "moderate"),
    ("camera_offline", {}, {}, "moderate"),
    ("fire", {}, {"confidence": 0.05}, "moderate"),
])
def test_severity_rules(event_type, measurements, kwargs, expected):
    assert severity_for(event_type, measurements, **kwargs) == expected


def test_congestion_persisting_heavy_escalates_to_severe():
    tr = IncidentTracker("cam-1", SETTINGS)
    heavy = [Finding("congestion", True, 0.9, {"occupancy_pct": 80.0}, level="heavy")]
    events = run(tr, [heavy] * (2 * 60 * 20), fps=2.0)
    assert events[0].severity == "moderate"
    assert any(e.severity == "severe" and e.state == "update" for e in events)
    assert {e.incident_id for e in events} == {events[0].incident_id}


def test_severity_flapping_across_a_bound_reports_the_peak_not_every_swing():
    tr = IncidentTracker("cam-1", SETTINGS)
    # flooded % swinging 20 <-> 70 every frame (minor <-> severe) for 5 minutes at 2 fps
    frames = [[Finding("flood", True, 0.9, {"flooded_pct": 70.0 if i % 2 else 20.0})] for i in range(600)]
    events = run(tr, frames)
    assert [e.state for e in events].count("start") == 1
    assert {e.severity for e in events[1:]} == {"severe"}  # graded up once, never flapping down
    assert len(events) <= 1 + 1 + 300 / 60 + 1


def test_lower_severity_must_persist_before_grading_down():
    tr = IncidentTracker("cam-1", SETTINGS)
    severe = [[Finding("flood", True, 0.9, {"flooded_pct": 70.0})]] * 20
    minor = [[Finding("flood", True, 0.9, {"flooded_pct": 10.0})]] * 100  # 50 s
    events = run(tr, severe + minor)
    down = [e for e in events if e.severity == "minor"]
    assert events[0].severity == "severe" and down
    # first frame of the minor phase is at T0 + 10 s: graded down 30 s later, not before
    assert down[0].frame_ts == pytest.approx(T0 + 10 + 30)


def test_expire_with_a_later_clock_does_not_block_new_starts_in_frame_time():
    tr = IncidentTracker("cam-1", SETTINGS)
    run(tr, [[fire(True)]] * 10)
    [end] = tr.expire(T0 + 86_400)  # e.g. wall clock while replaying day-old footage
    assert end.state == "end"
    later = run(tr, [[fire(True)]] * 10, t0=T0 + 4.5 + 30 + 61)  # frame time past the cooldown
    assert [e.state for e in later][:1] == ["start"]


@pytest.mark.footage
def test_fire_clip_replay_gives_one_fire_incident(footage_dir):
    """Done-when of issue 8: a fire clip replayed at 2 fps -> one fire incident, start..end, one id."""
    import cv2

    from pipeline.alerts.payload import build_alert, validate_alert_json
    from pipeline.config.settings import CameraConfig
    from pipeline.frames.keys import frame_key
    from pipeline.processing.analysis import FrameAnalyzer

    camera = CameraConfig(id="cam-fire", name="House 6", location={"lat": -32.0, "lon": -52.1})
    analyzer = FrameAnalyzer(camera, AlertSettings())
    video = cv2.VideoCapture(str(footage_dir / "furg_fire" / "house6.mp4"))
    fps = video.get(cv2.CAP_PROP_FPS) or 30.0
    step, i, ts, events = max(1, round(fps / 2)), 0, T0, []
    while True:
        ok, frame = video.read()
        if not ok:
            break
        if i % step == 0:
            ts = T0 + i / fps
            events += [(e, frame_key("cam-fire", ts, test=True)) for e in analyzer.analyze(frame, ts)[1]]
        i += 1
    events += [(e, None) for e in analyzer.expire(ts + 120)]
    fire_events = [e for e, _ in events if e.type == "fire"]
    assert fire_events and fire_events[0].state == "start" and fire_events[-1].state == "end"
    assert len({e.incident_id for e in fire_events}) == 1
    assert [e.seq for e in fire_events] == list(range(1, len(fire_events) + 1))
    for event, key in events:
        payload = build_alert(event, camera, frame_bucket="frames", frame_key=key, evidence=None,
                              test=True, worker="w")
        assert validate_alert_json(payload.to_json())["test"] is True


def test_material_change_has_relative_and_absolute_bars():
    assert material_change("fire", 4.0, 5.1) and not material_change("fire", 4.0, 4.9)
    assert not material_change("fire", 0.01, 0.3)  # tiny areas: below the 0.5 % floor
    assert material_change("flood", 10.0, 13.0) and not material_change("flood", 10.0, 11.9)
    assert material_change("graffiti", 0.5, 0.7)  # unknown type: confidence, floor 0.05
