"""Evidence snapshots: the frame of an alert, annotated, stored in the alerts bucket.

Each alert message gets ``<camera>/<YYYY>/<MM>/<DD>/<incident_id>-<seq>.jpg`` in the alerts bucket:
the frame with the finding's boxes and a label (type, severity, camera, local time with its UTC offset,
in ``console.timezone``) drawn on it.
The payload carries its bucket, key, SHA-256 (SHA-1 too, for CAP's ``digest``) and a presigned
GET URL, so the operations center never needs S3 credentials.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo

import cv2
import numpy as np
from minio import Minio

from pipeline.alerts.incidents import IncidentEvent
from pipeline.common.i18n import local_time
from pipeline.frames.keys import validate_camera_id

JPEG_QUALITY = 85
SEVERITY_COLOURS_BGR: dict[str, tuple[int, int, int]] = {
    "minor": (0, 200, 255),      # amber
    "moderate": (0, 140, 255),   # orange
    "severe": (0, 0, 255),       # red
    "extreme": (255, 0, 200),    # magenta
}


class EvidenceError(RuntimeError):
    """The snapshot could not be drawn, encoded or stored."""


@dataclass(frozen=True)
class Evidence:
    """Where an alert's annotated snapshot is and how to fetch and verify it."""

    bucket: str
    key: str
    sha256: str
    url: str
    expires_at: datetime
    sha1: str = ""
    size: int = 0
    mime_type: str = "image/jpeg"


def evidence_key(event: IncidentEvent) -> str:
    """``<camera>/<YYYY>/<MM>/<DD>/<incident_id>-<seq>.jpg``, dated by the event's frame time."""
    validate_camera_id(event.camera_id)
    t = datetime.fromtimestamp(event.frame_ts, tz=UTC)
    return f"{event.camera_id}/{t:%Y/%m/%d}/{event.incident_id}-{event.seq}.jpg"


def snapshot_label(event: IncidentEvent, zone: tzinfo = UTC) -> str:
    """``FIRE extreme start | cam-1 | 2026-12-02 01:23:45 +07``: the text on a snapshot's label bar."""
    return f"{event.type.upper()} {event.severity} {event.state} | {event.camera_id} | {local_time(event.frame_ts, zone)}"


def annotate(frame: np.ndarray, event: IncidentEvent, zone: tzinfo = UTC) -> np.ndarray:
    """A copy of ``frame`` (BGR uint8) with the event's boxes and a label bar drawn on it (time in ``zone``)."""
    if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        shape = getattr(frame, "shape", None)
        raise EvidenceError(f"evidence frame must be a BGR uint8 image (H, W, 3), got shape {shape}")
    img = frame.copy()
    h, w = img.shape[:2]
    colour = SEVERITY_COLOURS_BGR.get(event.severity, (255, 255, 255))
    thick = max(1, round(w / 320))
    for x, y, bw, bh in event.boxes:
        p1 = (int(round(x * (w - 1))), int(round(y * (h - 1))))
        p2 = (int(round((x + bw) * (w - 1))), int(round((y + bh) * (h - 1))))
        cv2.rectangle(img, p1, p2, colour, thick + 1)
    label = snapshot_label(event, zone)
    scale = max(0.35, w / 1600)
    (tw, th), base = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
    bar = th + base + 8
    cv2.rectangle(img, (0, 0), (min(w, tw + 10), bar), colour, -1)
    cv2.putText(img, label, (5, bar - base - 4), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), thick, cv2.LINE_AA)
    return img


class EvidenceStore:
    """Stores annotated snapshots in ``bucket`` and hands out presigned URLs valid ``expiry_s``."""

    def __init__(self, client: Minio, bucket: str, expiry_s: int, zone: tzinfo = UTC) -> None:
        if not 1 <= expiry_s <= 7 * 24 * 3600:
            raise ValueError(f"presigned URL expiry must be 1 s .. 7 days, got {expiry_s} s")
        self.client = client
        self.bucket = bucket
        self.expiry_s = int(expiry_s)
        self.zone = zone

    def ensure_bucket(self) -> None:
        """Create the alerts bucket if it is missing."""
        if not self.client.bucket_exists(self.bucket):
            self.client.make_bucket(self.bucket)

    def store(self, event: IncidentEvent, frame: np.ndarray, frame_key: str | None) -> Evidence:
        """Annotate ``frame``, upload it, and return where it is with its digests and a URL."""
        ok, buf = cv2.imencode(".jpg", annotate(frame, event, self.zone), [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        if not ok:
            raise EvidenceError(f"could not encode the snapshot of {event.incident_id} as JPEG")
        data = buf.tobytes()
        key = evidence_key(event)
        metadata: dict[str, str | list[str] | tuple[str]] = {"incident-id": event.incident_id, "seq": str(event.seq)}
        if frame_key:
            metadata["source-frame"] = frame_key
        self.client.put_object(self.bucket, key, io.BytesIO(data), len(data),
                               content_type="image/jpeg", metadata=metadata)
        expiry = timedelta(seconds=self.expiry_s)
        signed_at = datetime.now(UTC).replace(microsecond=0)
        url = self.client.presigned_get_object(self.bucket, key, expires=expiry, request_date=signed_at)
        return Evidence(bucket=self.bucket, key=key, sha256=hashlib.sha256(data).hexdigest(), url=url,
                        expires_at=signed_at + expiry,
                        sha1=hashlib.sha1(data).hexdigest(), size=len(data))
