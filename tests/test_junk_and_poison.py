"""Objects that must never stall a camera, through the real worker (moto S3 via the minio client,
real Mosquitto): non-frame objects in a camera's folder, and frames that make analysis raise."""

from __future__ import annotations

import io
import logging
import time
import uuid

from pipeline.keys import frame_key
from pipeline.runner import WatchSession
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
