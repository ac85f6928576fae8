"""Traffic congestion: occupancy and speed in the road region, graded by level of service.

Per frame, on a ~320 px wide grey copy, compared with the newest kept frame at least
``compare_after_s`` (0.5 s) older - so the measures mean the same from 1 to 30 frames/s:

* **road zone** - lanes learned from motion: cells that changed join the zone and stay for
  ``zone_memory_s`` (10 min), so a queue that stops stays in it. Until enough motion was seen (and
  for stills) the zone is the smooth grey surface (asphalt) with the holes vehicles punch in it
  closed. Green vegetation never counts. The colour masks (vegetation, grey road) and the asphalt
  zone follow the scene, not each vehicle: they are worked out every 2 s of frame time, and at
  once when much of the frame changed.
* **occupancy** - share of the zone covered by vehicle texture (local contrast). Single-frame
  evidence: stopped vehicles never fade into a background model, and stills can be judged.
* **motion** - the most contrasted changed spots are tracked with pyramidal Lucas-Kanade and a
  forward-backward check. ``fast_pct`` is the share moving faster than ``slow_speed`` frame
  widths/s (lost tracks count as fast: at 1-2 frames/s free-flowing cars jump further than LK can
  follow, crawling ones track well); ``speed`` is their median in frame widths per second.

Jammed (LOS F, level heavy, active) = dense and stalled, on something that looks like a road with
vehicles: neighbouring moving spots move alike (rigidity; flames and leaves do not) and some bare
road shows between the vehicles (foliage, smoke and neon at night do not). A frame where a
quarter of the region changed but little moved far is camera shake: not judged (ready=False).
"""

from __future__ import annotations

import math
from collections import deque
from typing import cast

import cv2
import numpy as np
from pydantic import Field

from detectors.base import DetectorSettings, Finding, region_mask, working_size
from detectors.congestion_features import (
    asphalt_mask,
    changed_mask,
    coarse,
    colour_masks,
    count,
    count_vehicles,
    half_size,
    lanes_from_motion,
    local_contrast,
    road_zone_from_asphalt,
    smooth,
    track_motion,
    vehicle_texture,
)
from detectors.imaging import shrink

LEVELS = ("free", "free", "free", "medium", "medium", "heavy")  # by LOS A..F
FREE_FLOW = 0.85  # share of moving spots above the crawl speed that counts as free-flow speed
_SQUARE3 = np.ones((3, 3), np.uint8)
MASK_REFRESH_S = 2.0  # frame time between re-computations of the colour masks and asphalt zone
SENSITIVITY_SWING = 0.6  # thresholds move by this fraction per unit of sensitivity (+-30 % at 0 and 1)
MOTION_CELL = 4  # px at working size: side of the cells where motion was last seen (lane memory)
LANES_TRY_SHARE = 0.25  # lanes are worked out once recent motion covers this fraction of min_zone
STRUCTURE_FIRST_DT_S = 0.5  # s: weight of the first free-flow frame in the structure average
STRUCTURE_MAX_DT_S = 5.0  # s: a longer gap between free-flow frames weighs as this long
STRUCTURE_LEVEL = 127.5  # 0..255 running mean: a pixel textured more than half the time is structure
RIGIDITY_TIME_S = 30.0  # s: time constant of the running rigidity mean ...
RIGIDITY_MIN_WEIGHT = 0.05  # ... where each new measurement weighs at least this much
HISTORY_PER_INTERVAL = 4  # frames kept per compare_after_s at high frame rates
MIN_FREE_SPOTS = 8  # moving spots needed before a free-flowing frame teaches the structure
CONFIDENCE_FLOOR = 0.5  # confidence of a dense frame that is not stalled; 1.0 when fully stalled
BOX_CELL = 4  # px at working size: cells the evidence boxes are found on


class CongestionSettings(DetectorSettings):
    """Settings of the congestion detector (thresholds are for sensitivity 0.5)."""

    working_width: int = Field(320, ge=80, le=1280, description="Width (px) the detector works at")
    heavy_occupancy_pct: float = Field(
        23.0, gt=0, le=100, description="Road occupancy (%) from which traffic counts as dense")
    medium_occupancy_pct: float = Field(
        17.0, gt=0, le=100, description="Road occupancy (%) from which traffic counts as medium")
    stalled_fast_pct: float = Field(
        40.0, gt=0, le=100,
        description="Dense traffic is stalled when at most this share (%) of its moving spots "
                    "move faster than slow_speed")
    slow_speed: float = Field(
        0.1, gt=0, le=1, description="Crawling speed limit in frame widths per second")
    min_rigidity: float = Field(
        0.4, ge=0, le=1,
        description="For a jam, neighbouring moving spots must move alike (as on a vehicle) at "
                    "least this often (0..1, running mean); flames flicker every which way")
    min_road_surface_pct: float = Field(
        10.0, ge=0, le=100,
        description="For a jam, at least this share (%) of the road zone must look like bare road "
                    "(smooth, grey, lit) between the vehicles")
    max_changed_pct: float = Field(
        25.0, gt=0, le=100,
        description="A frame where more of the region changed (%) than this since the comparison "
                    "frame shows camera motion or a light jump and is not judged")
    structure_learn_s: float = Field(
        10.0, gt=0,
        description="Time constant (s) for learning the static texture of the road (markings, "
                    "kerbs, parked cars) from free-flowing frames; it is not counted as vehicles")
    compare_after_s: float = Field(
        0.5, gt=0, le=10, description="Compare each frame with one at least this old (s)")
    zone_memory_s: float = Field(
        600.0, gt=0, description="How long a lane where traffic moved stays in the road zone (s)")
    min_zone_pct: float = Field(
        8.0, gt=0, le=100, description="Smallest road zone (% of the region) that is judged")
    change_level: int = Field(18, ge=1, le=255, description="Grey change that counts as motion")
    edge_level: int = Field(30, ge=1, le=255, description="Local contrast that counts as vehicle")
    jam_hold_s: float = Field(
        3.0, ge=0, le=600,
        description="A jam (LOS F) must hold this long (s of frame time, unbroken) before the flag "
                    "rises: a signal cycle's red phase or a freshly seen marking-covered junction "
                    "does not; fitted with the other rule settings (citywatch evaluate --folds source)")

    def scaled(self) -> tuple[float, float, float]:
        """(heavy occupancy, medium occupancy, stalled fast share) as fractions, shifted by
        sensitivity: at 1 the occupancy thresholds are 30 % lower and the stall threshold 30 %
        higher than at 0.5, at 0 the reverse."""
        shift = self.sensitivity - 0.5
        occ = 1.0 - SENSITIVITY_SWING * shift
        mov = 1.0 + SENSITIVITY_SWING * shift
        return (self.heavy_occupancy_pct / 100 * occ, self.medium_occupancy_pct / 100 * occ,
                min(1.0, self.stalled_fast_pct / 100 * mov))


def level_of_service(occupancy: float, fast: float, heavy: float, medium: float,
                     stalled: float, free_flow: float = FREE_FLOW) -> int:
    """LOS as 0=A .. 5=F from occupancy and ``fast``, the share of moving spots that move faster
    than a crawl (a stand-in for speed as a share of free-flow speed).

    F (breakdown): occupancy >= ``heavy`` and fast <= ``stalled``. E: dense (>= ``heavy``) but
    flowing, or medium density and stalled. D: medium density (>= ``medium``) not at free-flow
    speed (fast < ``free_flow``). A-C: thirds of ``medium``, or any density at free-flow speed.
    Levels: free A-C, medium D-E, heavy F.
    """
    if occupancy >= medium and fast < free_flow:
        if occupancy >= heavy:
            return 5 if fast <= stalled else 4
        return 4 if fast <= stalled else 3
    return min(2, int(3 * occupancy / medium))


class CongestionDetector:
    """Per-camera congestion detector: one ``congestion`` Finding per frame, graded by LOS."""

    event_types: tuple[str, ...] = ("congestion",)

    def __init__(self, settings: CongestionSettings | None = None) -> None:
        self.settings = settings or CongestionSettings()
        self._shape: tuple[int, int] | None = None
        # ts, (grey, half-size grey), blurred grey, local contrast
        self._history: deque[tuple[float, tuple[np.ndarray, np.ndarray], np.ndarray, np.ndarray]] = deque()
        self._last_ts: float | None = None
        self._rigidity: float | None = None
        self._rigidity_ts = 0.0
        self._jam_since: float | None = None  # frame time the current unbroken LOS F run began

    def _reset(self, shape: tuple[int, int]) -> None:
        """Start over at a new working size (first frame, or the camera changed resolution)."""
        self._shape = shape
        self._history.clear()
        self._last_ts = None
        self._rigidity = None
        self._jam_since = None
        self._mask = region_mask(self.settings.regions, *shape)
        self._whole_frame = not self.settings.regions
        self._region_px = max(1, count(self._mask))
        self._structure = np.zeros(shape, np.float32)  # running share of time textured at free flow
        self._not_structure = np.full(shape, 255, np.uint8)
        self._structure_ts: float | None = None
        coarse_shape = (max(1, shape[0] // MOTION_CELL), max(1, shape[1] // MOTION_CELL))
        self._motion_seen = np.full(coarse_shape, -np.inf, np.float64)  # last motion ts per cell
        self._masks_ts: float | None = None  # when the colour masks were last worked out
        self._lanes_key: np.ndarray | None = None  # the recent-motion cells the lanes came from

    def _learn_structure(self, texture: np.ndarray, ts: float) -> None:
        """Fold a free-flowing frame's texture into the structure: pixels textured most of the
        time while traffic flowed freely (markings, kerbs, parked cars). Never learned from
        congested frames, so a stopped queue does not join it."""
        dt = ts - self._structure_ts if self._structure_ts is not None else STRUCTURE_FIRST_DT_S
        self._structure_ts = ts
        alpha = 1.0 - math.exp(-min(max(dt, 0.0), STRUCTURE_MAX_DT_S) / self.settings.structure_learn_s)
        cv2.accumulateWeighted(texture, self._structure, alpha)
        self._not_structure = cv2.compare(self._structure, STRUCTURE_LEVEL, cv2.CMP_LE)

    def _update_rigidity(self, rigid: float | None, ts: float) -> float:
        """Running (~30 s) mean of the moving spots' rigidity; 1 until measured."""
        if rigid is not None:
            if self._rigidity is None:
                self._rigidity = rigid
            else:
                weight = 1.0 - math.exp(-max(0.0, ts - self._rigidity_ts) / RIGIDITY_TIME_S)
                self._rigidity += max(weight, RIGIDITY_MIN_WEIGHT) * (rigid - self._rigidity)
            self._rigidity_ts = ts
        return 1.0 if self._rigidity is None else self._rigidity

    def _reference(self, ts: float) -> tuple[float, tuple[np.ndarray, np.ndarray], np.ndarray,
                                             np.ndarray] | None:
        """The newest kept frame at least ``compare_after_s`` old (None while there is none)."""
        best = None
        for item in self._history:
            if ts - item[0] >= self.settings.compare_after_s:
                best = item
        return best

    def _remember(self, ts: float, tracked: tuple[np.ndarray, np.ndarray], smoothed: np.ndarray,
                  contrast: np.ndarray) -> None:
        self._last_ts = ts
        if self._history and ts - self._history[-1][0] < self.settings.compare_after_s / HISTORY_PER_INTERVAL:
            return  # at high frame rates keep a few frames per comparison interval, not all
        self._history.append((ts, tracked, smoothed, contrast))
        keep_after = ts - self.settings.compare_after_s
        while len(self._history) > 2 and self._history[1][0] <= keep_after:
            self._history.popleft()

    def _refresh_masks(self, small: np.ndarray, ts: float) -> None:
        """Colour masks and the asphalt road zone change with the scene, not with each vehicle:
        they are worked out again every ``MASK_REFRESH_S`` of frame time, and at once when much
        of the frame changed (camera moved, lights)."""
        vegetation, self._grey_lit = colour_masks(small)
        self._not_plants = cv2.subtract(self._mask, vegetation)
        self._asphalt_zone: np.ndarray | None = None  # worked out when first needed
        self._masks_ts = ts
        self._lanes_key = None

    def _road_zone(self, ts: float, changed: np.ndarray | None, asphalt: np.ndarray
                   ) -> tuple[np.ndarray, int, float]:
        """Lanes learned from recent motion (``changed`` is None when this frame's motion is not
        to be learned), or the asphalt surface while motion is unknown.
        Returns (zone mask, its pixel count, 1.0 if learned from motion else 0.0)."""
        s = self.settings
        if changed is not None:
            self._motion_seen[coarse(changed, self._motion_seen.shape) > 0] = ts
        recent = cv2.compare(self._motion_seen, ts - s.zone_memory_s, cv2.CMP_GE)
        if self._lanes_key is None or not np.array_equal(recent, self._lanes_key):
            self._lanes_key = recent
            self._lanes = None
            min_zone = s.min_zone_pct / 100 * self._region_px
            if count(recent) * MOTION_CELL * MOTION_CELL >= min_zone * LANES_TRY_SHARE:
                lanes = cv2.bitwise_and(lanes_from_motion(recent, self._mask.shape), self._not_plants)
                lanes_px = count(lanes)
                if lanes_px >= min_zone:
                    self._lanes = lanes, lanes_px
        if self._lanes is not None:
            return self._lanes[0], self._lanes[1], 1.0
        if self._asphalt_zone is None:
            self._asphalt_zone = cv2.bitwise_and(road_zone_from_asphalt(asphalt), self._not_plants)
            self._asphalt_zone_px = count(self._asphalt_zone)
        return self._asphalt_zone, self._asphalt_zone_px, 0.0

    def detect(self, frame: np.ndarray, ts: float) -> list[Finding]:
        """Grade one BGR frame; frames must come in time order."""
        if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
            raise ValueError(f"expected a BGR uint8 frame, got shape {frame.shape} {frame.dtype}")
        s = self.settings
        h, w = working_size(frame.shape[0], frame.shape[1], s.working_width)
        small = shrink(frame, w, h, "nearest_then_area")
        grey = cv2.cvtColor(small, cv2.COLOR_BGR2GRAY)
        if self._shape != (h, w):
            self._reset((h, w))
        if self._last_ts is not None and ts <= self._last_ts:
            raise ValueError(f"frame time {ts} is not after the previous one {self._last_ts}")
        ref = self._reference(ts)
        contrast = local_contrast(grey)
        smoothed = smooth(grey)
        tracked = (grey, half_size(grey))  # what LK works on
        self._remember(ts, tracked, smoothed, contrast)
        if ref is None:  # nothing old enough to compare with: cannot tell moving from stopped
            return [Finding("congestion", False, ready=False)]
        ref_ts, ref_tracked, ref_smoothed, ref_contrast = ref
        changed = changed_mask(smoothed, ref_smoothed, s.change_level)
        if not self._whole_frame:
            changed = cv2.bitwise_and(changed, self._mask)
        changed_pct = 100.0 * count(changed) / self._region_px
        big_change = changed_pct > s.max_changed_pct
        if big_change or self._masks_ts is None or ts - self._masks_ts >= MASK_REFRESH_S:
            self._refresh_masks(small, ts)
        asphalt = asphalt_mask(self._grey_lit, contrast)
        zone, zone_px, from_motion = self._road_zone(ts, None if big_change else changed, asphalt)
        motion = track_motion(ref_tracked, ref_contrast, tracked, cv2.bitwise_and(changed, zone),
                              ts - ref_ts, s.slow_speed)
        heavy, medium, stalled = s.scaled()
        if big_change and motion.fast <= stalled:  # much changed, little moved far: camera shake
            return [Finding("congestion", False, measurements={"changed_pct": round(changed_pct, 1)},
                            ready=False)]
        rigid = self._update_rigidity(motion.rigid, ts)
        meas = {"occupancy_pct": 0.0, "speed": round(motion.speed, 4), "los": 0.0,
                "vehicles_est": 0.0, "fast_pct": round(100 * motion.fast, 1),
                "moving_spots": float(motion.spots), "rigidity": round(rigid, 3),
                "changed_pct": round(changed_pct, 1),
                "zone_pct": round(100 * zone_px / self._region_px, 2),
                "zone_from_motion": from_motion}
        if zone_px < s.min_zone_pct / 100 * self._region_px:  # no road in view
            return [Finding("congestion", False, 0.0, meas, level="free")]
        texture = vehicle_texture(contrast, s.edge_level)
        occupied = cv2.bitwise_and(texture, cv2.bitwise_and(zone, self._not_structure))
        occupancy = count(occupied) / zone_px
        surface = count(cv2.bitwise_and(asphalt, zone)) / zone_px
        los = level_of_service(occupancy, motion.fast, heavy, medium, stalled)
        if los == 5 and (rigid < s.min_rigidity or surface < s.min_road_surface_pct / 100):
            los = 4  # dense and slow, but not like vehicles on a road (flames, foliage, smoke)
        self._jam_since = (self._jam_since if self._jam_since is not None else ts) if los == 5 else None
        active = los == 5 and ts - cast(float, self._jam_since) >= s.jam_hold_s  # set above when los == 5
        if los <= 2 and motion.fast >= FREE_FLOW and motion.spots >= MIN_FREE_SPOTS:
            self._learn_structure(texture, ts)  # free flow: what stays textured is the road's
        meas.update(occupancy_pct=round(100 * occupancy, 2), los=float(los),
                    road_surface_pct=round(100 * surface, 2),
                    vehicles_est=float(count_vehicles(occupied)))
        boxes = _boxes(occupied) if active else ()
        confidence = _confidence(occupancy, motion.fast, heavy, stalled)
        return [Finding("congestion", active, confidence, meas, boxes=boxes, level=LEVELS[los])]


def _confidence(occupancy: float, fast: float, heavy: float, stalled: float) -> float:
    """How far inside the heavy corner (dense and stalled) the frame is, 0..1."""
    dense = min(1.0, occupancy / heavy) if heavy > 0 else 1.0
    still = min(1.0, max(0.0, 1.0 - fast / (2 * stalled))) if stalled > 0 else 0.0
    return round(dense * (CONFIDENCE_FLOOR + (1.0 - CONFIDENCE_FLOOR) * still), 3)


def _boxes(occupied: np.ndarray, max_boxes: int = 4) -> tuple[tuple[float, float, float, float], ...]:
    """Normalized boxes around the largest occupied areas (for the evidence snapshot), found on
    4x4 px cells; areas less than two cells (8 px) apart merge."""
    cells = coarse(occupied, (max(1, occupied.shape[0] // BOX_CELL), max(1, occupied.shape[1] // BOX_CELL)))
    h, w = cells.shape
    blob = cv2.dilate(cells, _SQUARE3)
    n, _, stats, _ = cv2.connectedComponentsWithStats(blob, connectivity=8, ltype=cv2.CV_16U)
    order = sorted(range(1, n), key=lambda i: -stats[i, cv2.CC_STAT_AREA])[:max_boxes]
    return tuple((float(stats[i, 0] / w), float(stats[i, 1] / h), float(stats[i, 2] / w),
                  float(stats[i, 3] / h)) for i in order)
