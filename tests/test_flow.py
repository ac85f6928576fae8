"""The spine, for real: frames put into S3 (SeaweedFS, real minio client) become alerts at an MQTT
subscriber (real Mosquitto) through the Prefect `watch` flow (Prefect's test harness)."""

from __future__ import annotations

import hashlib
import time
import urllib.request
import uuid

import pytest
import yaml

from pipeline.alerts.payload import validate_alert_json
from pipeline.config.settings import config_from_dict
from pipeline.delivery.mqtt import Subscriber
from pipeline.frames.decode import jpeg_dimensions
from pipeline.frames.store import FrameStore, make_minio
from sample_media import load_scene
from tests.faults_support import Inbox, incidents_consistent

pytestmark = [pytest.mark.slow, pytest.mark.integration]


def _write_config(tmp_path, s3_server, mqtt_url, prefix, cameras):
    data = {
        "s3": {"url": s3_server.url, "access_key": s3_server.access_key, "secret_key": s3_server.secret_key,
               "frames_bucket": f"frames-{prefix}", "alerts_bucket": f"alerts-{prefix}"},
        "mqtt": {"url": mqtt_url, "topic_prefix": prefix},
        "alerts": {"end_after_s": 5, "cap": {"enabled": True}},
        "worker": {"name": "test-worker", "state_dir": str(tmp_path / "state"), "max_frames_per_batch": 500},
        "cameras": [{"id": c, "name": f"Camera {c}", "location": {"lat": 10.98, "lon": 106.65, "district": "Thu Dau Mot"}}
                    for c in cameras],
    }
    path = tmp_path / "citywatch.yaml"
    path.write_text(yaml.safe_dump(data))
    return path, config_from_dict(data, env={})


def _put_scene(store: FrameStore, camera: str, scene: str, start: float, test: bool = True) -> int:
    frames = load_scene(scene)
    for offset, jpeg in frames:
        store.put_frame(camera, start + offset, jpeg, test=test)
    return len(frames)


def test_frames_in_s3_become_alerts_on_mqtt(prefect_harness, s3_server, mqtt_broker, tmp_path):
    from flows.watch import close_sessions, watch

    prefix = f"cwtest-{uuid.uuid4().hex[:8]}"
    config_path, config = _write_config(tmp_path, s3_server, mqtt_broker, prefix,
                                        ["cam-fire", "cam-flood", "cam-traffic", "cam-quiet"])
    store = FrameStore(make_minio(config.s3), config.s3.frames_bucket)
    store.ensure_bucket()
    start = time.time() - 120  # finished scenes: their incidents end within the run
    for camera in config.cameras:
        _put_scene(store, camera.id, camera.id.removeprefix("cam-"), start)

    inbox = Inbox()
    sub = Subscriber(config.mqtt, f"sub-{prefix}", [f"{prefix}/#"], inbox, clean_start=True).start()
    try:
        assert sub.wait_subscribed(10)
        result = watch(config_path=str(config_path), window_s=15)
        assert result["frames"] == sum(len(load_scene(s)) for s in ("fire", "flood", "traffic", "quiet"))
        assert inbox.wait_for(lambda i: len(i.alerts()) >= result["alerts"], 30)
    finally:
        sub.stop()
        close_sessions()

    alerts = inbox.alerts()
    assert not incidents_consistent(alerts)
    for alert in alerts:
        validate_alert_json(alert)
        assert alert["test"] is True
        assert alert["camera"]["id"].startswith("cam-")
    starts = {(a["camera"]["id"], a["type"]) for a in alerts if a["state"] == "start"}
    assert ("cam-fire", "fire") in starts
    assert ("cam-flood", "flood") in starts
    assert ("cam-traffic", "congestion") in starts
    assert not [a for a in alerts if a["camera"]["id"] == "cam-quiet"], "quiet street raised alerts"

    fire = [a for a in alerts if a["camera"]["id"] == "cam-fire" and a["type"] == "fire"]
    assert len({a["incident_id"] for a in fire}) == 1, "one fire incident, not several"
    assert [a["seq"] for a in fire] == list(range(1, len(fire) + 1))
    assert fire[0]["state"] == "start" and fire[-1]["state"] == "end"
    first = fire[0]
    assert first["frame"]["key"].startswith("cam-fire/") and first["frame"]["key"].endswith(".test.jpg")
    with urllib.request.urlopen(first["evidence"]["url"], timeout=10) as resp:
        snapshot = resp.read()
    assert hashlib.sha256(snapshot).hexdigest() == first["evidence"]["sha256"]
    # Detectors see 320 px; the operator's snapshot is decoded again at the scene's full 640 px.
    assert jpeg_dimensions(snapshot) == (640, 360)
    cap_topics = [t for t, _ in inbox.messages if "/cap/" in t]
    assert len(cap_topics) == len(alerts)
    statuses = [t for t, _ in inbox.messages if t.endswith("/status") and "/cameras/" in t]
    assert {t.split("/")[-2] for t in statuses} >= {"cam-fire", "cam-quiet"}


def test_second_pass_processes_only_new_frames(prefect_harness, s3_server, mqtt_broker, tmp_path):
    from flows.watch import close_sessions, watch

    prefix = f"cwtest-{uuid.uuid4().hex[:8]}"
    config_path, config = _write_config(tmp_path, s3_server, mqtt_broker, prefix, ["cam-q2"])
    store = FrameStore(make_minio(config.s3), config.s3.frames_bucket)
    store.ensure_bucket()
    n = _put_scene(store, "cam-q2", "quiet", time.time() - 200)
    try:
        first = watch(config_path=str(config_path), once=True)
        again = watch(config_path=str(config_path), once=True)
        m = _put_scene(store, "cam-q2", "quiet", time.time() - 100)
        third = watch(config_path=str(config_path), once=True)
    finally:
        close_sessions()
    assert (first["frames"], again["frames"], third["frames"]) == (n, 0, m)
