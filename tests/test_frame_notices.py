"""New-frame notices (pipeline/frames/notices.py): the S3 event record they carry, the cameras a
worker takes from them, and, against real SeaweedFS and Mosquitto, a frame processed on its notice
long before the next poll, while forged or lost notices cost nothing but a listing."""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid

import pytest

from pipeline.config.endpoints import MqttSettings
from pipeline.delivery.mqtt import make_client
from pipeline.frames.notices import (
    MIN_GAP_S,
    FrameNotices,
    NoticeError,
    notice_keys,
    notice_payload,
    notice_topic,
    start_notice_publisher,
)
from pipeline.processing.runner import WatchSession
from sample_media import load_scene
from tests.faults_support import frame_store, write_config

KEY = "cam-01/2026/12/08/20261208T031500.250Z.jpg"
#: A record as MinIO publishes it (trimmed): the key URL-encoded, the bucket named.
MINIO_RECORD = {
    "EventName": "s3:ObjectCreated:Put", "Key": f"frames/{KEY}",
    "Records": [{"eventVersion": "2.0", "eventSource": "minio:s3", "awsRegion": "",
                 "eventTime": "2026-12-08T03:15:00.300Z", "eventName": "s3:ObjectCreated:Put",
                 "s3": {"s3SchemaVersion": "1.0", "configurationId": "Config",
                        "bucket": {"name": "frames", "arn": "arn:aws:s3:::frames"},
                        "object": {"key": KEY.replace("/", "%2F"), "size": 120511,
                                   "contentType": "image/jpeg", "sequencer": "187F1C2B3C4D5E6F"}}}],
}


def test_a_minio_record_and_our_own_notice_name_the_same_key():
    assert notice_keys(json.dumps(MINIO_RECORD).encode(), "frames") == [KEY]
    assert notice_keys(notice_payload("frames", KEY, 120511), "frames") == [KEY]
    odd = "cam-01/2026/12/08/a b+c%.jpg"  # junk keys round-trip too: the listing reports them
    assert notice_keys(notice_payload("frames", odd, 1), "frames") == [odd]


@pytest.mark.parametrize("payload, reason", [
    (b"not json", "not an S3 event record"),
    (b'{"Records": 3}', "not an S3 event record"),
    (b'{"Records": [{"eventName": "s3:ObjectCreated:Put"}]}', "KeyError"),
    (b"{" + b" " * 70_000 + b"}", "at most"),
])
def test_a_message_that_is_no_event_record_is_refused_with_the_reason(payload, reason):
    with pytest.raises(NoticeError, match=reason):
        notice_keys(payload, "frames")


def test_other_buckets_and_removals_name_no_frame():
    other = notice_payload("alerts", KEY, 10)
    removed = json.loads(notice_payload("frames", KEY, 10))
    removed["Records"][0]["eventName"] = "s3:ObjectRemoved:Delete"
    assert notice_keys(other, "frames") == []
    assert notice_keys(json.dumps(removed).encode(), "frames") == []


def _notices(cameras=("cam-01", "cam-02")) -> FrameNotices:
    """A subscriber that is never started: its handler is fed directly."""
    return FrameNotices(MqttSettings(topic_prefix="cw"), "notices-test", "frames", cameras)


def _counted() -> dict[str, float]:
    from prometheus_client import REGISTRY

    return {r: REGISTRY.get_sample_value("citywatch_frame_notices_total", {"result": r}) or 0.0
            for r in ("used", "ignored", "bad")}


def test_a_notice_hands_out_its_camera_once_and_only_for_this_shard(caplog):
    before = _counted()
    notices = _notices()
    notices._handle("cw/frames/new", notice_payload("frames", "cam-03/2026/12/08/20261208T031500.250Z.jpg", 1), False)
    notices._handle("cw/frames/new", notice_payload("frames", "cam-01#/../cam-02/x.jpg", 1), False)  # hostile
    with caplog.at_level(logging.WARNING, "pipeline.frames.notices"):
        notices._handle("cw/frames/new", b"\x00garbage", False)
    assert notices.take(0.05) == []
    assert (notices.received, notices.ignored, notices.bad) == (2, 2, 1)
    assert "ignoring frame notice on cw/frames/new: not an S3 event record" in caplog.text
    notices._handle("cw/frames/new", notice_payload("frames", KEY, 1), False)
    notices._handle("cw/frames/new", notice_payload("frames", KEY, 1), False)  # a repeat: one batch
    assert notices.take(1.0) == ["cam-01"]
    assert notices.take(0.05) == []
    assert notices.fresh("cam-01", 5.0) and not notices.fresh("cam-02", 5.0)
    after = _counted()  # the worker's /metrics shows them (citywatch_frame_notices_total)
    assert {r: after[r] - before[r] for r in after} == {"used": 2, "ignored": 2, "bad": 1}


def test_a_camera_is_taken_again_no_sooner_than_the_minimum_gap():
    notices = _notices()
    notices._handle("t", notice_payload("frames", KEY, 1), False)
    assert notices.take(1.0) == ["cam-01"]
    notices._handle("t", notice_payload("frames", KEY, 1), False)
    started = time.monotonic()
    assert notices.take(2.0) == ["cam-01"]
    assert MIN_GAP_S - 0.02 <= time.monotonic() - started < MIN_GAP_S + 0.5


def test_take_wakes_as_soon_as_a_notice_arrives():
    notices = _notices()
    timer = threading.Timer(0.2, notices._handle, ("t", notice_payload("frames", KEY, 1), False))
    started = time.monotonic()
    timer.start()
    assert notices.take(5.0) == ["cam-01"]
    assert time.monotonic() - started < 1.5


def _session(tmp_path, s3_server, mqtt_broker, **worker):
    tag = uuid.uuid4().hex[:8]
    _, config = write_config(tmp_path, s3_url=s3_server.url, mqtt_url=mqtt_broker, prefix=f"cwnote-{tag}",
                             cameras=["cam-a", "cam-b"], bucket=f"note-{tag}", worker_name=f"note-{tag}",
                             worker={"poll_interval_s": 30.0, **worker})
    return config


def _run_slice(session: WatchSession, seconds: float) -> threading.Thread:
    thread = threading.Thread(target=session.run_slice, args=(seconds,), daemon=True)
    thread.start()
    return thread


def _wait_for(predicate, timeout_s: float) -> float | None:
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        if predicate():
            return time.monotonic() - started
        time.sleep(0.02)
    return None


def test_a_frame_is_processed_on_its_notice_not_at_the_next_poll(s3_server, mqtt_broker, tmp_path):
    config = _session(tmp_path, s3_server, mqtt_broker)
    store = frame_store(config)
    publisher = start_notice_publisher(config.mqtt, f"cams-{uuid.uuid4().hex[:6]}", config.s3.frames_bucket)
    assert publisher is not None
    store.on_put = publisher
    jpeg = load_scene("fire")[0][1]
    try:
        with WatchSession(config, threads=2) as session:
            assert session._notices is not None and session._notices.wait_subscribed(10)
            thread = _run_slice(session, 6.0)  # the first cycle lists both cameras, then polls in 30 s
            time.sleep(0.5)
            key = store.put_frame("cam-a", time.time() - 1, jpeg, test=True)
            took = _wait_for(lambda: session.worker.state.checkpoint("cam-a") == key, 4.0)
            thread.join(10)
    finally:
        publisher.stop()
    assert took is not None, "the frame waited for the 30 s poll"
    assert took < 2.0
    assert publisher.published == 1


def test_forged_notices_cost_a_listing_and_a_frame_without_notice_is_found_by_the_sweep(
        s3_server, mqtt_broker, tmp_path, caplog):
    config = _session(tmp_path, s3_server, mqtt_broker, poll_interval_s=0.3, notice_sweep_s=2.0)
    store = frame_store(config)
    jpeg = load_scene("fire")[0][1]
    forger = make_client(config.mqtt, f"forger-{uuid.uuid4().hex[:6]}", clean_start=True, session_expiry_s=0)
    forger.loop_start()
    topic = notice_topic(config.mqtt.topic_prefix)
    try:
        with caplog.at_level(logging.WARNING, "pipeline.frames.notices"), WatchSession(config, threads=2) as session:
            notices = session._notices
            assert notices is not None and notices.wait_subscribed(10)
            thread = _run_slice(session, 7.0)
            # a notice for a frame that does not exist, garbage, then one for cam-b: a listing each
            forger.publish(topic, notice_payload(config.s3.frames_bucket, "cam-a/2030/01/01/20300101T000000.000Z.jpg", 1))
            forger.publish(topic, b"{not json")
            forger.publish(topic, notice_payload(config.s3.frames_bucket, "cam-b/2026/12/08/20261208T000000.000Z.jpg", 1))
            assert _wait_for(lambda: notices.received >= 2 and notices.bad >= 1, 5.0) is not None
            # cam-b now has fresh notices, so the 0.3 s poll skips it until the 2 s sweep
            key = store.put_frame("cam-b", time.time() - 1, jpeg, test=True)  # no notice for this one
            took = _wait_for(lambda: session.worker.state.checkpoint("cam-b") == key, 5.0)
            thread.join(10)
            assert session.worker.state.checkpoint("cam-a") is None  # nothing stored for cam-a
    finally:
        forger.disconnect()
        forger.loop_stop()
    assert took is not None, "a frame without a notice was never found"
    assert "not an S3 event record" in caplog.text
