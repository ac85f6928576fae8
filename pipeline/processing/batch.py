"""One camera batch's pieces: the decode the detectors see, one frame's analysis with every
failure turned into a skip reason, the outbox messages of its incident events, and its result.

A frame that makes decoding or a detector raise (a 1x1, 65500x10 or 8000x300 JPEG, a detector bug)
must never block its camera: :func:`analyze_frame` returns a reason instead of raising, the worker
counts and logs it like any skipped frame, and its checkpoint moves past the frame.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from pipeline.alerts.cap import cap_xml
from pipeline.alerts.incidents import IncidentEvent
from pipeline.alerts.payload import alert_topic, build_alert, cap_topic
from pipeline.config.settings import CameraConfig, Config
from pipeline.frames.decode import shrink_to_width
from pipeline.frames.store import BadFrame, decode_frame
from pipeline.processing.analysis import FrameAnalyzer
from pipeline.processing.metrics import (
    ALERTS,
    DECODE,
    DECODE_CPU,
    DETECTORS,
    DETECTORS_CPU,
    FRAMES_PROCESSED,
    FRAMES_SKIPPED,
)
from pipeline.processing.ports import SnapshotStore
from pipeline.state.store import OutboxMessage

log = logging.getLogger("pipeline.processing.worker")

#: Evidence snapshots are decoded at the cheapest DCT scale still this wide (only for frames
#: that raise an incident message; analysis decodes at the detectors' own width).
SNAPSHOT_WIDTH = 640
#: Fire, smoke and obstruction work at this width (the default of ``detectors.working_size``).
DETECTOR_WIDTH = 320


def analysis_width(camera: CameraConfig) -> int:
    """The width the worker shrinks each decoded frame to, once, before the camera's detectors:
    the widest working size among them (none upscales, so each still sees its own size)."""
    d = camera.detectors
    return max([DETECTOR_WIDTH] + [s.working_width for s in (d.flood, d.congestion) if s.enabled])


def decode_for_analysis(data: bytes, camera: CameraConfig, max_pixels: int) -> np.ndarray:
    """The frame the camera's detectors see: decoded at the cheapest DCT scale (1/2, 1/4, 1/8)
    still :func:`analysis_width` wide, then shrunk to exactly that width. A 1280x720 frame decodes
    straight to 320x180; `citywatch evaluate` and `citywatch bench` use this too, so they score
    and time what the flow runs. Raises :class:`BadFrame` like :func:`decode_frame`."""
    width = analysis_width(camera)
    return shrink_to_width(decode_frame(data, max_pixels=max_pixels, max_width=width), width)


def analyze_frame(analyzer: FrameAnalyzer, camera: CameraConfig, key: str, ts: float, data: bytes,
                  max_pixels: int) -> tuple[str | None, list[IncidentEvent]]:
    """Decode and analyse one frame: ``(None, events)``, or ``(reason, [])`` with the reason logged
    when the frame must be skipped (``bad_frame``: refused by the decoder; ``analysis_error``:
    anything else raised, e.g. a detector's ``ValueError``). Never raises.

    The detectors before the one that raised have seen the frame and the incident tracker has
    not: the camera's next frames are judged as if this one had never come.
    """
    started, cpu_started = time.perf_counter(), time.thread_time()
    try:
        frame = decode_for_analysis(data, camera, max_pixels)
    except BadFrame as exc:
        log.warning("camera %s: skipped frame %s: %s", camera.id, key, exc)
        return "bad_frame", []
    except Exception as exc:  # noqa: BLE001 - a frame the decoder chokes on is that frame's problem
        return _skip(camera, key, "decoding", exc), []
    decoded, cpu_decoded = time.perf_counter(), time.thread_time()
    DECODE.observe(decoded - started)
    DECODE_CPU.inc(cpu_decoded - cpu_started)
    try:
        _, events = analyzer.analyze(frame, ts)
    except Exception as exc:  # noqa: BLE001 - one poison frame must never stall its camera
        return _skip(camera, key, f"analysis of {frame.shape[1]}x{frame.shape[0]}", exc), []
    DETECTORS.observe(time.perf_counter() - decoded)
    DETECTORS_CPU.inc(time.thread_time() - cpu_decoded)
    return None, events


def _skip(camera: CameraConfig, key: str, step: str, exc: Exception) -> str:
    log.warning("camera %s: skipped frame %s: %s failed (%s: %s)", camera.id, key, step,
                type(exc).__name__, str(exc)[:300], exc_info=log.isEnabledFor(logging.DEBUG))
    return "analysis_error"


def snapshot_frame(data: bytes, camera: CameraConfig, key: str, max_pixels: int) -> np.ndarray | None:
    """The frame decoded for an evidence snapshot, or None (logged) if that fails: an alert
    without a picture beats no alert."""
    try:
        return decode_frame(data, max_pixels=max_pixels, max_width=SNAPSHOT_WIDTH)
    except Exception as exc:  # noqa: BLE001
        log.warning("camera %s: no snapshot from %s (%s); alerts go out without it", camera.id, key, exc)
        return None


def alert_messages(config: Config, evidence_store: SnapshotStore, camera: CameraConfig,
                   events: list[IncidentEvent], frame_key: str | None, test: bool,
                   frame: np.ndarray | None = None) -> list[OutboxMessage]:
    """The outbox messages of ``events``: the JSON alert (with its snapshot stored when ``frame``
    is given) and, with ``alerts.cap.enabled``, its CAP copy, at ``mqtt.qos``."""
    out: list[OutboxMessage] = []
    cfg = config
    for event in events:
        ALERTS.labels(event.type, event.state).inc()
        evidence = None
        if frame is not None:
            try:
                evidence = evidence_store.store(event, frame, frame_key)
            except Exception as exc:  # noqa: BLE001 - an alert without a picture beats no alert
                log.warning("camera %s: snapshot of %s not stored (%s); alert goes out without it",
                            camera.id, event.incident_id, exc)
        bucket = cfg.s3.frames_bucket if frame_key else None
        payload = build_alert(event, camera, frame_bucket=bucket, frame_key=frame_key,
                              evidence=evidence, test=test, worker=cfg.worker.name)
        qos = cfg.mqtt.qos
        out.append(OutboxMessage(alert_topic(cfg.mqtt.topic_prefix, event.type, camera.id), payload.to_json(),
                                 qos=qos))
        if cfg.alerts.cap.enabled:
            out.append(OutboxMessage(cap_topic(cfg.mqtt.topic_prefix, event.type, camera.id),
                                     cap_xml(payload, cfg.alerts.cap, cfg.console.zone()).encode(), qos=qos))
        log.info("camera %s: %s %s incident %s seq %d severity %s", camera.id, event.type, event.state,
                 event.incident_id, event.seq, event.severity)
    return out


@dataclass
class BatchResult:
    """What one `process_camera` call did."""

    camera_id: str
    frames: int = 0
    alerts: int = 0
    skipped: Counter = field(default_factory=Counter)
    repeated: int = 0  # processed frames byte-identical to the camera's previous one
    checkpoint: str | None = None
    error: str | None = None

    def as_dict(self) -> dict:
        return {"camera": self.camera_id, "frames": self.frames, "alerts": self.alerts,
                "skipped": dict(self.skipped), "repeated": self.repeated, "checkpoint": self.checkpoint,
                "error": self.error}


def count_batch(result: BatchResult) -> None:
    """A batch's frames in the Prometheus counters (:mod:`pipeline.processing.metrics`)."""
    if result.frames:
        FRAMES_PROCESSED.labels(result.camera_id).inc(result.frames)
    for reason, n in result.skipped.items():
        FRAMES_SKIPPED.labels(result.camera_id, reason).inc(n)
