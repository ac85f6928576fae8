"""The learned verification stage of fire: classical cues propose, a trained model confirms.

The classical fire detector stays the cheap proposal generator and the source of temporal
evidence. A frame is a *candidate* when the detector's fire finding is active or its loose colour
share (``candidate_pct``) reaches :data:`CANDIDATE_PCT`. On candidates, at most once per
``step_s`` (:data:`STEP_S`) seconds of frame time, the flame-coloured patches of the frame
(:mod:`detectors.fire_patches`) go through the appearance classifier; the frame's appearance
score is the mean of its two most flame-like patches. Then:

- a live scene (frames change) is on fire when the classical temporal evidence says so **and** the
  appearance score reaches ``live_threshold``: it removes lamps, vehicles and lights that flicker;
- a static scene (a still, a frozen stream: no temporal evidence at all) is on fire when the
  appearance score alone reaches ``still_threshold``, fitted to hold false alarms on stills down.

Between verifications a candidate keeps its last score; a frame that is no candidate clears it.
Models are plain objects handed in by the caller (the pipeline loads the shipped ONNX file), so
this stage does no I/O and reads no clock, like every detector.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Protocol

import cv2
import numpy as np

from detectors.base import Finding
from detectors.fire import STILL_CONFIDENCE
from detectors.fire_patches import candidate_rows, patch_box

CANDIDATE_PCT = 0.05  # % of the region in the loose flame colour that makes a frame a candidate
MAX_BOXES = 4
STEP_S = 2.0  # s of frame time between two scorings of a camera (a fire lasts; ~0.6 ms a scoring)
#: s of frame time between two scorings in annotate-only mode: the boxes of a fire that is already
#: decided are evidence for the operator, refreshed at the scene verifier's candidate pace
ANNOTATE_STEP_S = 6.0


def flame_colour(fire: Finding) -> bool:
    """The fire detector sees enough flame-coloured pixels (``candidate_pct``) for a fire to be
    possible: what makes a frame a candidate."""
    return fire.measurements.get("candidate_pct", 0.0) >= CANDIDATE_PCT


class Classifier(Protocol):
    def predict_proba(self, rows: np.ndarray) -> np.ndarray:
        """P(event) for each row of a float32 (n, features) array."""
        ...


class OnnxClassifier:
    """A binary classifier exported to ONNX, run with OpenCV's ``cv2.dnn`` (one net per camera:
    OpenCV nets are not shared between threads)."""

    def __init__(self, onnx: bytes) -> None:
        self.net = cv2.dnn.readNetFromONNX(np.frombuffer(onnx, np.uint8))

    def predict_proba(self, rows: np.ndarray) -> np.ndarray:
        self.net.setInput(np.ascontiguousarray(rows, np.float32))
        return self.net.forward().reshape(-1)


@dataclass(frozen=True)
class FireVerifierModel:
    """The appearance classifier of fire and the scores at which it confirms."""

    classifier: Classifier
    still_threshold: float = 0.9
    live_threshold: float = 0.5


class FireVerifier:
    """Per-camera verification of the fire finding (see the module docstring)."""

    event_type = "fire"

    def __init__(self, model: FireVerifierModel, step_s: float | None = None, decide: bool = True) -> None:
        self.model = model
        self.decide = decide  # False: only annotate (patch score and boxes); an earlier stage decided
        self.step_s = step_s if step_s is not None else STEP_S if decide else ANNOTATE_STEP_S
        self._score = 0.0
        self._boxes: tuple[tuple[float, float, float, float], ...] = ()
        self._last_ts: float | None = None

    def _due(self, ts: float) -> bool:
        return self._last_ts is None or not 0 <= ts - self._last_ts < self.step_s

    def appearance(self, frame: np.ndarray) -> tuple[float, tuple[tuple[float, float, float, float], ...]]:
        """The frame's appearance score and the boxes of its flame-like patches."""
        picked, rows = candidate_rows(frame)
        if picked.size == 0:
            return 0.0, ()
        p = self.model.classifier.predict_proba(rows)
        order = np.argsort(p)[::-1]
        score = float(p[order[:2]].mean())
        boxes = tuple(patch_box(int(picked[i]), frame.shape) for i in order[:MAX_BOXES] if p[i] >= 0.5)
        return score, boxes

    def _score_if_due(self, frame: np.ndarray, ts: float) -> None:
        if self._due(ts):
            self._score, self._boxes = self.appearance(frame)
            self._last_ts = ts

    def _annotate(self, frame: np.ndarray, ts: float, f: Finding) -> Finding:
        """Annotate-only mode, after the stage that decides: an active fire without boxes of its
        own gets the boxes of its flame-like patches (evidence for the operator), scored when the
        fire starts and then every ``step_s`` (:data:`ANNOTATE_STEP_S`); nothing else is scored,
        so a quiet or a boxed frame costs nothing here."""
        if not f.active:
            self._score, self._boxes, self._last_ts = 0.0, (), None
            return f
        if f.boxes:
            return f
        self._score_if_due(frame, ts)
        return replace(f, boxes=self._boxes, measurements={**f.measurements, "verified_p": round(self._score, 4)})

    def verify(self, frame: np.ndarray, ts: float, findings: list[Finding]) -> list[Finding]:
        """``findings`` with the fire finding decided by the appearance model."""
        return [self._decide(frame, ts, f) if f.type == self.event_type else f for f in findings]

    def _decide(self, frame: np.ndarray, ts: float, f: Finding) -> Finding:
        if not self.decide:
            return self._annotate(frame, ts, f)
        if not f.ready:
            return f
        if not (f.active or flame_colour(f)):  # no candidate: the kept score is cleared
            self._score, self._boxes, self._last_ts = 0.0, (), None
            return replace(f, measurements={**f.measurements, "verified_p": 0.0})
        self._score_if_due(frame, ts)
        p, model = self._score, self.model
        static = f.measurements.get("static_scene", 0.0) >= 1.0
        if static:
            active = p >= model.still_threshold
            lo, hi = STILL_CONFIDENCE
            confidence = lo + (hi - lo) * (p - model.still_threshold) / max(1.0 - model.still_threshold, 1e-6)
        else:
            active = f.active and p >= model.live_threshold
            confidence = f.confidence
        return replace(f, active=active, confidence=round(confidence, 4) if active else 0.0,
                       boxes=(f.boxes or self._boxes) if active else (),
                       measurements={**f.measurements, "verified_p": round(p, 4)})
