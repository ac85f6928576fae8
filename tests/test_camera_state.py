"""Detector state and camera health carried from one worker process (session) to the next through
the state store (real SeaweedFS S3 and Mosquitto). The deployment-level check, three windows of a real
Prefect process worker, is `test_deployment::test_camera_state_survives_three_windows_*`."""

from __future__ import annotations

import logging
import time
import uuid

import cv2
import numpy as np
import yaml

from pipeline.config.settings import config_from_dict
from pipeline.processing.runner import WatchSession
from pipeline.state.cameras import detectors_key
from tests.faults_support import frame_store, write_config

OFF = {"enabled": False}


def _config(tmp_path, s3_server, mqtt_broker, **kw):
    tag = uuid.uuid4().hex[:8]
    path, config = write_config(tmp_path, s3_url=s3_server.url, mqtt_url=mqtt_broker, prefix=f"cwstate-{tag}",
                                cameras=["cam-s"], bucket=f"state-{tag}", worker_name=f"state-{tag}",
                                alerts={"debounce_hits": 2, "debounce_window": 3, "end_after_s": 60}, **kw)
    data = yaml.safe_load(path.read_text())
    data["cameras"][0]["detectors"] = {"fire": OFF, "smoke": OFF, "flood": OFF, "congestion": OFF}
    return config_from_dict(data, env={})


def _frozen_frames(store, start: float, first: int, last: int) -> None:
    frame = np.random.default_rng(7).integers(0, 255, (180, 320, 3), dtype=np.uint8)
    jpeg = cv2.imencode(".jpg", frame)[1].tobytes()
    for i in range(first, last):
        store.put_frame("cam-s", start + i, jpeg, test=True)


def _obstructed(session) -> list[str]:
    rows = session.worker.state.pending(10_000)
    return [r.topic for r in rows if "/alerts/camera_obstructed/" in r.topic]


def test_detector_state_carries_over_to_the_next_session(s3_server, mqtt_broker, tmp_path):
    config = _config(tmp_path, s3_server, mqtt_broker)
    store = frame_store(config)
    start = time.time() - 300
    _frozen_frames(store, start, 0, 40)  # 40 s of one picture; frozen takes 60 s
    with WatchSession(config) as first:
        assert first.cycle().alerts == 0
    assert first.worker.state.saved_value(detectors_key("cam-s"))
    _frozen_frames(store, start, 40, 80)
    with WatchSession(config) as second:
        second.worker.publisher.stop()  # keep the alerts in the outbox to look at them
        stats = second.cycle()
        assert stats.frames == 40 and _obstructed(second), "the frozen clock started again from zero"


def test_changed_detector_settings_or_a_broken_blob_start_fresh(s3_server, mqtt_broker, tmp_path, caplog):
    config = _config(tmp_path, s3_server, mqtt_broker)
    store = frame_store(config)
    _frozen_frames(store, time.time() - 300, 0, 10)
    with WatchSession(config) as session:
        session.cycle()
    camera = config.cameras[0]
    tuned = camera.model_copy(update={"detectors": camera.detectors.model_copy(
        update={"obstruction": camera.detectors.obstruction.model_copy(update={"sensitivity": 0.9})})})
    caplog.set_level(logging.INFO, logger="pipeline.state.cameras")
    with WatchSession(config.model_copy(update={"cameras": [tuned]})) as session:
        fresh = session.worker.analyzer(tuned).detectors
        assert fresh[0].settings.sensitivity == 0.9
    assert "from other detector code or settings; starting fresh" in caplog.text
    session.worker.state.save_values({detectors_key("cam-s"): b"x" * 64 + b"\nnot zlib"})
    with WatchSession(config) as session:
        assert session.worker.analyzer(camera).detectors  # fresh detectors, no exception


def test_an_open_camera_offline_incident_is_ended_by_the_next_session(s3_server, mqtt_broker, tmp_path):
    config = _config(tmp_path, s3_server, mqtt_broker)
    config = config.model_copy(update={"health": config.health.model_copy(
        update={"stale_after_s": 0.5, "offline_after_s": 1.0})})
    store = frame_store(config)
    start = time.time() - 300
    _frozen_frames(store, start, 0, 3)
    with WatchSession(config) as first:
        first.worker.publisher.stop()
        first.cycle()
        time.sleep(1.3)
        assert first.cycle().alerts == 1  # camera_offline start
        outage = [r for r in first.worker.state.pending(100) if "/camera_offline/" in r.topic]
    _frozen_frames(store, start, 3, 4)
    with WatchSession(config) as second:
        second.worker.publisher.stop()
        second.cycle()
        ends = [r for r in second.worker.state.pending(100) if "/camera_offline/" in r.topic]
    assert len(outage) == 1 and len(ends) == 2  # the start still queued, then its end
    assert b'"state":"end"' in ends[1].payload
    started, ended = (yaml.safe_load(r.payload)["incident_id"] for r in ends)
    assert started == ended
