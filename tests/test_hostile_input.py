"""Hostile or broken input through the real worker (SeaweedFS S3 via the minio client, real Mosquitto):
each bad object is counted, logged with its reason and skipped, and the good frames around it
still raise their alerts."""

from __future__ import annotations

import io
import logging
import time
import uuid

import cv2
import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from pipeline.app.cli import app
from pipeline.config.settings import ConfigError, config_from_dict
from pipeline.delivery.mqtt import Subscriber
from pipeline.frames.keys import frame_key
from pipeline.frames.store import BadFrame, decode_frame
from pipeline.processing.runner import WatchSession, build_worker
from sample_media import load_scene
from tests.faults_support import Inbox, frame_store, put_scene, write_config

FIRE_JPEG = load_scene("fire")[0][1]


def _patch_sof_size(data: bytes, width: int, height: int) -> bytes:
    sof = data.index(b"\xff\xc0")
    return data[:sof + 5] + height.to_bytes(2, "big") + width.to_bytes(2, "big") + data[sof + 9:]


BAD_FRAMES = {  # name -> (bytes, fragment of the logged reason)
    "zero_byte": (b"", "empty object (0 bytes)"),
    "truncated": (FIRE_JPEG[: len(FIRE_JPEG) // 2], "truncated JPEG"),
    "png": (cv2.imencode(".png", np.zeros((8, 8, 3), np.uint8))[1].tobytes(), "not a JPEG: it is a PNG image"),
    "text": (b"<html>403 Forbidden</html>\n", "not a JPEG: it looks like text"),
    "bomb": (_patch_sof_size(FIRE_JPEG, 30000, 30000), "decompression bomb refused: header says 30000x30000"),
}


def _config(tmp_path, s3_server, mqtt_broker, cameras, **kw):
    tag = uuid.uuid4().hex[:8]
    return write_config(tmp_path, s3_url=s3_server.url, mqtt_url=mqtt_broker, prefix=f"cwhost-{tag}",
                        cameras=cameras, bucket=f"hostile-{tag}", worker_name=f"hostile-{tag}", **kw)


def _put_raw(minio_client, bucket: str, key: str, data: bytes) -> None:
    minio_client.put_object(bucket, key, io.BytesIO(data), len(data), content_type="image/jpeg")


def test_bad_objects_are_counted_logged_and_skipped_while_fire_still_alerts(
        s3_server, minio_client, mqtt_broker, tmp_path, caplog):
    _, config = _config(tmp_path, s3_server, mqtt_broker, ["cam-h"])
    store = frame_store(config)
    bucket = config.s3.frames_bucket
    start = time.time() - 300
    good = put_scene(store, "cam-h", "fire", start)
    # Bad objects under contract keys, spread between the good frames (0.1 s after frame i).
    for i, (data, _) in zip((3, 10, 20, 30, 40), BAD_FRAMES.values()):
        _put_raw(minio_client, bucket, frame_key("cam-h", start + i / 2 + 0.1, test=True), data)
    # A repeated frame: the bytes of frame 25 again, 0.2 s later.
    repeat_key = store.put_frame("cam-h", start + 12.5 + 0.2, load_scene("fire")[25][1], test=True)
    # A live key at the same instant as frame 44: "...Z.jpg" sorts before "...Z.test.jpg", so the
    # twin is processed and frame 44, not newer than it, is skipped as out of order.
    twin = store.put_frame("cam-h", start + 22.0, FIRE_JPEG, test=False)
    # Keys outside the contract under the camera's prefix, and an unknown camera.
    for junk in ("cam-h/2026/01/01/notes.txt", "cam-h/snapshot.jpg"):
        _put_raw(minio_client, bucket, junk, b"junk")
    _put_raw(minio_client, bucket, frame_key("nope", start + 1, test=True), FIRE_JPEG)

    inbox = Inbox()
    sub = Subscriber(config.mqtt, f"sub-{config.worker.name}", [f"{config.mqtt.topic_prefix}/#"], inbox).start()
    caplog.set_level(logging.INFO, logger="pipeline")
    try:
        assert sub.wait_subscribed(10)
        with WatchSession(config) as session:
            stats = session.cycle()
            again = session.cycle()
            assert session.drain(10) >= 0 and session.worker.state.outbox_size() == 0
            counters = session.worker.state.counters()
            checkpoint = session.worker.state.checkpoint("cam-h")
            unknown = session.worker.process_camera("nope")
        assert inbox.wait_for(lambda i: any(a["type"] == "fire" and a["state"] == "start" for a in i.alerts()), 15)
    finally:
        sub.stop()

    assert stats.frames == len(good) + 1, stats.as_dict()  # good frames - frame 44 + twin + repeat
    assert stats.repeated == 1
    assert stats.skipped == {"bad_frame": 5, "bad_key": 2, "out_of_order": 1}, stats.skipped
    assert (again.frames, again.skipped) == (0, {}), "bad objects are not retried forever"
    assert counters["frames_processed"] == len(good) + 1
    assert counters["frames_skipped"] == 6  # bad_key objects are stepped over, not frames
    assert checkpoint == max(good + [repeat_key, twin]), "the checkpoint is always a frame key"
    assert unknown.error == "camera 'nope' is not in the registry" and unknown.frames == 0

    text = caplog.text
    for name, (_, reason) in BAD_FRAMES.items():
        assert reason in text, f"{name}: reason {reason!r} not logged"
    assert "cam-h/snapshot.jpg" in text and "notes.txt" in text
    assert f"{good[44]} is not newer than the last processed one" in text
    assert "1 frame(s) byte-identical to the previous one" in text
    alerts = inbox.alerts()
    assert {a["camera"]["id"] for a in alerts} == {"cam-h"}
    processed = set(good) - {good[44]} | {repeat_key, twin}
    assert {a["frame"]["key"] for a in alerts if a.get("frame")} <= processed


def test_unknown_camera_is_refused_clearly(s3_server, mqtt_broker, tmp_path):
    _, config = _config(tmp_path, s3_server, mqtt_broker, ["cam-k"])
    with pytest.raises(ValueError, match="cameras not in the registry: nope"):
        WatchSession(config, ["cam-k", "nope"])


def test_future_frames_are_held_back_and_late_frames_do_not_move_the_checkpoint(
        s3_server, mqtt_broker, tmp_path, caplog):
    _, config = _config(tmp_path, s3_server, mqtt_broker, ["cam-t"], worker={"max_future_s": 60})
    store = frame_store(config)
    now = [time.time()]
    frames = load_scene("quiet")
    keys = [store.put_frame("cam-t", now[0] - 100 + i, jpeg, test=True) for i, (_, jpeg) in enumerate(frames[:10])]
    future = store.put_frame("cam-t", now[0] + 1000, frames[10][1], test=True)
    worker = build_worker(config)
    worker.clock = lambda: now[0]
    caplog.set_level(logging.WARNING, logger="pipeline")
    with WatchSession(config, worker=worker) as session:
        first = session.cycle()
        assert (first.frames, first.skipped) == (10, {"future_time": 1})
        assert worker.state.checkpoint("cam-t") == keys[-1], "checkpoint must not jump over a held-back frame"
        assert "stamped 1000 s in the future; held back" in caplog.text

        store.put_frame("cam-t", now[0] - 95, frames[11][1], test=True)  # arrives late: older than the checkpoint
        late = session.cycle()
        assert late.frames == 0 and worker.state.checkpoint("cam-t") == keys[-1]

        now[0] += 1000  # the future frame's time has come
        due = session.cycle()
        assert (due.frames, due.skipped) == (1, {})
        assert worker.state.checkpoint("cam-t") == future


@pytest.mark.parametrize("content, field", [
    ({"worker": {"max_frames_per_batch": "many"}}, "worker.max_frames_per_batch"),
    ({"cameras": [{"id": "c1", "name": "C", "colour": "red",
                   "location": {"lat": 1, "lon": 2, "district": "d"}}]}, "cameras.0.colour"),
    ({"mqtt": {"url": "mqtt://h:1883", "keepalive_s": "soon"}}, "mqtt.keepalive_s"),
])
def test_cli_watch_with_bad_config_exits_2_naming_the_field(tmp_path, content, field):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(content))
    result = CliRunner().invoke(app, ["watch", "--config", str(path), "--once"])
    assert result.exit_code == 2, result.output
    assert field in result.output
    assert "Traceback" not in result.output


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cut=st.integers(0, len(FIRE_JPEG)), flips=st.lists(st.tuples(st.integers(0, len(FIRE_JPEG) - 1),
                                                                    st.integers(0, 255)), max_size=8))
def test_mangled_jpegs_decode_or_raise_bad_frame_only(cut, flips):
    data = bytearray(FIRE_JPEG[:cut] if cut else FIRE_JPEG)
    for pos, value in flips:
        if pos < len(data):
            data[pos] = value
    try:
        image = decode_frame(bytes(data), max_pixels=4_000_000, max_width=320)
    except BadFrame as exc:
        assert exc.reason
    else:
        assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3


@given(junk=st.binary(max_size=300))
def test_arbitrary_bytes_never_escape_as_other_errors(junk):
    try:
        decode_frame(junk, max_pixels=4_000_000)
    except BadFrame as exc:
        assert exc.reason


_NUMERIC_WORKER_FIELDS = ["poll_interval_s", "window_s", "max_frames_per_batch", "max_frame_bytes",
                          "max_frame_pixels", "max_future_s"]


@given(field=st.sampled_from(_NUMERIC_WORKER_FIELDS),
       value=st.one_of(st.text(alphabet="abcxyz", min_size=1, max_size=8), st.lists(st.integers(), max_size=2),
                       st.dictionaries(st.text(max_size=3), st.integers(), max_size=2)))
def test_wrong_types_in_config_are_named_by_path(field, value):
    with pytest.raises(ConfigError) as info:
        config_from_dict({"worker": {field: value}}, env={})
    assert f"worker.{field}" in str(info.value)
