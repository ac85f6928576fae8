"""Camera health: online/stale/offline transitions, camera_offline incidents, blips, restart."""

from __future__ import annotations

import json

import pytest

from pipeline.alerts.payload import build_alert, validate_alert_json
from pipeline.config.settings import CameraConfig, HealthSettings
from pipeline.state.health import CameraHealth

NOW = 1_763_844_000.0
SETTINGS = HealthSettings(stale_after_s=30, offline_after_s=120)


def frames(health: CameraHealth, cam: str, start: float, seconds: float, fps: float = 2.0):
    events = []
    for i in range(int(seconds * fps)):
        t = start + i / fps
        events += health.frame_seen(cam, t, now=t + 0.2)
    return events


def test_transitions_and_offline_incident_lifecycle():
    h = CameraHealth(SETTINGS)
    assert frames(h, "cam-1", NOW, 10) == []
    last = NOW + 9.5 + 0.2
    assert h.statuses(last + 1)["cam-1"]["state"] == "online"
    assert h.statuses(last + 1)["cam-1"]["fps"] == pytest.approx(2.0)
    assert h.state_of("cam-1", last + 31) == "stale"
    assert h.check(last + 119) == []
    started = h.check(last + 125)
    assert [(e.type, e.state, e.seq, e.severity) for e in started] == [("camera_offline", "start", 1, "moderate")]
    assert started[0].started_ts == pytest.approx(last + 120)  # not when check happened to run
    assert h.check(last + 300) == []  # one incident, not one per check
    status = h.statuses(last + 300)["cam-1"]
    assert status["state"] == "offline" and status["fps"] == 0.0 and status["incident_id"] == started[0].incident_id
    resumed = frames(h, "cam-1", last + 400, 5)
    assert [(e.state, e.seq, e.incident_id) for e in resumed] == [("end", 2, started[0].incident_id)]
    assert resumed[0].ended_ts == pytest.approx(last + 400.2)
    assert resumed[0].measurements["silent_s"] == pytest.approx(400.2 - 0.0, abs=0.5)
    assert h.statuses(last + 403)["cam-1"]["state"] == "online"


def test_short_blip_is_only_stale():
    h = CameraHealth(SETTINGS)
    frames(h, "cam-1", NOW, 10)
    events = []
    for t in range(int(NOW + 10), int(NOW + 100), 5):  # a 90 s gap, checked every 5 s
        events += h.check(t)
    assert h.state_of("cam-1", NOW + 100) == "stale"
    events += frames(h, "cam-1", NOW + 100, 10)
    assert events == []


def test_registered_camera_never_heard_of_goes_offline():
    h = CameraHealth(SETTINGS)
    h.register(["cam-a", "cam-b"], now=NOW)
    frames(h, "cam-a", NOW, 200)
    events = h.check(NOW + 200)
    assert [(e.camera_id, e.state) for e in events] == [("cam-b", "start")]
    assert h.statuses(NOW + 200)["cam-b"]["last_frame_time"] is None
    with pytest.raises(ValueError, match="camera id"):
        h.register(["bad/id"], now=NOW)
    # per-camera form: an unknown camera is watched from its first check
    assert h.check("cam-c", NOW + 200) == [] and h.check("cam-a", NOW + 200) == []
    assert [e.camera_id for e in h.check("cam-c", NOW + 320)] == ["cam-c"]


def test_restart_keeps_open_outage_and_does_not_blame_cameras_for_worker_downtime():
    h = CameraHealth(SETTINGS)
    frames(h, "cam-1", NOW, 5)
    frames(h, "cam-2", NOW + 100, 90)
    h.register(["cam-3"], now=NOW + 150)
    [start] = h.check(NOW + 200)
    assert start.camera_id == "cam-1"
    state = json.loads(json.dumps(h.to_state()))
    # the worker was down 10 minutes; on restart cam-1's outage stays open (no second start),
    # the others get offline_after_s from the restart before being judged
    again = CameraHealth.from_state(SETTINGS, state, now=NOW + 800)
    assert again.check(NOW + 801) == []
    ended = again.frame_seen("cam-1", NOW + 802, now=NOW + 802)
    assert [(e.state, e.incident_id) for e in ended] == [("end", start.incident_id)]
    later = again.check(NOW + 800 + 121)
    assert sorted(e.camera_id for e in later) == ["cam-2", "cam-3"]
    with pytest.raises(ValueError, match="not valid"):
        CameraHealth.from_state(SETTINGS, {"cameras": {"x": {"registered_ts": "soon"}}})


def test_offline_alerts_build_schema_valid_payloads():
    h = CameraHealth(SETTINGS)
    h.register(["cam-1"], now=NOW)
    start = h.check(NOW + 130)[0]
    end = h.frame_seen("cam-1", NOW + 140, now=NOW + 140)[0]
    cam = CameraConfig(id="cam-1", name="Gate")
    for ev, key in [(start, None), (end, "cam-1/2025/11/22/20251122T204100.000Z.jpg")]:
        p = build_alert(ev, cam, frame_bucket="frames", frame_key=key, evidence=None, test=False, worker="w")
        validate_alert_json(p.to_json())
    json.dumps(h.statuses(NOW + 140))  # status payloads are JSON-able
