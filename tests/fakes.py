"""In-memory stand-ins for the worker's I/O ends (:mod:`pipeline.processing.ports`), for logic
tests that run without an S3 server or an MQTT broker. They keep the real classes' contracts:
the listing rules of :meth:`FrameStore.list_new`, its exception types, the outbox semantics of
:meth:`MqttPublisher.flush`."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from typing import Any

import cv2
import numpy as np

from pipeline.alerts.evidence import Evidence, EvidenceError, annotate, evidence_key
from pipeline.alerts.incidents import IncidentEvent
from pipeline.frames.keys import camera_prefix, frame_key, last_frame_key
from pipeline.frames.store import (
    MAX_REJECTED_PER_LISTING,
    FrameMissing,
    FrameStoreUnavailable,
    FrameTooLarge,
    ListResult,
    collect_new_keys,
)
from pipeline.state.store import StateStore


class InMemoryFrameSource:
    """Object key -> bytes, listed in lexicographic order after ``start_after`` like S3.

    ``unavailable = True`` makes every call raise :class:`FrameStoreUnavailable` (an outage past the
    retry budget); keys in ``missing`` raise :class:`FrameMissing` on ``get``."""

    def __init__(self, objects: dict[str, bytes] | None = None) -> None:
        self.objects: dict[str, bytes] = dict(objects or {})
        self.unavailable = False
        self.missing: set[str] = set()
        self.gets: list[str] = []

    def put_frame(self, camera_id: str, ts: float | datetime, jpeg: bytes, test: bool = False) -> str:
        key = frame_key(camera_id, ts, test=test)
        self.objects[key] = jpeg
        return key

    def _check(self, operation: str) -> None:
        if self.unavailable:
            raise FrameStoreUnavailable(f"{operation}: in-memory store set unavailable")

    def ensure_bucket(self) -> None:
        self._check("ensure bucket")

    def list_new(self, camera_id: str, after_key: str | None, limit: int,
                 max_rejected: int = MAX_REJECTED_PER_LISTING) -> ListResult:
        if limit < 1:
            raise ValueError(f"limit must be >= 1, got {limit}")
        self._check(f"list {camera_id}")
        prefix, last = camera_prefix(camera_id), last_frame_key(camera_id)
        # what S3 lists: the camera's keys in byte order after start_after; the rules are the store's own
        listed = sorted(k for k in self.objects if k.startswith(prefix) and k > (after_key or ""))
        return collect_new_keys(listed, last, limit, max_rejected)

    def get(self, key: str, max_bytes: int) -> bytes:
        self._check(f"get {key}")
        self.gets.append(key)
        if key in self.missing or key not in self.objects:
            raise FrameMissing(f"object {key} no longer exists")
        data = self.objects[key]
        if len(data) > max_bytes:
            raise FrameTooLarge(f"object is {len(data)} bytes, more than the {max_bytes} allowed")
        return data


class InMemorySnapshotStore:
    """Keeps each annotated snapshot as JPEG bytes under its evidence key; ``failing = True`` makes
    ``store`` raise :class:`EvidenceError` as an unreachable bucket would."""

    def __init__(self, bucket: str = "alerts", expiry_s: int = 3600) -> None:
        self.bucket = bucket
        self.expiry_s = expiry_s
        self.snapshots: dict[str, bytes] = {}
        self.failing = False

    def ensure_bucket(self) -> None:
        return None

    def store(self, event: IncidentEvent, frame: np.ndarray, frame_key: str | None) -> Evidence:
        if self.failing:
            raise EvidenceError(f"in-memory snapshot store set failing ({event.incident_id})")
        ok, buf = cv2.imencode(".jpg", annotate(frame, event))
        if not ok:
            raise EvidenceError(f"could not encode the snapshot of {event.incident_id} as JPEG")
        data = buf.tobytes()
        key = evidence_key(event)
        self.snapshots[key] = data
        signed_at = datetime.now(UTC).replace(microsecond=0)
        return Evidence(bucket=self.bucket, key=key, sha256=hashlib.sha256(data).hexdigest(),
                        url=f"memory://{self.bucket}/{key}", expires_at=signed_at + timedelta(seconds=self.expiry_s),
                        sha1=hashlib.sha1(data).hexdigest(), size=len(data))


class RecordingPublisher:
    """Delivers the outbox of ``store`` into ``messages`` (topic, payload bytes) while up; while
    ``down`` nothing leaves and the outbox keeps every message, as with a broker out of reach."""

    def __init__(self, store: StateStore) -> None:
        self.store = store
        self.down = False
        self.started = False
        self.messages: list[tuple[str, bytes]] = []
        self.statuses: dict[str, bytes] = {}

    def start(self) -> RecordingPublisher:
        self.started = True
        return self

    def stop(self, timeout_s: float = 5.0) -> None:
        self.started = False

    def publish_status(self, topic: str, payload: Any, retain: bool = True) -> bool:
        if self.down:
            return False
        self.statuses[topic] = payload if isinstance(payload, bytes) else str(payload).encode()
        return True

    def flush(self, timeout_s: float = 5.0) -> int:
        """Send every pending outbox row; the number sent (0 while down)."""
        if self.down:
            return 0
        sent = 0
        while rows := self.store.pending(limit=100):
            for row in rows:
                self.messages.append((row.topic, bytes(row.payload)))
            self.store.delete([row.id for row in rows])  # acknowledged rows leave the outbox
            sent += len(rows)
        return sent
