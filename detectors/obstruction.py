"""Camera obstruction: covered, blurred or frozen images -> ``camera_obstructed`` findings.

Per frame, on a grey copy at the working size (inside the regions, if any):

- **covered / dark**: the image is nearly uniform (grey standard deviation below ``flat_std``),
  or dark (mean below ``dark_level``) with little contrast: lens covered, painted, pitch black.
- **blurred**: sharpness = var(Laplacian) / (var(grey) + 1) falls below ``blur_ratio`` x the
  camera's own baseline. The baseline is learned from the first ``warmup_frames`` clear frames,
  then follows clear frames with time constant ``baseline_tau_s``. Dividing by the contrast keeps
  dusk and night from reading as blur.
- **frozen**: consecutive frames identical (mean absolute difference <= ``frozen_max_diff`` grey
  levels) for ``frozen_after_s`` seconds of frame time: a stuck encoder repeating one picture.

``sensitivity`` scales the thresholds: 0.5 is the default, 1 widens them by half, 0 halves them.
The finding's ``level`` names the cause (covered / blurred / frozen); measurements give the
figures behind it.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
from pydantic import Field

from detectors.base import DetectorSettings, Finding, region_mask, working_size
from detectors.imaging import shrink

EVENT_TYPE = "camera_obstructed"
MAX_BLUR_RATIO = 0.95  # the scaled blur ratio stays below this (1 would call every frame blurred)
DARK_STD_FACTOR = 2  # a dark frame counts as covered up to this many times the flat std
LAPLACIAN_KSIZE = 3  # px at working size: aperture of the Laplacian measuring sharpness
VARIANCE_OFFSET = 1.0  # grey levels squared added to the variance that divides the sharpness (flat frames)
CONFIDENCE_FLOOR = 0.5  # confidence of an active finding is at least this, rising to 1.0 ...
CONFIDENCE_SPAN = 2  # ... over 0..this x flat std (covered, 1.0 at std 0) or this x frozen time (1.0 there)


class ObstructionSettings(DetectorSettings):
    """Settings of the obstruction (camera tampering) detector."""

    flat_std: float = Field(6.0, gt=0, le=60, description="Grey std below this = covered (uniform image)")
    dark_level: float = Field(20.0, ge=0, le=128, description="Mean grey below this with low contrast = dark")
    blur_ratio: float = Field(0.25, gt=0, lt=1, description="Sharpness below this share of baseline = blurred")
    baseline_tau_s: float = Field(300.0, gt=0, le=86400, description="Time constant of the sharpness baseline")
    warmup_frames: int = Field(5, ge=1, le=1000, description="Clear frames that form the first baseline")
    frozen_max_diff: float = Field(0.1, ge=0, le=10, description="Mean abs grey difference that counts as identical")
    frozen_after_s: float = Field(60.0, gt=0, le=86400, description="Identical frames this long = frozen")


class ObstructionDetector:
    """Per-camera obstruction detector: covered/dark, blurred against its own baseline, frozen."""

    event_types: tuple[str, ...] = (EVENT_TYPE,)

    def __init__(self, settings: ObstructionSettings | None = None) -> None:
        self.settings = settings or ObstructionSettings()
        k = 0.5 + self.settings.sensitivity  # 0.5 .. 1.5
        self._flat_std = self.settings.flat_std * k
        self._blur_ratio = min(MAX_BLUR_RATIO, self.settings.blur_ratio * k)
        self._frozen_after_s = self.settings.frozen_after_s / k
        self._shape: tuple[int, int] | None = None
        self._mask: np.ndarray | None = None
        self._pixels = 1  # pixels judged (inside the regions)
        self._prev: np.ndarray | None = None
        self._prev_ts: float | None = None
        self._frozen_since: float | None = None
        self._warmup: list[float] = []
        self._baseline: float | None = None
        self._frames = 0

    def _prepare(self, frame: np.ndarray) -> np.ndarray:
        if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8 or frame.ndim not in (2, 3):
            raise ValueError(f"frame must be a uint8 BGR or grey image, got {getattr(frame, 'shape', type(frame))}")
        h, w = frame.shape[:2]
        wh, ww = working_size(h, w)
        small = shrink(frame, ww, wh, "linear")
        grey = cv2.cvtColor(small, cv2.COLOR_BGR2GRAY) if small.ndim == 3 else small
        if self._shape != grey.shape:  # first frame or a new decode size: start over
            self._shape = grey.shape
            self._mask = region_mask(self.settings.regions, *grey.shape) if self.settings.regions else None
            self._pixels = max(1, grey.size if self._mask is None else cv2.countNonZero(self._mask))
            self._prev, self._prev_ts, self._frozen_since = None, None, None
            self._warmup, self._baseline = [], None
        return grey

    def detect(self, frame: np.ndarray, ts: float) -> list[Finding]:
        s = self.settings
        grey = self._prepare(frame)
        mask = self._mask
        mean, std = (float(v[0][0]) for v in cv2.meanStdDev(grey, mask=mask))
        # variance from exact sums (|Laplacian| <= 8 * 255 fits 16 bits): cheaper than meanStdDev
        lap = cv2.Laplacian(grey, cv2.CV_16S, ksize=LAPLACIAN_KSIZE)
        lap_mean = cv2.mean(lap, mask=mask)[0]
        lap_var = max(0.0, cv2.norm(lap, cv2.NORM_L2SQR, mask=mask) / self._pixels - lap_mean ** 2)
        sharpness = lap_var / (std * std + VARIANCE_OFFSET)

        covered = std < self._flat_std or (mean < s.dark_level and std < DARK_STD_FACTOR * self._flat_std)

        frozen_s = 0.0
        if self._prev is not None and self._prev_ts is not None and ts >= self._prev_ts:
            diff = cv2.norm(grey, self._prev, cv2.NORM_L1, mask=mask) / self._pixels  # mean |change|
            if diff <= s.frozen_max_diff:
                if self._frozen_since is None:
                    self._frozen_since = self._prev_ts
                frozen_s = ts - self._frozen_since
            else:
                self._frozen_since = None
        frozen = frozen_s >= self._frozen_after_s

        ratio = 1.0 if self._baseline is None else sharpness / max(self._baseline, 1e-9)
        blurred = self._baseline is not None and not covered and ratio < self._blur_ratio

        if not covered and not blurred and not frozen:
            self._learn(sharpness, ts)
        self._prev, self._prev_ts = grey, ts
        self._frames += 1

        confidence = 0.0
        level = None
        if covered:
            ramp = _clip01(1.0 - std / (CONFIDENCE_SPAN * self._flat_std))
            level, confidence = "covered", CONFIDENCE_FLOOR + (1.0 - CONFIDENCE_FLOOR) * ramp
        elif blurred:
            ramp = _clip01(1.0 - ratio / self._blur_ratio)
            level, confidence = "blurred", CONFIDENCE_FLOOR + (1.0 - CONFIDENCE_FLOOR) * ramp
        elif frozen:
            ramp = _clip01(frozen_s / (CONFIDENCE_SPAN * self._frozen_after_s))
            level, confidence = "frozen", CONFIDENCE_FLOOR + (1.0 - CONFIDENCE_FLOOR) * ramp
        active = level is not None
        return [Finding(
            type=EVENT_TYPE, active=active, confidence=round(confidence, 4), level=level,
            measurements={"brightness": round(mean, 2), "contrast": round(std, 2),
                          "sharpness": round(sharpness, 4), "sharpness_ratio": round(ratio, 4),
                          "frozen_s": round(frozen_s, 2), "covered": float(covered),
                          "blurred": float(blurred), "frozen": float(frozen)},
            boxes=((0.0, 0.0, 1.0, 1.0),) if active else (),
            ready=self._frames >= s.warmup_frames,
        )]

    def _learn(self, sharpness: float, ts: float) -> None:
        """Fold a clear frame's sharpness into the baseline (median of warm-up, then EMA in time)."""
        if self._baseline is None:
            self._warmup.append(sharpness)
            if len(self._warmup) >= self.settings.warmup_frames:
                self._baseline = float(np.median(self._warmup))
            return
        dt = 0.0 if self._prev_ts is None else max(0.0, ts - self._prev_ts)
        alpha = 1.0 - math.exp(-dt / self.settings.baseline_tau_s)
        self._baseline += alpha * (sharpness - self._baseline)


def _clip01(x: float) -> float:
    return min(1.0, max(0.0, x))
