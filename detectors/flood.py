"""Flood detection: water evidence in the road region against a dry reference.

Per frame (at ~320 px wide; the evidence is kept on a grid of 2x2 px cells, ~160x90) every road
cell is tested for standing water from the frame alone (texture loss, low saturation,
horizontal ripple/reflection structure, see ``flood_features``).
Once the camera has shown enough frames judged dry, a per-cell dry reference (running median
of texture and orientation, so passing cars do not count) is used instead: a cell only counts
as water if it *changed* toward water (its texture dropped well below the dry reference, or
horizontal ripple structure appeared).
Smooth sheets connected to the top of the frame (sky, fog, a calm sea up to the horizon, see
``flood_sky``) are never road: their cells do not count, and a view left with too little road
is not judged.
So a pond beside the road or a naturally smooth road surface never alarms on a fixed camera,
and a wet road, which keeps its texture, does not either. A global scene change held for a few
frames (day/night switch, IR mode, camera moved) drops the reference and starts a new one.

Calm puddles that mirror a blue sky (brighter than the ground, bluer than their own rim,
glass-smooth, flat, see ``flood_mirror``; searched at most every 4 s) are unambiguous water,
so a smaller share of the road (``min_puddle_pct``) raises the flag.

A cold start (no mature dry reference: a still, a new camera, a re-baselined scene) has nothing to
compare against, and from one picture fog, sky, smooth asphalt and water look alike: there the
evidence must reach ``cold_start_factor`` times the thresholds. Against a mature dry
reference they must be new (the reference also keeps where puddles lie in dry frames), so a
permanent pond in view stops counting once the reference has learnt it; while no reference is
mature (stills, the first ~10 s) puddle evidence does not hold the warm-up back.

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
    CELL,
    ORIENTATION_WINDOW,
    DryReference,
    LevelGauge,
    WaterThresholds,
    clean_mask,
    mask_to_cells,
    surface_mask,
    thumbnail,
    to_cells,
    water_maps,
    water_mask,
)
from detectors.flood_mirror import ground_levels, mirror_puddles
from detectors.flood_sky import open_sky
from detectors.imaging import shrink

TEXTURE_LOSS = 0.6  # texture below this share of the dry reference counts as lost
ORIENTATION_RISE = 0.3  # rise of the ripple orientation over the reference that counts
RELEASE = 0.7  # hysteresis: stay active until the score falls below RELEASE * threshold
SCENE_CHANGE_FRAMES = 3  # consecutive changed frames before re-baselining
PUDDLE_INTERVAL_S = 4.0  # calm puddles form over minutes: search them at most this often (cost)
SKY_INTERVAL_S = 2.0  # the sky and a sea change slowly: look for them at most this often (cost)
SENSITIVITY_FACTOR = 2.0  # the area thresholds are divided (sensitivity 1) or multiplied (0) by this
MAX_TEXTURE = 3.0  # smoothest texture (mean |Laplacian| per brightness, x100) that can be water ...
MAX_TEXTURE_AT_ZERO = 0.8  # ... times this at sensitivity 0 ...
MAX_TEXTURE_PER_SENSITIVITY = 0.4  # ... plus this per unit of sensitivity (x1.0 at 0.5, x1.2 at 1)
MIN_CONTEXT_SHARE = 0.15  # fraction of the frame outside the road needed to judge scene changes by it
THUMB_STD_FLOOR = 8.0  # grey levels added to the thumbnail's std before normalising (flat scenes)
BRIGHTNESS_OFFSET = 10.0  # grey levels added to both brightnesses before taking their ratio (dark scenes)
BRIGHTNESS_CHANGE_RATIO = 1.6  # context brightness changed by more than this factor: a changed frame
MIN_USABLE_SHARE = 0.25  # fraction of the road that must be usable (lit, no sky) to judge
MIN_SHEET_PX = 4  # smallest water sheet, cells (2x2 px each) ...
MIN_SHEET_SHARE = 0.005  # ... or this fraction of the usable road, whichever is larger
CALM_SHARE = 0.5  # below this fraction of a threshold the road is calm: the dry reference may learn
CONFIDENCE_SLOPE = 6.0  # steepness of the logistic confidence around the threshold (score 1.0)
MAX_BOXES = 5  # evidence boxes reported per finding, largest first
MAX_GAP_S = 60.0  # a gap between frames weighs in the smoothing as at most this many seconds


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
    min_puddle_pct: float = Field(
        1.0, gt=0.0, le=90.0,
        description="Share of the road region (%) under sky-mirroring puddles that raises the flag "
                    "at sensitivity 0.5 (calm puddles are unambiguous water, hence lower)",
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
    verify: bool = Field(
        True, description="Decide flood with the learned scene verifier (detectors.scene) where the "
                          "road is in view; off = the classical water cues alone decide")
    cold_start_factor: float = Field(
        2.5, ge=1.0, le=10.0,
        description="Until the dry reference is mature (stills, a new camera, a re-baselined scene) "
                    "the water evidence must reach this many times the thresholds: without a dry "
                    "view of the road, sky, fog, smooth asphalt and water look alike")


class FloodDetector:
    """Standing water on the road: flooded share, water-level index and boxes, per camera."""

    event_types: tuple[str, ...] = ("flood",)

    def __init__(self, settings: FloodSettings | None = None) -> None:
        self.settings = settings or FloodSettings()
        s = self.settings.sensitivity
        factor = SENSITIVITY_FACTOR ** ((0.5 - s) * 2.0)
        self.threshold = self.settings.min_flooded_pct / 100.0 * factor
        self.puddle_threshold = self.settings.min_puddle_pct / 100.0 * factor
        self.pixel_rule = WaterThresholds(max_texture=MAX_TEXTURE * (MAX_TEXTURE_AT_ZERO + MAX_TEXTURE_PER_SENSITIVITY * s))
        self._shape: tuple[int, int] | None = None
        self._region = np.zeros((0, 0), bool)
        self._region_px = 0
        self._context = np.zeros((0, 0), np.uint8)
        self._reset_scene()

    def _reset_scene(self) -> None:
        self._reference: DryReference | None = None
        self._levels_for: DryReference | None = None  # the reference self._levels come from ...
        self._levels_samples = 0  # ... after this many samples
        self._levels: tuple[np.ndarray, ...] = ()
        self._scene_thumb: np.ndarray | None = None
        self._scene_brightness = 0.0
        self._changed_frames = 0
        self._score: float | None = None  # smoothed evidence, 1.0 = at the threshold
        self._flooded = 0.0  # smoothed flooded share
        self._last_ts: float | None = None
        self._puddles: np.ndarray | None = None
        self._puddles_ts = 0.0
        self._sky: np.ndarray | None = None  # cells of the road region under open sky (flood_sky)
        self._sky_ts = 0.0
        self.active = False

    def _setup(self, height: int, width: int) -> None:
        """Region masks for a working size; a new frame size is a new scene."""
        self._shape = (height, width)
        regions = self.settings.regions
        mask = region_mask(regions, height, width) > 0
        if not regions:
            mask[: int(round(height * self.settings.road_top))] = False
        context = ~mask
        context = context if context.mean() >= MIN_CONTEXT_SHARE else np.ones_like(mask)
        self._context = context.astype(np.uint8) * 255
        self._context_px = max(int(np.count_nonzero(context)), 1)
        # Share of each thumbnail cell outside the context: filled with the context's brightness.
        self._thumb_fill = 1.0 - thumbnail(context.astype(np.float32))
        # Work only on the rows holding the region (plus the filter margin): the sky is skipped.
        # The span is cut to whole grid cells (even row count and width).
        rows = np.flatnonzero(mask.any(axis=1))
        pad = ORIENTATION_WINDOW // 2 + 1
        top, bottom = (0, height)
        if rows.size:
            top, bottom = max(0, int(rows[0]) - pad), min(height, int(rows[-1]) + 1 + pad)
        top -= top % CELL
        bottom -= (bottom - top) % CELL
        self._rows = (top, bottom)
        self._cols = width - width % CELL
        self._region_full = mask[top:bottom, : self._cols]
        self._region = mask_to_cells(self._region_full) if bottom > top and self._cols else \
            np.zeros((0, 0), bool)
        self._region_px = int(np.count_nonzero(self._region))
        self._gauge = LevelGauge(self._region)
        self._reset_scene()

    def _scene_changed(self, gray: np.ndarray) -> bool:
        """True once the view outside the road differed from the reference for a few frames.
        Compared on a brightness-normalised thumbnail of the context (road filled with the
        context's mean brightness) and by the context's mean brightness itself."""
        outside = cv2.bitwise_and(gray, self._context)
        brightness = cv2.sumElems(outside)[0] / self._context_px
        thumb = thumbnail(outside)
        thumb += self._thumb_fill * np.float32(brightness)
        mean, std = cv2.meanStdDev(thumb)
        thumb -= np.float32(mean[0, 0])
        thumb *= np.float32(1.0 / (std[0, 0] + THUMB_STD_FLOOR))
        if self._scene_thumb is None:
            self._scene_thumb, self._scene_brightness = thumb, brightness
            return False
        ratio = (brightness + BRIGHTNESS_OFFSET) / (self._scene_brightness + BRIGHTNESS_OFFSET)
        differs = cv2.norm(thumb, self._scene_thumb, cv2.NORM_L1) / thumb.size > self.settings.scene_change
        if differs or not (1 / BRIGHTNESS_CHANGE_RATIO < ratio < BRIGHTNESS_CHANGE_RATIO):
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
        height, width = working_size(frame.shape[0], frame.shape[1], target_width=self.settings.working_width)
        if self._shape != (height, width):
            self._setup(height, width)
        small = shrink(frame, width, height, "halving")
        gray = cv2.cvtColor(small, cv2.COLOR_BGR2GRAY)
        if self._scene_changed(gray):
            self._puddles = self._sky = None
        top, bottom = self._rows
        rows, gray_rows = small[top:bottom, : self._cols], gray[top:bottom, : self._cols]
        if self._region_px:
            cells = to_cells(rows)
            maps = water_maps(cells, gray_rows)
            if self._sky is None or not 0.0 <= ts - self._sky_ts < SKY_INTERVAL_S:
                self._sky, self._sky_ts = mask_to_cells(open_sky(gray)[top:bottom, : self._cols]), ts
            usable = self._region & maps.valid & ~self._sky  # sky, fog or a sea up to the horizon: no road
            usable_px = int(np.count_nonzero(usable))
        if not self._region_px or usable_px < MIN_USABLE_SHARE * self._region_px:
            measurements = dict.fromkeys(("flooded_pct", "flooded_pct_smoothed", "puddle_pct",
                                          "water_level_index", "reference_frames"), 0.0)
            return [Finding("flood", False, 0.0, measurements, ready=False)]

        reference = self._reference
        mature = reference is not None and reference.mature
        if self._puddles is None or not 0.0 <= ts - self._puddles_ts < PUDDLE_INTERVAL_S:
            ground = ground_levels(cells, self._region)
            self._puddles = mask_to_cells(mirror_puddles(rows, gray_rows, self._region_full, ground,
                                                         self.pixel_rule.max_texture))
            self._puddles_ts = ts
        puddles = self._puddles
        if mature:
            assert reference is not None  # mature implies a reference
            # Against the dry reference: the surface must have changed toward water.
            lost_below, ripple_above, no_pond = self._change_levels(reference)
            changed = (maps.texture < lost_below) | (maps.orientation > ripple_above)
            candidate = surface_mask(maps, self.pixel_rule) & usable & changed
            puddles = puddles & no_pond  # new since the dry reference, not a pond
        else:
            candidate = water_mask(maps, self.pixel_rule) & usable
        water, boxes = clean_mask(candidate, min_area_px=max(MIN_SHEET_PX, int(MIN_SHEET_SHARE * usable_px)))
        if puddles.any():
            water, boxes = clean_mask(water | puddles, min_area_px=1)  # boxes of sheets and puddles
        water &= usable | puddles
        flooded = float(np.count_nonzero(water)) / usable_px
        puddled = float(np.count_nonzero(puddles)) / usable_px
        evidence = max(flooded / self.threshold, puddled / self.puddle_threshold)  # 1.0 = at threshold
        if not mature:
            evidence /= self.settings.cold_start_factor

        alpha = self._smoothing_weight(ts)
        self._score = evidence if self._score is None else self._score + alpha * (evidence - self._score)
        self._flooded += alpha * (flooded - self._flooded)
        self.active = bool(self._score >= (RELEASE if self.active else 1.0))
        calm = flooded < CALM_SHARE * self.threshold
        if mature:
            learn = calm and not self.active and puddled < CALM_SHARE * self.puddle_threshold
        else:  # warm-up: puddle evidence alone (a pond in view?) must not hold the reference back
            learn = calm and not (self.active and puddled < CALM_SHARE * self.puddle_threshold)
        if learn:
            self._update_reference(maps.texture, maps.orientation, ts, self._puddles)

        confidence = 1.0 / (1.0 + math.exp(-CONFIDENCE_SLOPE * (self._score - 1.0)))
        measurements = {
            "flooded_pct": round(100.0 * flooded, 2),
            "flooded_pct_smoothed": round(100.0 * self._flooded, 2),
            "puddle_pct": round(100.0 * puddled, 2),
            "water_level_index": round(self._gauge.level(water), 3),
            "reference_frames": float(reference.samples if reference else 0),
        }
        norm = [(CELL * x / width, (CELL * y + top) / height, CELL * w / width, CELL * h / height)
                for x, y, w, h in boxes[:MAX_BOXES]]
        return [Finding("flood", self.active, round(confidence, 3), measurements, tuple(norm))]

    def _change_levels(self, reference: DryReference) -> tuple[np.ndarray, ...]:
        """Per cell, from the dry reference (kept until it takes its next sample): the texture
        below which texture counts as lost, the orientation above which ripples appeared (also
        above the absolute ripple rule), and where no pond lies."""
        if self._levels_for is not reference or self._levels_samples != reference.samples:
            self._levels_for, self._levels_samples = reference, reference.samples
            self._levels = (TEXTURE_LOSS * reference.texture(),
                            np.maximum(reference.orientation + ORIENTATION_RISE,
                                       np.float32(self.pixel_rule.min_orientation)),
                            ~reference.puddles)
        return self._levels

    def _smoothing_weight(self, ts: float) -> float:
        """Weight of this frame in the exponential averages (frame-rate independent; 1 at first)."""
        last, self._last_ts = self._last_ts, ts
        if self._score is None or last is None or self.settings.smoothing_s == 0:
            return 1.0
        dt = min(max(ts - last, 0.0), MAX_GAP_S)
        return 1.0 - math.exp(-dt / self.settings.smoothing_s)

    def _update_reference(self, texture: np.ndarray, orientation: np.ndarray, ts: float,
                          puddles: np.ndarray) -> None:
        if self._reference is None:
            self._reference = DryReference(self.settings.reference_s)
        self._reference.update(texture, orientation, ts, puddles)
