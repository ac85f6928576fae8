"""Evidence snapshots against SeaweedFS's S3 server through the real minio client."""

from __future__ import annotations

import hashlib
import urllib.request
from datetime import UTC, datetime, timedelta

import cv2
import numpy as np
import pytest

from pipeline.alerts.evidence import EvidenceError, EvidenceStore, annotate, evidence_key
from pipeline.alerts.incidents import IncidentEvent, incident_id
from pipeline.frames.keys import frame_key

TS = 1_763_844_026.5


def event(seq: int = 1, boxes=((0.25, 0.25, 0.5, 0.5),)) -> IncidentEvent:
    return IncidentEvent(incident_id=incident_id("cam-9", "fire", TS), camera_id="cam-9", type="fire",
                         state="start", seq=seq, severity="severe", confidence=0.9,
                         measurements={"area_pct": 3.0}, boxes=boxes, frame_ts=TS + seq, started_ts=TS)


def frame() -> np.ndarray:
    img = np.full((240, 320, 3), 90, np.uint8)
    cv2.circle(img, (160, 120), 30, (0, 120, 255), -1)
    return img


def test_key_layout():
    assert evidence_key(event(seq=4)) == "cam-9/2025/11/22/cam-9-fire-20251122T204026500-4.jpg"


def test_annotation_draws_box_and_label_without_touching_input():
    src = frame()
    out = annotate(src, event())
    assert np.array_equal(src, frame())
    # box edge at x = 0.25 * 319 ~ 80 on row 160 is drawn in the severe colour (red)
    assert tuple(out[160, 80]) == (0, 0, 255)
    assert (out[:12, :100] != src[:12, :100]).any()  # label bar at the top
    with pytest.raises(EvidenceError, match="BGR uint8"):
        annotate(np.zeros((10, 10), np.uint8), event())


def test_store_upload_presigned_url_and_sha256(minio_client):
    store = EvidenceStore(minio_client, "alerts", expiry_s=3600)
    store.ensure_bucket()
    store.ensure_bucket()  # idempotent
    before = datetime.now(UTC)
    ev = store.store(event(), frame(), frame_key("cam-9", TS))
    assert ev.bucket == "alerts" and ev.key == evidence_key(event())
    with urllib.request.urlopen(ev.url, timeout=5) as resp:
        body = resp.read()
        assert resp.headers["Content-Type"] == "image/jpeg"
    assert hashlib.sha256(body).hexdigest() == ev.sha256
    assert hashlib.sha1(body).hexdigest() == ev.sha1 and len(body) == ev.size
    decoded = cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR)
    assert decoded.shape == (240, 320, 3)
    assert timedelta(seconds=3598) <= ev.expires_at - before <= timedelta(seconds=3602)
    assert "X-Amz-Expires=3600" in ev.url
    stat = minio_client.stat_object("alerts", ev.key)
    assert stat.metadata.get("x-amz-meta-source-frame") == frame_key("cam-9", TS)


def test_each_message_gets_its_own_snapshot(minio_client):
    store = EvidenceStore(minio_client, "alerts", expiry_s=600)
    store.ensure_bucket()
    first = store.store(event(seq=1), frame(), None)
    second = store.store(event(seq=2, boxes=()), frame(), None)
    assert first.key != second.key and first.sha256 != second.sha256
    with urllib.request.urlopen(second.url, timeout=5) as resp:
        assert hashlib.sha256(resp.read()).hexdigest() == second.sha256


def test_expiry_bounds():
    with pytest.raises(ValueError, match="expiry"):
        EvidenceStore(None, "alerts", expiry_s=8 * 24 * 3600)  # type: ignore[arg-type]
