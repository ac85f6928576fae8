"""Alert payload: building, JSON Schema (committed = generated, payloads validate), topics."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from pipeline.alerts.evidence import Evidence
from pipeline.alerts.incidents import IncidentEvent, incident_id
from pipeline.alerts.payload import (
    SCHEMA_PATH,
    AlertPayload,
    alert_topic,
    build_alert,
    cap_topic,
    generate_schema,
    main,
    message_id,
    validate_alert_json,
)
from pipeline.config.settings import CameraConfig
from pipeline.frames.keys import frame_key

CAMERA = CameraConfig(id="cam-01", name="Main St / 5th", location={"lat": 52.52, "lon": 13.4, "district": "Mitte"})
TS = 1_763_844_026.125


def event(**kw) -> IncidentEvent:
    base = dict(incident_id=incident_id("cam-01", "fire", TS), camera_id="cam-01", type="fire",
                state="start", seq=1, severity="severe", confidence=0.83, measurements={"area_pct": 2.5},
                level=None, boxes=((0.1, 0.2, 0.3, 0.4),), frame_ts=TS, started_ts=TS)
    base.update(kw)
    return IncidentEvent(**base)


def evidence() -> Evidence:
    return Evidence(bucket="alerts", key="cam-01/2025/11/22/x-1.jpg", sha256="a" * 64,
                    url="http://127.0.0.1:9000/alerts/x?X-Amz-Signature=1",
                    expires_at=datetime(2025, 11, 29, tzinfo=UTC), sha1="b" * 40, size=1234)


def test_committed_schema_equals_generated():
    assert json.loads(SCHEMA_PATH.read_text()) == generate_schema()
    assert main(["--check"]) == 0


def test_payload_validates_and_round_trips():
    key = frame_key("cam-01", TS)
    p = build_alert(event(), CAMERA, frame_bucket="frames", frame_key=key, evidence=evidence(),
                    test=False, worker="worker-1")
    doc = validate_alert_json(p.to_json())
    assert doc["incident_id"] == "cam-01-fire-20251122T204026125"
    assert doc["camera"] == {"id": "cam-01", "name": "Main St / 5th",
                             "location": {"lat": 52.52, "lon": 13.4, "district": "Mitte"}}
    assert doc["frame"] == {"bucket": "frames", "key": key, "time": "2025-11-22T20:40:26.125000Z"}
    assert doc["evidence"]["sha256"] == "a" * 64 and doc["test"] is False
    assert AlertPayload.model_validate_json(p.to_json()) == p
    # same incident and seq -> same message id (replays can be de-duplicated)
    assert doc["message_id"] == str(message_id(doc["incident_id"], 1))


def test_test_footage_key_forces_test_flag():
    p = build_alert(event(), CAMERA, frame_bucket="frames", frame_key=frame_key("cam-01", TS, test=True),
                    evidence=None, test=False, worker="w")
    assert p.test is True and p.evidence is None


def test_schema_rejects_bad_payloads():
    doc = json.loads(build_alert(event(state="end", seq=3, ended_ts=TS + 40), CAMERA, frame_bucket=None,
                                 frame_key=None, evidence=None, test=True, worker="w").to_json())
    validate_alert_json(doc)
    for mutate, where in [
        (lambda d: d.pop("severity"), "severity"),
        (lambda d: d.update(severity="catastrophic"), "severity"),
        (lambda d: d.update(extra=1), "extra"),
        (lambda d: d["camera"].update(id="cam/+"), "camera/id"),
        (lambda d: d.update(seq=0), "seq"),
        (lambda d: d.update(confidence=1.5), "confidence"),
    ]:
        bad = json.loads(json.dumps(doc))
        mutate(bad)
        with pytest.raises(ValueError) as err:
            validate_alert_json(bad)
        assert where.split("/")[0] in str(err.value) or "extra" in str(err.value)


def test_non_finite_measurements_are_dropped_and_model_is_strict():
    p = build_alert(event(measurements={"area_pct": math.nan, "growth": 1.5}), CAMERA, frame_bucket="frames",
                    frame_key=None, evidence=None, test=False, worker="w")
    assert p.measurements == {"growth": 1.5}
    with pytest.raises(ValidationError):
        AlertPayload.model_validate({**json.loads(p.to_json()), "unknown": True})
    with pytest.raises(ValueError, match="camera"):
        build_alert(event(camera_id="cam-02"), CAMERA, frame_bucket=None, frame_key=None, evidence=None,
                    test=False, worker="w")


def test_topics_and_injection_refused():
    assert alert_topic("city/ioc", "fire", "cam-01") == "city/ioc/alerts/fire/cam-01"
    assert cap_topic("citywatch", "camera_offline", "c_1") == "citywatch/cap/camera_offline/c_1"
    for prefix, etype, cam in [("p", "fire", "cam/1"), ("p", "fire", "cam+"), ("p", "fire", "#"),
                               ("p", "fi+re", "c"), ("p", "fire/x", "c"), ("p", "", "c"),
                               ("p/#", "fire", "c"), ("", "fire", "c")]:
        with pytest.raises(ValueError):
            alert_topic(prefix, etype, cam)


_types = st.sampled_from(["fire", "smoke", "flood", "congestion", "camera_offline", "camera_obstructed"])
_unit = st.floats(0, 1, allow_nan=False)


@settings(max_examples=150, deadline=None)
@given(etype=_types, state=st.sampled_from(["start", "update", "end"]), seq=st.integers(1, 10_000),
       severity=st.sampled_from(["minor", "moderate", "severe", "extreme"]), conf=st.floats(-1, 2),
       ts=st.floats(0, 4_102_444_800), duration=st.floats(0, 86_400),
       meas=st.dictionaries(st.text("abcdefghij_", min_size=1, max_size=12),
                            st.floats(allow_nan=True, allow_infinity=True), max_size=5),
       level=st.none() | st.sampled_from(["free", "medium", "heavy", "covered"]),
       boxes=st.lists(st.tuples(_unit, _unit, _unit, _unit), max_size=4), test=st.booleans(),
       cam_id=st.from_regex(r"\A[A-Za-z0-9_-]{1,64}\Z"), with_evidence=st.booleans())
def test_any_event_builds_a_schema_valid_payload(etype, state, seq, severity, conf, ts, duration, meas,
                                                 level, boxes, test, cam_id, with_evidence):
    ev = IncidentEvent(incident_id=incident_id(cam_id, etype, ts), camera_id=cam_id, type=etype, state=state,
                       seq=seq, severity=severity, confidence=conf, measurements=meas, level=level,
                       boxes=tuple(boxes), frame_ts=ts + duration, started_ts=ts,
                       ended_ts=ts + duration if state == "end" else None)
    cam = CameraConfig(id=cam_id)
    p = build_alert(ev, cam, frame_bucket="frames", frame_key=frame_key(cam_id, ts + duration),
                    evidence=evidence() if with_evidence else None, test=test, worker="w-1",
                    detected_at=datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=duration))
    doc = validate_alert_json(p.to_json())
    assert doc["incident_id"] == ev.incident_id and doc["seq"] == seq and doc["test"] is test
    assert 0.0 <= doc["confidence"] <= 1.0
    assert all(math.isfinite(v) for v in doc["measurements"].values())
    assert (doc["ended_at"] is None) == (state != "end")
    assert alert_topic("citywatch", etype, cam_id).endswith(f"/{etype}/{cam_id}")
