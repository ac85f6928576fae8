"""The `camera_health` flow: a site-wide watchdog publishing every camera's retained status.

The watch workers publish the status of the cameras they watch; when a whole edge box is down
nobody would, and its cameras' retained status would stay ``online``. This flow (every minute on
the ``site`` queue, see deploy/prefect.yaml) judges each configured camera from the object store
alone: the time of its newest frame, found by listing minute prefixes of the key contract
backwards from now (a few small listings per camera), fed to :class:`pipeline.state.health.CameraHealth`.
It publishes statuses only; ``camera_offline`` incidents stay with the watch workers.
"""

from __future__ import annotations

import json
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from minio import Minio
from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from pipeline.config.settings import Config, load_config
from pipeline.delivery.publisher import MqttPublisher
from pipeline.frames.keys import InvalidFrameKey, camera_prefix, parse_frame_key
from pipeline.frames.store import make_minio
from pipeline.state.health import CameraHealth
from pipeline.state.store import StateStore


def newest_frame_ts(client: Minio, bucket: str, camera_id: str, now: float, lookback_s: float) -> float | None:
    """Frame time of the camera's newest frame stamped within ``lookback_s`` before ``now`` (or None)."""
    minute = int(now // 60) * 60
    while minute >= now - lookback_s - 60:
        t = datetime.fromtimestamp(minute, tz=UTC)
        prefix = f"{camera_prefix(camera_id)}{t:%Y/%m/%d}/{t:%Y%m%dT%H%M}"
        newest = None
        for obj in client.list_objects(bucket, prefix=prefix, recursive=True):
            try:
                ts = parse_frame_key(obj.object_name).ts
            except InvalidFrameKey:
                continue
            if ts <= now:
                newest = ts if newest is None else max(newest, ts)
        if newest is not None:
            return newest if newest >= now - lookback_s else None
        minute -= 60
    return None


def camera_statuses(config: Config, client: Minio, now: float) -> dict[str, dict]:
    """``{camera_id: status}`` judged from the newest frame of each configured camera."""
    health = CameraHealth(config.health)
    lookback = config.health.offline_after_s
    for camera in config.cameras:
        ts = newest_frame_ts(client, config.s3.frames_bucket, camera.id, now, lookback)
        if ts is None:
            health.register([camera.id], now - lookback)  # silent for the whole look-back: offline
        else:
            health.register([camera.id], ts)
            health.frame_seen(camera.id, ts, ts)
    return health.statuses(now)


@task(name="publish-camera-statuses", cache_policy=NO_CACHE, retries=1, retry_delay_seconds=10)
def publish_camera_statuses(config_path: str | None) -> dict[str, int]:
    """Judge every camera and publish its retained ``<prefix>/cameras/<id>/status``."""
    config = load_config(config_path)
    statuses = camera_statuses(config, make_minio(config.s3), time.time())
    name = f"{config.worker.name}-health"[:64]
    with tempfile.TemporaryDirectory(prefix="citywatch-health-") as tmp:
        store = StateStore(Path(tmp) / "state.db")  # statuses do not use the outbox
        publisher = MqttPublisher(config.mqtt, store, name, client_id=f"citywatch-health-{name}"[:64]).start()
        try:
            publisher.wait_connected(10.0)
            for camera_id, status in statuses.items():
                status["source"] = "camera-health"
                status["worker"] = config.worker.name  # the worker whose cameras these are
                publisher.publish_status(f"{config.mqtt.topic_prefix}/cameras/{camera_id}/status",
                                         json.dumps(status).encode())
            publisher.flush(5.0)
        finally:
            publisher.stop()
            store.close()
    counts: dict[str, int] = {}
    for status in statuses.values():
        counts[status["state"]] = counts.get(status["state"], 0) + 1
    return counts


@flow(name="camera-health")
def camera_health(config_path: str | None = None) -> dict[str, int]:
    """Publish the retained status of every configured camera; returns counts per state."""
    counts = publish_camera_statuses(config_path)
    get_run_logger().info("camera status: %s", counts)
    return counts
