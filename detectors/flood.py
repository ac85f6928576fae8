"""Flood detection: water evidence in the road region against a dry reference.

Per frame (at ~320 px wide) every road pixel is tested for standing water from the frame alone
(texture loss, low saturation, horizontal ripple/reflection structure, see ``flood_features``).
Once the camera has shown enough frames judged dry, a per-pixel dry reference (running median
of texture and orientation, so passing cars do not count) is used instead: a pixel only counts
as water if it *changed* toward water (its texture dropped well below the dry reference, or
horizontal ripple structure appeared).
So a pond beside the road or a naturally smooth road surface never alarms on a fixed camera,
and a wet road, which keeps its texture, does not either. A global scene change held for a few
frames (day/night switch, IR mode, camera moved) drops the reference and starts a new one.

The flooded share of the road is smoothed over time (``smoothing_s``) and switched with
hysteresis, so a car or a shadow passing through does not toggle the decision.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
from pydantic import Field

from detectors.base import DetectorSettings, Finding, region_mask, working_size
from detectors.flood_features import (
    ORIENTATION_WINDOW,
    DryReference,
    WaterThresholds,
    clean_mask,
    shrink,
    surface_mask,
    thumbnail,
    water_level_index,
    water_mask,
    water_maps,
)

TEXTURE_LOSS = 0.6  # texture below this share of the dry reference counts as lost
ORIENTATION_RISE = 0.3  # rise of the ripple orientation over the reference that counts
RELEASE = 0.7  # hysteresis: stay active until the score falls below RELEASE * threshold
SCENE_CHANGE_FRAMES = 3  # consecutive changed frames before re-baselining


class FloodSettings(DetectorSettings):
    """Settings of the flood detector."""

    road_top: float = Field(
        0.4, ge=0.0, le=0.9,
        description="Without regions, the road is the part of the frame below this height share",
    )
    min_flooded_pct: float = Field(
        18.0, gt=0.0, le=90.0,
        description="Water-covered share of the road region (%) that raises the flag at sensitivity 0.5",
    )
    smoothing_s: float = Field(
        3.0, ge=0.0, le=600.0, description="Time constant (s) of the flooded-share average"
    )
    reference_s: float = Field(
        300.0, ge=30.0, le=86_400.0,
        description="How slowly the dry reference follows the scene (s); it is first used after "
                    "dry frames spread over a 30th of this span (10 s by default)",
    )
    scene_change: float = Field(
        0.7, gt=0.0, le=5.0,
        description="Mean thumbnail difference (in brightness std units) that counts as a new scene",
    )
    working_width: int = Field(320, ge=80, le=1280, description="Width (px) the detector works at")


class FloodDetector:
    """Standing water on the road: flooded share, water-level index and boxes, per camera."""

    event_types = ("flood",)

    def __init__(self, settings: FloodSettings | None = None) -> None:
        self.settings = settings or FloodSettings()
        s = self.settings.sensitivity
        self.threshold = self.settings.min_flooded_pct / 100.0 * 2.0 ** ((0.5 - s) * 2.0)
        self.pixel_rule = WaterThresholds(max_texture=3.0 * (0.8 + 0.4 * s))
        self._shape: tuple[int, int] | None = None
        self._region = np.zeros((0, 0), bool)
        self._region_px = 0
        self._context = np.zeros((0, 0), np.uint8)
        self._reset_scene()

    def _reset_scene(self) -> None:
        self._reference: DryReference | None = None
        self._scene_thumb: np.ndarray | None = None
        self._scene_brightness = 0.0
        self._changed_frames = 0
        self._score: float | None = None
        self._last_ts: float | None = None
        self.active = False

    def _setup(self, height: int, width: int) -> None:
        """Region masks for a working size; a new frame size is a new scene."""
        self._shape = (height, width)
        regions = self.settings.regions
        mask = region_mask(regions, height, width) > 0
        if not regions:
            mask[: int(round(height * self.settings.road_top))] = False
        context = ~mask
        context = context if context.mean() >= 0.15 else np.ones_like(mask)
        self._context = context.astype(np.uint8) * 255
        # Work only on the rows holding the region (plus the filter margin): the sky is skipped.
        rows = np.flatnonzero(mask.any(axis=1))
        pad = ORIENTATION_WINDOW // 2 + 1
        top, bottom = (0, height)
        if rows.size:
            top, bottom = max(0, int(rows[0]) - pad), min(height, int(rows[-1]) + 1 + pad)
        self._rows = (top, bottom)
        self._region = mask[top:bottom]
        self._region_px = int(np.count_nonzero(self._region))
        self._reset_scene()

    def _scene_changed(self, gray: np.ndarray) -> bool:
        """True once the view outside the road differed from the reference for a few frames."""
        brightness = cv2.mean(gray, mask=self._context)[0]
        thumb = thumbnail(np.where(self._context > 0, gray, np.uint8(brightness)))
        if self._scene_thumb is None:
            self._scene_thumb, self._scene_brightness = thumb, brightness
            return False
        ratio = (brightness + 10.0) / (self._scene_brightness + 10.0)
        differs = float(np.abs(thumb - self._scene_thumb).mean()) > self.settings.scene_change
        if differs or not (1 / 1.6 < ratio < 1.6):
            self._changed_frames += 1
        else:
            self._changed_frames = 0
        if self._changed_frames >= SCENE_CHANGE_FRAMES:
            self._reference = None
            self._scene_thumb = thumb
            self._scene_brightness = brightness
            self._changed_frames = 0
            return True
        return False

    def detect(self, frame: np.ndarray, ts: float) -> list[Finding]:
        """Judge one BGR uint8 frame (any size) taken at ``ts`` seconds."""
        if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
            raise ValueError(f"flood detector needs a BGR uint8 frame, got {frame.dtype} {frame.shape}")
        height, width = working_size(*frame.shape[:2], target_width=self.settings.working_width)
        if self._shape != (height, width):
            self._setup(height, width)
        small = shrink(frame, width, height)
        gray = cv2.cvtColor(small, cv2.COLOR_BGR2GRAY)
        self._scene_changed(gray)
        top, bottom = self._rows
        maps = water_maps(small[top:bottom], gray[top:bottom])

        usable = self._region & maps.valid
        usable_px = int(np.count_nonzero(usable))
        if usable_px < 0.25 * max(self._region_px, 1):
            measurements = dict.fromkeys(
                ("flooded_pct", "flooded_pct_smoothed", "water_level_index", "reference_frames"), 0.0)
            return [Finding("flood", False, 0.0, measurements, ready=False)]

        reference = self._reference
        if reference is not None and reference.mature:
            # Against the dry reference: the surface must have changed toward water.
            lost = maps.texture < TEXTURE_LOSS * reference.texture()
            rippled = (maps.orientation > self.pixel_rule.min_orientation) & (
                maps.orientation > reference.orientation + ORIENTATION_RISE)
            candidate = surface_mask(maps, self.pixel_rule) & usable & (lost | rippled)
        else:
            candidate = water_mask(maps, self.pixel_rule) & usable
        water, boxes = clean_mask(candidate, min_area_px=max(4, int(0.005 * usable_px)))
        water &= usable
        flooded = float(np.count_nonzero(water)) / usable_px

        self._score = self._smooth(flooded, ts)
        self.active = bool(self._score >= (RELEASE if self.active else 1.0) * self.threshold)
        if not self.active and flooded < 0.5 * self.threshold:
            self._update_reference(maps.texture, maps.orientation, ts)

        confidence = 1.0 / (1.0 + math.exp(-6.0 * (self._score / self.threshold - 1.0)))
        measurements = {
            "flooded_pct": round(100.0 * flooded, 2),
            "flooded_pct_smoothed": round(100.0 * self._score, 2),
            "water_level_index": round(water_level_index(water, self._region), 3),
            "reference_frames": float(reference.samples if reference else 0),
        }
        norm = [(x / width, (y + top) / height, w / width, h / height) for x, y, w, h in boxes[:5]]
        return [Finding("flood", self.active, round(confidence, 3), measurements, tuple(norm))]

    def _smooth(self, flooded: float, ts: float) -> float:
        """Exponential average over time (frame-rate independent)."""
        if self._score is None or self._last_ts is None or self.settings.smoothing_s == 0:
            self._last_ts = ts
            return flooded
        dt = min(max(ts - self._last_ts, 0.0), 60.0)
        self._last_ts = ts
        alpha = 1.0 - math.exp(-dt / self.settings.smoothing_s)
        return self._score + alpha * (flooded - self._score)

    def _update_reference(self, texture: np.ndarray, orientation: np.ndarray, ts: float) -> None:
        if self._reference is None:
            self._reference = DryReference(self.settings.reference_s)
        self._reference.update(texture, orientation, ts)
