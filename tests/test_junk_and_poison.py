"""Objects that must never stall a camera, through the real worker (SeaweedFS S3 via the minio client,
real Mosquitto): non-frame objects in a camera's folder, and frames that make analysis raise."""

from __future__ import annotations

import io
import logging
import time
import uuid

import cv2
import numpy as np

from pipeline.processing.analysis import FrameAnalyzer
from pipeline.processing.runner import WatchSession
from sample_media import load_scene
from tests.faults_support import frame_store, write_config

DAY = 86400.0
QUIET = load_scene("quiet")


def _config(tmp_path, s3_server, mqtt_broker, cameras, **kw):
    tag = uuid.uuid4().hex[:8]
    return write_config(tmp_path, s3_url=s3_server.url, mqtt_url=mqtt_broker, prefix=f"cwjunk-{tag}",
                        cameras=cameras, bucket=f"junk-{tag}", worker_name=f"junk-{tag}", **kw)


def _put_raw(minio_client, bucket: str, key: str, data: bytes = b"junk") -> None:
    minio_client.put_object(bucket, key, io.BytesIO(data), len(data), content_type="image/jpeg")


def _put_frames(store, camera: str, start: float, n: int, offset: int = 0) -> list[str]:
    return [store.put_frame(camera, start + i / 2, QUIET[offset + i][1], test=True) for i in range(n)]


def test_junk_objects_never_become_the_checkpoint_and_never_stall_the_camera(
        s3_server, minio_client, mqtt_broker, tmp_path, caplog):
    _, config = _config(tmp_path, s3_server, mqtt_broker, ["cam-j"], worker={"max_frames_per_batch": 200})
    store = frame_store(config)
    bucket = config.s3.frames_bucket
    start = time.time() - 2 * DAY
    first = _put_frames(store, "cam-j", start, 5)
    day_folder = first[0].rsplit("/", 1)[0]
    # 250 (> max_frames_per_batch) junk objects after that day's frames, and one after every frame key.
    junk = [f"{day_folder}/junk-{i:03d}.jpg" for i in range(250)]
    for key in junk + ["cam-j/snapshot.jpg"]:
        _put_raw(minio_client, bucket, key)
    caplog.set_level(logging.INFO, logger="pipeline")
    with WatchSession(config) as session:
        one = session.cycle()
        state = session.worker.state
        assert one.errors == [] and one.frames == 5, one.as_dict()
        assert state.checkpoint("cam-j") == first[-1], "the checkpoint is always a frame key"

        second = _put_frames(store, "cam-j", start + DAY, 5, offset=5)  # the next day: after the junk
        two = session.cycle()
        assert two.errors == [] and two.frames == 5, two.as_dict()
        assert state.checkpoint("cam-j") == second[-1]

        third = _put_frames(store, "cam-j", start + DAY + 10, 5, offset=10)  # before cam-j/snapshot.jpg
        three = session.cycle()
        assert three.errors == [] and three.frames == 5, three.as_dict()
        assert state.checkpoint("cam-j") == third[-1]
        assert state.counters()["frames_processed"] == 15

    assert one.skipped.get("bad_key") == 251 and two.skipped == {} and three.skipped == {}
    text = caplog.text
    assert "cam-j/snapshot.jpg" in text and f"{day_folder}/junk-249.jpg" in text
    assert text.count(f"skipped object '{day_folder}/junk-007.jpg'") == 1, "each junk object is reported once"
    assert "does not match" in text


def _flat_jpeg(width: int, height: int) -> bytes:
    return cv2.imencode(".jpg", np.full((height, width, 3), 128, np.uint8))[1].tobytes()


def test_poison_frames_are_skipped_with_a_reason_and_never_block_the_camera(
        s3_server, minio_client, mqtt_broker, tmp_path, caplog):
    _, config = _config(tmp_path, s3_server, mqtt_broker, ["cam-p"])
    store = frame_store(config)
    start = time.time() - 300
    before = _put_frames(store, "cam-p", start, 4)
    poison = [store.put_frame("cam-p", start + 2.1 + i / 10, _flat_jpeg(w, h), test=True)
              for i, (w, h) in enumerate([(1, 1), (65500, 10), (8000, 300)])]
    after = _put_frames(store, "cam-p", start + 3, 4, offset=4)
    caplog.set_level(logging.WARNING, logger="pipeline")
    with WatchSession(config) as session:
        one = session.cycle()
        again = session.cycle()
        state = session.worker.state
        assert state.checkpoint("cam-p") == after[-1], "the checkpoint moves past poison frames"
        counters = state.counters()
    assert one.errors == [] and again.errors == [], (one.as_dict(), again.as_dict())
    assert (again.frames, again.skipped) == (0, {}), "poison frames are not retried"
    skipped = sum(one.skipped.values())
    assert one.frames + skipped == len(before + poison + after) and set(one.skipped) <= {"analysis_error"}
    assert counters["frames_processed"] + counters.get("frames_skipped", 0) == len(before + poison + after)
    # Today's detectors refuse all three sizes; whatever they do, never a stall, and each skip is logged.
    logged = [k for k in poison if f"skipped frame {k}: analysis of" in caplog.text]
    assert len(logged) == one.skipped.get("analysis_error", 0)


def test_any_exception_while_analysing_one_frame_skips_only_that_frame(
        s3_server, minio_client, mqtt_broker, tmp_path, caplog, monkeypatch):
    _, config = _config(tmp_path, s3_server, mqtt_broker, ["cam-x"])
    store = frame_store(config)
    start = time.time() - 300
    keys = _put_frames(store, "cam-x", start, 8)
    poison_ts = start + 1.5  # the fourth frame
    analyze = FrameAnalyzer.analyze

    def explode_on_one(self, frame, ts):
        if abs(ts - poison_ts) < 1e-3:
            raise RuntimeError("detector bug on this frame")
        return analyze(self, frame, ts)

    monkeypatch.setattr(FrameAnalyzer, "analyze", explode_on_one)
    caplog.set_level(logging.WARNING, logger="pipeline")
    with WatchSession(config) as session:
        one = session.cycle()
        again = session.cycle()
        assert session.worker.state.checkpoint("cam-x") == keys[-1]
        counters = session.worker.state.counters()
    assert one.errors == [] and (one.frames, dict(one.skipped)) == (7, {"analysis_error": 1}), one.as_dict()
    assert (again.frames, again.skipped) == (0, {})
    assert counters["frames_processed"] == 7 and counters["frames_skipped"] == 1
    assert f"skipped frame {keys[3]}: analysis of" in caplog.text
    assert "RuntimeError: detector bug on this frame" in caplog.text
