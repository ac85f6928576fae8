"""Frame retention against SeaweedFS's S3 server through the real minio client."""

from __future__ import annotations

import io
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from pipeline.frames.keys import frame_key
from pipeline.frames.retention import RetentionError, delete_old_frames

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


def _put(client, bucket, key):
    client.put_object(bucket, key, io.BytesIO(b"\xff\xd8jpeg"), 6, content_type="image/jpeg")


def _keys(client, bucket):
    return sorted(o.object_name for o in client.list_objects(bucket, recursive=True))


@pytest.fixture
def bucket(minio_client):
    name = f"frames-{uuid.uuid4().hex[:8]}"
    minio_client.make_bucket(name)
    return name


def test_deletes_only_frames_older_than_the_cutoff(minio_client, bucket):
    old = [frame_key("cam-a", NOW - timedelta(days=d, minutes=m)) for d in (31, 40) for m in (0, 1)]
    old.append(frame_key("cam-b", NOW - timedelta(days=30, seconds=1), test=True))
    new = [frame_key("cam-a", NOW - timedelta(days=29)), frame_key("cam-b", NOW - timedelta(days=1)),
           frame_key("cam-b", NOW - timedelta(days=30) + timedelta(seconds=1))]
    junk = ["cam-a/notes.txt", "cam-a/1999/01/01/old.jpg", "readme.md"]
    for key in old + new + junk:
        _put(minio_client, bucket, key)

    dry = delete_old_frames(minio_client, bucket, max_age_days=30, now_ts=NOW.timestamp(), dry_run=True)
    assert dry.deleted == len(old) and _keys(minio_client, bucket) == sorted(old + new + junk)

    report = delete_old_frames(minio_client, bucket, max_age_days=30, now_ts=NOW.timestamp())
    assert report.deleted == 5 and report.cameras == {"cam-a": 4, "cam-b": 1}
    assert _keys(minio_client, bucket) == sorted(new + junk)  # off-contract objects are kept
    assert set(report.ignored_keys) >= {"cam-a/1999/01/01/old.jpg"}
    assert report.as_dict()["deleted"] == 5

    again = delete_old_frames(minio_client, bucket, max_age_days=30, now_ts=NOW.timestamp())
    assert again.deleted == 0


def test_limits_to_given_cameras_and_batches_large_deletes(minio_client, bucket, monkeypatch):
    import pipeline.frames.retention as retention

    monkeypatch.setattr(retention, "DELETE_BATCH", 7)  # exercise several DeleteObjects calls
    for i in range(20):
        _put(minio_client, bucket, frame_key("cam-a", NOW - timedelta(days=10, seconds=i)))
        _put(minio_client, bucket, frame_key("cam-b", NOW - timedelta(days=10, seconds=i)))
    report = delete_old_frames(minio_client, bucket, max_age_days=2, now_ts=NOW.timestamp(), camera_ids=["cam-a"])
    assert report.deleted == 20
    assert all(k.startswith("cam-b/") for k in _keys(minio_client, bucket)) and len(_keys(minio_client, bucket)) == 20


def test_bad_arguments_are_named(minio_client, bucket):
    with pytest.raises(ValueError, match="max_age_days"):
        delete_old_frames(minio_client, bucket, max_age_days=0)
    with pytest.raises(RetentionError, match="does not exist"):
        delete_old_frames(minio_client, "no-such-bucket-xyz", max_age_days=1)
    with pytest.raises(ValueError, match="camera id"):
        delete_old_frames(minio_client, bucket, max_age_days=1, camera_ids=["bad/id"])
