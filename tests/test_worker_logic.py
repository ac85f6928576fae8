"""The worker's logic over in-memory I/O (``tests/fakes.py``): no S3 server, no broker. The sample
scenes alarm, the checkpoint advances, a corrupt JPEG or a key outside the contract is skipped
and the camera keeps going, and alerts wait in the (SQLite) outbox while the publisher is down."""

from __future__ import annotations

import json
import logging
import time

import pytest

from pipeline.processing.worker import Worker
from pipeline.state.store import StateStore
from sample_media import load_scene
from tests.fakes import InMemoryFrameSource, InMemorySnapshotStore, RecordingPublisher
from tests.faults_support import put_scene, write_config

PREFIX = "cwlogic"


def make_worker(tmp_path, cameras):
    _, config = write_config(tmp_path, s3_url="http://127.0.0.1:1", mqtt_url="mqtt://127.0.0.1:1",
                             prefix=PREFIX, cameras=cameras)
    state = StateStore(tmp_path / "state.db")
    frames, snapshots, publisher = InMemoryFrameSource(), InMemorySnapshotStore(), RecordingPublisher(state)
    worker = Worker(config, frames=frames, evidence=snapshots, state=state, publisher=publisher)
    return worker, frames, snapshots, publisher, state


@pytest.fixture
def setup(tmp_path):
    worker, frames, snapshots, publisher, state = make_worker(tmp_path, ["cam-fire", "cam-flood", "cam-quiet"])
    yield worker, frames, snapshots, publisher, state
    state.close()


def alerts(publisher):
    return [json.loads(p) for topic, p in publisher.messages if "/alerts/" in topic]


@pytest.mark.parametrize(("camera", "scene", "kind", "allowed"), [("cam-fire", "fire", "fire", {"fire", "smoke"}),
                                                             ("cam-flood", "flood", "flood", {"flood"})])
def test_a_sample_scene_alarms_and_its_snapshot_is_stored(setup, camera, scene, kind, allowed):
    worker, frames, snapshots, publisher, state = setup
    keys = put_scene(frames, camera, scene, time.time() - 900)
    result = worker.process_camera(camera)
    assert result.error is None
    assert result.frames == len(keys) and result.alerts >= 1
    assert state.checkpoint(camera) == keys[-1] == result.checkpoint
    sent = worker.flush()
    assert sent == len(publisher.messages) >= result.alerts and state.outbox_size() == 0
    starts = [a for a in alerts(publisher) if a["state"] == "start"]
    assert kind in {a["type"] for a in starts} <= allowed  # the fire scene also shows smoke
    assert all(a["camera"]["id"] == camera for a in starts)
    assert all(a["evidence"]["key"] in snapshots.snapshots for a in starts)


def test_a_quiet_scene_raises_nothing_and_the_checkpoint_still_advances(setup):
    worker, frames, _, publisher, state = setup
    keys = put_scene(frames, "cam-quiet", "quiet", time.time() - 900)
    result = worker.process_camera("cam-quiet")
    assert (result.error, result.frames, result.alerts) == (None, len(keys), 0)
    assert state.checkpoint("cam-quiet") == keys[-1]
    assert worker.process_camera("cam-quiet").frames == 0  # nothing new after the checkpoint
    worker.flush()
    assert alerts(publisher) == []


def test_a_corrupt_jpeg_is_skipped_with_a_clear_error_and_the_camera_keeps_going(setup, caplog):
    worker, frames, _, _, state = setup
    start = time.time() - 900
    good = [frames.put_frame("cam-quiet", start + i, jpeg, test=True) for i, (_, jpeg) in enumerate(load_scene("quiet")[:4])]
    bad = frames.put_frame("cam-quiet", start + 1.5, b"\xff\xd8\xff\xe0 not a jpeg at all")
    with caplog.at_level(logging.WARNING):
        result = worker.process_camera("cam-quiet")
    assert result.error is None
    assert result.frames == len(good) and sum(result.skipped.values()) == 1
    assert bad in caplog.text
    assert state.checkpoint("cam-quiet") == max(good)  # past the bad frame, to the newest good one
    later = frames.put_frame("cam-quiet", start + 10, load_scene("quiet")[0][1], test=True)
    assert worker.process_camera("cam-quiet").frames == 1 and state.checkpoint("cam-quiet") == later


def test_a_key_outside_the_contract_is_skipped_and_never_fetched(setup, caplog):
    worker, frames, _, _, state = setup
    start = time.time() - 900
    key = frames.put_frame("cam-quiet", start, load_scene("quiet")[0][1], test=True)
    junk = "cam-quiet/2020/not-a-frame.jpg"
    frames.objects[junk] = b"junk"
    with caplog.at_level(logging.WARNING):
        result = worker.process_camera("cam-quiet")
    assert result.error is None and result.frames == 1
    assert junk not in frames.gets and key in frames.gets
    assert junk in caplog.text
    assert state.checkpoint("cam-quiet") == key


def test_a_frame_source_outage_keeps_the_checkpoint_and_pauses_the_store(setup):
    worker, frames, _, _, state = setup
    put_scene(frames, "cam-quiet", "quiet", time.time() - 900)
    frames.unavailable = True
    result = worker.process_camera("cam-quiet")
    assert result.error and "unavailable" in result.error
    assert state.checkpoint("cam-quiet") is None
    other = worker.process_camera("cam-fire")  # the outage costs one retry budget, not one per camera
    assert other.error and "paused" in other.error and other.frames == 0


def test_alerts_stay_in_the_outbox_while_the_publisher_is_down_and_go_out_when_it_is_back(setup):
    worker, frames, _, publisher, state = setup
    put_scene(frames, "cam-fire", "fire", time.time() - 900)
    publisher.down = True
    result = worker.process_camera("cam-fire")
    assert result.alerts >= 1
    assert worker.flush() == 0 and publisher.messages == []
    waiting = state.outbox_size()
    assert waiting == result.alerts
    publisher.down = False
    assert worker.flush() == waiting
    assert state.outbox_size() == 0
    assert len(alerts(publisher)) == waiting
    assert any(a["state"] == "start" and a["type"] == "fire" for a in alerts(publisher))
