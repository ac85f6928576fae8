"""One camera's detectors plus its incident tracker: the pure core shared by the flow and `evaluate`.

`FrameAnalyzer.analyze(frame, ts)` runs every enabled detector on a decoded frame and feeds the
findings to the camera's :class:`~pipeline.alerts.incidents.IncidentTracker`; it does no I/O and reads no
clock, so replaying the same frames always gives the same incidents.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from detectors import Detector, Finding, registry
from detectors.scene import SceneVerifier
from detectors.verifier import FireVerifier
from pipeline.alerts.incidents import IncidentEvent, IncidentTracker
from pipeline.config.settings import AlertSettings, CameraConfig
from pipeline.processing.verifier_models import build_verifiers


def build_detectors(camera: CameraConfig) -> list[Detector]:
    """The camera's enabled detectors (:data:`detectors.registry.REGISTRY`), each with its own state."""
    return registry.build(camera.detectors)


def _disabled_types(camera: CameraConfig) -> set[str]:
    d = camera.detectors
    return {name for name in ("fire", "smoke") if not getattr(d, name).enabled}


class FrameAnalyzer:
    """Detectors and incident tracker of one camera; feed frames in time order."""

    def __init__(self, camera: CameraConfig, alerts: AlertSettings,
                 tracker_state: dict[str, Any] | None = None,
                 verifiers: list[FireVerifier | SceneVerifier] | None = None) -> None:
        self.camera = camera
        self.detectors = build_detectors(camera)
        self.verifiers = build_verifiers(camera) if verifiers is None else verifiers
        self._muted = _disabled_types(camera)
        if tracker_state:
            self.tracker = IncidentTracker.from_state(camera.id, alerts, tracker_state)
        else:
            self.tracker = IncidentTracker(camera.id, alerts)
        self.frames = 0

    def detect(self, frame: np.ndarray, ts: float) -> list[Finding]:
        """Run every detector on one frame (BGR uint8)."""
        findings: list[Finding] = []
        for detector in self.detectors:
            findings.extend(f for f in detector.detect(frame, ts) if f.type not in self._muted)
        for verifier in self.verifiers:
            findings = verifier.verify(frame, ts, findings)
        self.frames += 1
        return findings

    def analyze(self, frame: np.ndarray, ts: float) -> tuple[list[Finding], list[IncidentEvent]]:
        """Detect on one frame and update the incidents; returns the findings and the events raised."""
        findings = self.detect(frame, ts)
        return findings, self.tracker.observe(findings, ts)

    def expire(self, now_ts: float) -> list[IncidentEvent]:
        """End incidents whose evidence stopped because frames stopped coming."""
        return self.tracker.expire(now_ts)
