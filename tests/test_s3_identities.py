"""S3 credentials and least privilege, for real: the session's SeaweedFS server has the admin,
worker and ingest identities of `deploy/minio/`'s policies (:mod:`pipeline.app.embedded_s3`). A camera
(ingest identity) puts frames it cannot read back; the worker identity turns them into an alert
whose presigned snapshot URL works over plain HTTP; each identity is refused what it must not do."""

from __future__ import annotations

import hashlib
import io
import logging
import time
import urllib.request
import uuid

import pytest
from minio.error import S3Error

from pipeline.config.settings import S3Settings
from pipeline.delivery.mqtt import Subscriber
from pipeline.frames.store import FrameStore, make_minio
from pipeline.processing.runner import WatchSession
from tests.faults_support import Inbox, put_scene, write_config


def _store(s3_server, identity: str, bucket: str = "frames") -> FrameStore:
    ident = s3_server.identities[identity]
    settings = S3Settings(url=s3_server.url, access_key=ident.access_key, secret_key=ident.secret_key)
    return FrameStore(make_minio(settings), bucket, retry_for_s=1.0)


@pytest.fixture
def buckets(minio_client):
    """The frames and alerts buckets the least-privilege identities are scoped to (admin makes them)."""
    for bucket in ("frames", "alerts"):
        if not minio_client.bucket_exists(bucket):
            minio_client.make_bucket(bucket)


def test_a_camera_puts_frames_and_the_worker_identity_alerts_with_a_working_snapshot_url(
        s3_server, buckets, mqtt_broker, tmp_path):
    tag = uuid.uuid4().hex[:8]
    camera = f"ident-{tag}"
    worker = s3_server.identities["worker"]
    _, config = write_config(tmp_path, s3_url=s3_server.url, mqtt_url=mqtt_broker, prefix=f"cwident-{tag}",
                             cameras=[camera], access_key=worker.access_key, secret_key=worker.secret_key,
                             worker_name=f"ident-{tag}")
    config = config.model_copy(update={"s3": config.s3.model_copy(update={"alerts_bucket": "alerts"})})
    camera_store = _store(s3_server, "ingest")
    camera_store.ensure_bucket()  # may not even look: left to the administrator, no error
    keys = put_scene(camera_store, camera, "fire", time.time() - 120)
    with pytest.raises(S3Error) as denied:
        camera_store.client.get_object("frames", keys[0])
    assert denied.value.code == "AccessDenied"

    inbox = Inbox()
    with Subscriber(config.mqtt, f"sub-{tag}", [f"{config.mqtt.topic_prefix}/alerts/#"], inbox) as sub:
        assert sub.wait_subscribed(10)
        with WatchSession(config, threads=2) as session:
            stats = session.cycle()
            session.drain(10)
        assert inbox.wait_for(lambda i: any(a["type"] == "fire" for a in i.alerts()), 20)
    assert stats.frames == len(keys) and not stats.errors
    fire = next(a for a in inbox.alerts() if a["type"] == "fire")
    evidence = fire["evidence"]
    assert evidence["bucket"] == "alerts" and f"X-Amz-Credential={worker.access_key}" in evidence["url"]
    with urllib.request.urlopen(evidence["url"], timeout=5) as response:  # no credentials: the signature
        body = response.read()
    assert body[:3] == b"\xff\xd8\xff" and hashlib.sha256(body).hexdigest() == evidence["sha256"]


def test_each_identity_is_refused_what_it_must_not_do(s3_server, buckets, minio_client):
    minio_client.make_bucket(other := f"other-{uuid.uuid4().hex[:8]}")
    minio_client.put_object(other, "x.jpg", io.BytesIO(b"x"), 1)
    worker, ingest = s3_server.client("worker"), s3_server.client("ingest")
    refusals = {
        "worker creates a bucket": lambda: worker.make_bucket(f"w-{uuid.uuid4().hex[:8]}"),
        "worker reads another bucket": lambda: worker.get_object(other, "x.jpg"),
        "worker writes another bucket": lambda: worker.put_object(other, "y.jpg", io.BytesIO(b"y"), 1),
        "worker lists the alerts bucket": lambda: list(worker.list_objects("alerts")),
        "ingest lists frames": lambda: list(ingest.list_objects("frames", prefix="cam/")),
        "ingest writes evidence": lambda: ingest.put_object("alerts", "z.jpg", io.BytesIO(b"z"), 1),
    }
    for what, action in refusals.items():
        with pytest.raises(S3Error) as info:
            action()
        assert info.value.code == "AccessDenied", what
    worker.put_object("alerts", f"cam/{other}.jpg", io.BytesIO(b"e"), 1)  # what it may do
    assert worker.get_object("alerts", f"cam/{other}.jpg").read() == b"e"


def test_wrong_credentials_are_refused_and_the_worker_says_so(s3_server, buckets, mqtt_broker, tmp_path, caplog):
    tag = uuid.uuid4().hex[:8]
    for access_key, secret_key, code in (("citywatch-worker", "not-the-secret", "SignatureDoesNotMatch"),
                                         ("nobody", "whatever", "InvalidAccessKeyId")):
        _, config = write_config(tmp_path, s3_url=s3_server.url, mqtt_url=mqtt_broker, prefix=f"cwbad-{tag}",
                                 cameras=[f"bad-{tag}"], access_key=access_key, secret_key=secret_key,
                                 worker_name=f"bad-{tag}-{code}")
        caplog.clear()
        caplog.set_level(logging.WARNING, logger="pipeline")
        with WatchSession(config, threads=1) as session:
            stats = session.cycle()
        assert any(code in e for e in stats.errors), stats.errors
        assert code in caplog.text and secret_key not in caplog.text
