"""The scene verifier: a pretrained image backbone judges the whole frame for fire, smoke and flood.

The classical detectors stay the cheap proposals and the temporal evidence; this stage decides.
An ImageNet-pretrained MobileNetV2 (``pipeline/models/scene_backbone.onnx``, run by ``cv2.dnn``)
turns the frame into a 1280-number embedding, and one logistic head per event type, trained
leave-one-source-out on real footage by ``citywatch train``, turns it into P(event).

Cost control (one scoring is ~8-12 ms on one core): a camera is scored on its first frame and
every ``step_s`` for the first ``warmup_s`` (:data:`WARMUP_S`) of frame time of a stream (a new
camera, a restarted worker, a replayed clip: an event already under way is raised within
seconds, not after the idle step); then every ``idle_step_s`` (:data:`IDLE_STEP_S`) of frame
time; every ``candidate_step_s`` (:data:`CANDIDATE_STEP_S`) while the fire detector sees
flame-coloured pixels, until fire and smoke are both on, backing off (6, 12, then 20 s) while
its scorings find both below :data:`UNLIKELY_P` (a street lamp at night stays a candidate for
hours) until the flame colour goes or its share doubles; or while the classical flood cues call
water that the scene has not confirmed; and every ``step_s`` (:data:`STEP_S`) while a decision
is being *confirmed*: a type scored on the other side of its threshold than its state. A type
turns on after :data:`CONFIRM` consecutive scorings at or above its threshold and off after as
many below it, so one odd frame neither starts nor ends an incident; once on, "below" means
below :data:`RELEASE_P` where the threshold is higher (hysteresis: a fitted 0.9 guards the
start, not the end). Between scorings the decision holds; an ongoing event is re-checked at the
idle pace.
Scorings fall on a fixed grid of frame time (the first frame of each step-long slot), so replays
of a stream score the same frames. A *scene change* also rescores, at most every ``step_s``: a
camera turned to a new view, a cut in a news feed, smoke filling the view. It is measured on a
16x9 grey thumbnail against the thumbnail of the last scoring: the median cell changed by
:data:`CHANGE_LEVELS` grey levels or more, so most of the view must change (a ~0.07 ms test);
traffic passing a fixed camera changes a few cells only.

Per type:
- **fire**: on only where the fire detector is ready and sees flame-coloured pixels
  (``candidate_pct`` >= :data:`detectors.verifier.CANDIDATE_PCT`): no flame colour, no fire.
  On a live scene whose classical temporal flame cues are active (the fire finding as the
  detector made it), two consecutive scorings at :data:`CORROBORATED_P` suffice: small or distant
  fires in a wide view score below the head's fitted threshold, and flame motion is a second,
  independent witness (stills have none, so there the fitted threshold stays);
- **smoke**: the scene decides alone (classical haze cues are too weak to gate on, see
  docs/verifier.md), on live scenes only: a still or a frozen stream cannot show smoke drifting,
  and single pictures of dusk skies, auroras and fog look like it, so smoke is judged once the
  fire detector has enough history and reports the scene live (``static_scene`` 0);
- **flood**: on only where the flood detector is ready, i.e. sees a road surface (sky, fog or a
  sea up to the horizon leave it not ready); its water boxes are the evidence.

Models are plain objects handed in by the caller; no I/O, no clock.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Protocol

import cv2
import numpy as np

from detectors.base import Finding
from detectors.verifier import CANDIDATE_PCT, flame_colour

EVENT_TYPES = ("fire", "smoke", "flood")
INPUT_SIZE = 224  # px, square: the backbone's training size
STEP_S = 2.0  # s of frame time between scorings while a switch is being confirmed
CANDIDATE_STEP_S = 6.0  # s between scorings while flame-coloured pixels are in view
IDLE_STEP_S = 20.0  # s between scorings otherwise (slow events: smoke, flood; ongoing events)
WARMUP_S = 10.0  # s of frame time after a stream's first frame during which it is scored every STEP_S
CONFIRM = 2  # consecutive scorings on the same side of the threshold that switch a type
#: P(fire) that confirms a fire the classical temporal cues already see burning on a live scene:
#: the heads' own decision boundary (both classes weigh the same in training). Their fitted
#: thresholds (0.8-0.9) guard the scene alone against false alarms; two independent witnesses
#: (flame motion and the scene) need less from each.
CORROBORATED_P = 0.5
#: P below which a type that is on counts against it (when its threshold is higher): hysteresis.
#: A fitted threshold (fire 0.9) guards the start against false alarms; once on, an event holds
#: until the scene is no longer for it (the heads' indifference point), so a burning scene whose
#: P wavers between 0.6 and 0.95 neither flaps nor is rescored every STEP_S to confirm a switch.
RELEASE_P = 0.5
#: P(fire) and P(smoke) both below this at a scoring: the flame colour in view is unlikely to be a
#: fire (a street lamp, a red sign); the candidate pace backs off, doubling per such scoring.
UNLIKELY_P = 0.25
CHANGE_LEVELS = 24.0  # median absolute grey-level change of the thumbnail cells that makes a new scene
THUMBNAIL = (16, 9)  # px (w, h) of the grey thumbnail the scene-change test compares


class Embedder(Protocol):
    def embed(self, frame: np.ndarray) -> np.ndarray:
        """The frame's embedding: float32, shape (dim,)."""
        ...


class OnnxEmbedder:
    """The backbone exported to ONNX, run with ``cv2.dnn`` on a BGR uint8 frame of any size. An
    OpenCV net must not run in two threads at once: the pipeline shares one per process behind a
    lock. The graph normalises its input itself."""

    def __init__(self, onnx: bytes) -> None:
        self.net = cv2.dnn.readNetFromONNX(np.frombuffer(onnx, np.uint8))

    def embed(self, frame: np.ndarray) -> np.ndarray:
        # INTER_AREA: an anti-aliased reduction, as the backbone saw its training images (the
        # bilinear resize of blobFromImage aliases fine texture away and scores worse, docs/verifier.md)
        small = cv2.resize(frame, (INPUT_SIZE, INPUT_SIZE), interpolation=cv2.INTER_AREA)
        self.net.setInput(cv2.dnn.blobFromImage(small, 1.0 / 255.0, swapRB=True))
        return np.asarray(self.net.forward(), np.float32).reshape(-1)


@dataclass(frozen=True)
class SceneHead:
    """A logistic head on the raw embedding (standardisation folded into the weights)."""

    weights: np.ndarray
    bias: float
    threshold: float

    def probability(self, embedding: np.ndarray) -> float:
        logit = float(embedding @ self.weights) + self.bias
        return 1.0 / (1.0 + math.exp(-max(-60.0, min(60.0, logit))))


@dataclass(frozen=True)
class SceneModel:
    """The backbone and the heads of the types it judges."""

    embedder: Embedder
    heads: dict[str, SceneHead]

    def probabilities(self, frame: np.ndarray) -> dict[str, float]:
        z = self.embedder.embed(frame)
        return {name: head.probability(z) for name, head in self.heads.items()}


@dataclass
class _TypeState:
    p: float = 0.0
    above: int = 0
    below: int = 0
    on: bool = False

    def update(self, p: float, threshold: float, confirm: int) -> None:
        """One scoring: ``confirm`` in a row at or above ``threshold`` switch the type on; once on,
        as many below ``threshold`` or :data:`RELEASE_P`, whichever is lower, switch it off."""
        self.p = p
        if p >= (min(threshold, RELEASE_P) if self.on else threshold):
            self.above, self.below = self.above + 1, 0
        else:
            self.above, self.below = 0, self.below + 1
        if self.above >= confirm:
            self.on = True
        elif self.below >= confirm:
            self.on = False


class SceneVerifier:
    """Per-camera scene verification of fire, smoke and flood (see the module docstring)."""

    def __init__(self, model: SceneModel, step_s: float = STEP_S, idle_step_s: float = IDLE_STEP_S,
                 confirm: int = CONFIRM, candidate_step_s: float = CANDIDATE_STEP_S,
                 warmup_s: float = WARMUP_S) -> None:
        self.model = model
        self.step_s, self.idle_step_s, self.confirm = step_s, idle_step_s, confirm
        self.warmup_s = warmup_s
        self.candidate_step_s = min(candidate_step_s, idle_step_s)
        self.scorings = 0
        self._last_ts: float | None = None
        self._start_ts: float | None = None
        self._thumbnail: np.ndarray | None = None
        self._states = {name: _TypeState() for name in model.heads}
        self._corroborated = _TypeState()  # fire at CORROBORATED_P, for flames the classical cues see
        #: consecutive scorings of the flame colour now in view with P(fire) and P(smoke) below
        #: UNLIKELY_P (capped: 2**8 candidate steps are far past the idle one), and the
        #: flame-coloured share at the last scoring
        self._unlikely, self._unlikely_pct = 0, 0.0

    def _step(self, ts: float, findings: list[Finding]) -> float:
        if self._start_ts is not None and ts - self._start_ts < self.warmup_s - 1e-9:
            return self.step_s  # a new stream: its state is unknown, look closely at first
        if any(s.above and not s.on or s.below and s.on for s in self._states.values()):
            return self.step_s  # confirming a switch
        burning = [self._states[t].on for t in ("fire", "smoke") if t in self._states]
        if not (burning and all(burning)) and any(f.type == "fire" and flame_colour(f) for f in findings):
            # a fire or its smoke may be starting (once both are on: idle); each scoring that
            # finds both unlikely doubles the step, up to the idle one (a street lamp at night),
            # until the flame colour goes or its share doubles (something new is burning)
            return min(self.idle_step_s, self.candidate_step_s * 2 ** self._unlikely)
        flood = self._states.get("flood")
        if flood is not None and not flood.on and any(f.type == "flood" and f.active for f in findings):
            return self.candidate_step_s  # the classical water cues propose a flood
        return self.idle_step_s

    def _due(self, ts: float, findings: list[Finding], frame: np.ndarray) -> bool:
        """Whether a stream already scored is due again (the first frame of a stream always is)."""
        assert self._last_ts is not None and self._thumbnail is not None  # kept at every scoring
        # on a fixed grid of frame time, so two replays of a stream score the same frames
        step = self._step(ts, findings)
        if math.floor(ts / step + 1e-9) > math.floor(self._last_ts / step + 1e-9):
            return True
        return ts - self._last_ts >= self.step_s - 1e-9 and \
            float(np.median(cv2.absdiff(self.thumbnail(frame), self._thumbnail))) >= CHANGE_LEVELS

    @staticmethod
    def thumbnail(frame: np.ndarray) -> np.ndarray:
        """The grey thumbnail the scene-change test compares."""
        small = cv2.resize(frame, THUMBNAIL, interpolation=cv2.INTER_AREA)  # area means, then grey: cheap
        return small if small.ndim == 2 else cv2.cvtColor(small, cv2.COLOR_BGR2GRAY)

    def verify(self, frame: np.ndarray, ts: float, findings: list[Finding]) -> list[Finding]:
        """``findings`` with fire, smoke and flood decided by the scene model."""
        new_stream = self._last_ts is None or ts < self._last_ts  # the first frame, or time went back
        pct = max((f.measurements.get("candidate_pct", 0.0) for f in findings if f.type == "fire"),
                  default=0.0)  # the flame-coloured share
        if new_stream or pct < CANDIDATE_PCT or pct >= 2 * self._unlikely_pct + CANDIDATE_PCT:
            self._unlikely = 0  # no flame colour, or much more of it: the candidate pace again
        if new_stream or self._due(ts, findings, frame):  # the thumbnail only when compared or kept
            for name, p in self.model.probabilities(frame).items():
                self._states[name].update(p, self.model.heads[name].threshold, self.confirm)
                if name == "fire":
                    self._corroborated.update(p, min(CORROBORATED_P, self.model.heads[name].threshold), self.confirm)
            if new_stream:
                self._start_ts = ts
            self._last_ts, self._thumbnail = ts, self.thumbnail(frame)
            self.scorings += 1
            unlikely = pct >= CANDIDATE_PCT and \
                all(self._states[t].p < UNLIKELY_P for t in ("fire", "smoke") if t in self._states)
            self._unlikely = min(self._unlikely + 1, 8) if unlikely else 0
            self._unlikely_pct = pct
        fire = next((f for f in findings if f.type == "fire"), None)
        live = self.scorings > 0 if fire is None else \
            fire.ready and fire.measurements.get("static_scene", 0.0) < 1.0
        return [self._decide(f, live) if f.type in self._states else f for f in findings]

    def _decide(self, f: Finding, live: bool) -> Finding:
        state = self._states[f.type]
        measurements = {**f.measurements, "scene_p": round(state.p, 4)}
        ready = live if f.type == "smoke" else f.ready  # flood: ready = a road is in view
        flames = f.type != "fire" or flame_colour(f)
        on = state.on or f.type == "fire" and f.active and live and self._corroborated.on
        active = ready and flames and on
        confidence = round(state.p, 4) if active else 0.0
        return replace(f, active=active, confidence=confidence, ready=ready,
                       boxes=f.boxes if active else (), measurements=measurements)
