"""New-frame notices: an MQTT message saying a frame landed, so a worker processes that camera at
once instead of at its next poll (alert latency: one poll interval less).

The message is an S3 event record as MinIO's bucket notifications send it (``s3:ObjectCreated:*``
with the bucket and the URL-encoded object key), on ``<prefix>/frames/new``. Two sources publish
it: MinIO itself, with an MQTT notification target on the frames bucket (``deploy/minio``), and
``citywatch ingest`` (and the demo and bench cameras) after each put, for object stores that
publish none (SeaweedFS, a store without a notification target).

A notice is a hint, never the record. The worker still lists the camera from its checkpoint, so
a lost, late, repeated or forged notice costs at most one listing, and polling stays the safety
net: every ``worker.notice_sweep_s`` for cameras whose notices arrive, every
``worker.poll_interval_s`` for the others. A camera is processed on notice at most every
:data:`MIN_GAP_S`; notices arriving sooner wait for that (a burst of frames is one batch).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterable
from urllib.parse import quote, unquote

from prometheus_client import Counter

from pipeline.common.text import printable
from pipeline.config.endpoints import MqttSettings
from pipeline.delivery.mqtt import Subscriber, make_client

log = logging.getLogger(__name__)

EVENT = "s3:ObjectCreated:Put"
MIN_GAP_S = 0.25  # s between two notice-driven batches of one camera
MAX_NOTICE_BYTES = 64_000  # a MinIO event record is ~1-2 KB; anything far larger is not one


NOTICES = Counter("citywatch_frame_notices", "New-frame notices a worker received, by result (used: "
                  "named a camera of this worker; ignored: other cameras; bad: no S3 event record)", ["result"])


class NoticeError(ValueError):
    """A message on the notice topic that is no S3 object-created record for the frames bucket."""


def notice_topic(prefix: str) -> str:
    return f"{prefix}/frames/new"


def notice_payload(bucket: str, key: str, size: int) -> bytes:
    """The notice for ``bucket/key``, shaped as MinIO's bucket notification record."""
    return json.dumps({
        "EventName": EVENT, "Key": f"{bucket}/{key}",
        "Records": [{"eventVersion": "2.0", "eventSource": "citywatch:ingest", "eventName": EVENT,
                     "s3": {"bucket": {"name": bucket}, "object": {"key": quote(key), "size": size}}}],
    }, separators=(",", ":")).encode()


def notice_keys(payload: bytes, bucket: str) -> list[str]:
    """The object keys of ``bucket`` created according to a notice; raises :class:`NoticeError`."""
    if len(payload) > MAX_NOTICE_BYTES:
        raise NoticeError(f"notice of {len(payload)} bytes (at most {MAX_NOTICE_BYTES})")
    try:
        message = json.loads(payload)
        records = message["Records"]
        keys = []
        for record in records:
            if not str(record.get("eventName", "")).startswith("s3:ObjectCreated:"):
                continue
            s3 = record["s3"]
            if s3["bucket"]["name"] != bucket:
                continue
            keys.append(unquote(str(s3["object"]["key"]).replace("+", " ")))
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise NoticeError(f"not an S3 event record: {type(exc).__name__}: {printable(str(exc))[:100]}") from None
    return keys


class NoticePublisher:
    """Publishes a notice after each frame put (QoS 0, fire and forget: never slows or fails a put)."""

    def __init__(self, mqtt: MqttSettings, client_id: str, bucket: str) -> None:
        self.topic, self.bucket = notice_topic(mqtt.topic_prefix), bucket
        self._client = make_client(mqtt, client_id, clean_start=True, session_expiry_s=0)
        self._connected = threading.Event()
        self._client.on_connect = lambda client, userdata, flags, reason_code, properties: (
            None if reason_code.is_failure else self._connected.set())
        self.published = 0

    def start(self, wait_s: float = 2.0) -> NoticePublisher:
        """Connect in the background, waiting up to ``wait_s`` so the first notices are not lost."""
        self._client.loop_start()
        if not self._connected.wait(wait_s):
            log.warning("new-frame notices: broker %s not reachable yet; frames wait for the "
                        "worker's next poll until it is", self.topic)
        return self

    def stop(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def __call__(self, key: str, size: int) -> None:
        """Announce ``key`` (the FrameStore ``on_put`` hook); a broker that is down loses the hint only."""
        info = self._client.publish(self.topic, notice_payload(self.bucket, key, size), qos=0)
        if info.rc == 0:
            self.published += 1


def start_notice_publisher(mqtt: MqttSettings, client_id: str, bucket: str) -> NoticePublisher | None:
    """A started :class:`NoticePublisher`, or None (logged) when the MQTT settings cannot make one:
    frames are still put, and workers find them at their next poll."""
    try:
        return NoticePublisher(mqtt, client_id, bucket).start()
    except Exception as exc:  # noqa: BLE001 - the notices are a hint; the frames matter
        log.warning("not announcing new frames (workers will find them at their next poll): %s", exc)
        return None


class FrameNotices(Subscriber):
    """Collects notices for ``cameras`` and hands out the cameras due for processing (see module)."""

    def __init__(self, mqtt: MqttSettings, client_id: str, bucket: str, cameras: Iterable[str],
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.bucket, self.cameras, self._clock = bucket, frozenset(cameras), clock
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._pending: set[str] = set()
        self._last_notice: dict[str, float] = {}
        self._last_batch: dict[str, float] = {}
        self.received = self.ignored = self.bad = 0
        super().__init__(mqtt, client_id, [notice_topic(mqtt.topic_prefix)], self._handle,
                         clean_start=True, session_expiry_s=0)

    def _handle(self, topic: str, payload: bytes, retain: bool) -> None:
        try:
            keys = notice_keys(payload, self.bucket)
        except NoticeError as exc:
            self.bad += 1
            NOTICES.labels("bad").inc()
            log.warning("ignoring frame notice on %s: %s", printable(topic), exc)
            return
        # the camera is the key's first component; only this shard's ids count (an exact match, so
        # a hostile key can name no other), and junk keys are the listing's to report, with a reason
        mine = {key.partition("/")[0] for key in keys} & self.cameras
        self.received += 1
        self.ignored += not mine
        NOTICES.labels("used" if mine else "ignored").inc()
        if mine:
            with self._lock:
                now = self._clock()
                self._pending |= mine
                self._last_notice.update(dict.fromkeys(mine, now))
                self._wake.set()

    def fresh(self, camera_id: str, within_s: float) -> bool:
        """Whether a notice for the camera came in the last ``within_s`` seconds."""
        last = self._last_notice.get(camera_id)
        return last is not None and self._clock() - last <= within_s

    def take(self, timeout_s: float) -> list[str]:
        """Wait up to ``timeout_s`` for cameras with a notice whose last notice-driven batch is at
        least :data:`MIN_GAP_S` old; return them (sorted), or [] when the time is up."""
        deadline = self._clock() + timeout_s
        while True:
            with self._lock:
                now = self._clock()
                due = sorted(c for c in self._pending if now - self._last_batch.get(c, -1e18) >= MIN_GAP_S)
                if due:
                    self._pending.difference_update(due)
                    self._last_batch.update(dict.fromkeys(due, now))
                    return due
                wait = deadline - now
                if self._pending:
                    wait = min(wait, min(self._last_batch[c] for c in self._pending) + MIN_GAP_S - now)
                self._wake.clear()
            if deadline - now <= 0:
                return []
            self._wake.wait(max(0.0, wait))
