"""Fire and smoke detection (colour proposes, temporal evidence decides).

Fire: bright red-orange-yellow pixels are only candidates. A grid cell counts as burning when it
held candidates in most of the last seconds, its candidate outline keeps taking shapes it never had
before in the window (novelty: static logos, lamps, blinking or cycling neon and slowly sliding
objects all match an earlier shape) and the brightness inside it shimmers. A cluster of burning
cells must also glow (its candidate blobs brighter than a 5 px ring around them) and must not
move rigidly (a bus or a panning view translates, a flame does not).

Smoke: grey, low-saturation haze that hides the background's edges while the background's
structure still shows through, persisting for seconds (see :class:`SmokeHaze`; it looks at a
frame at most every 0.9 s).

Static scenes (frames identical for ``min_history_s``: a replayed still, a frozen stream) give no
temporal evidence. There the detector falls back to a conservative single-frame flame test
(:mod:`detectors.fire_static`: white-yellow core inside a red-orange envelope, rising not layered,
irregular, glowing) with a lower confidence, or, with ``static_scenes`` off, reports the frame as
not ready. Either way ``measurements["static_scene"] = 1``. Live frames always differ, so live
behaviour never depends on the single-frame test.
"""

from __future__ import annotations

from collections import deque

import cv2
import numpy as np
from pydantic import Field

from detectors.base import DetectorSettings, Finding, region_mask, working_size
from detectors.fire_features import GLOW_RING, CellFlicker, flame_blobs, flame_colour_mask, glows
from detectors.fire_smoke import SmokeHaze
from detectors.fire_static import still_flames
from detectors.imaging import resize_mask, shrink

CELL = 16  # grid cell side at the working size (320 px wide)
STILL_CHANGE = 0.002  # mean brightness change (0..1) below which consecutive frames are identical
STILL_CONFIDENCE = (0.25, 0.4)  # confidence range of the single-frame test (temporal evidence: higher)
# The flame rules at the default sensitivity and their change per unit of _shift (-1 .. +1):
RED_MIN = 170  # red channel level (0..255) a flame pixel must reach ...
RED_MIN_PER_SHIFT = 30  # ... lowered by this at sensitivity 1
PRESENCE_MIN = 0.6  # fraction of recent frames a cell must show flame colour in ...
PRESENCE_MIN_PER_SHIFT = 0.15
NOVELTY_MIN = 0.45  # mean novelty (1 - best IoU of the cell's flame shape with stored frames, 0..1) ...
NOVELTY_MIN_PER_SHIFT = 0.15
SHIMMER_MIN = 0.035  # mean brightness change (0..1 of 255) of the cell's lit pixels between frames ...
SHIMMER_MIN_PER_SHIFT = 0.015
RIGID_GAIN = 0.2  # how much better shift-aligned than raw frames must match to call a site rigid ...
RIGID_GAIN_PER_SHIFT = 0.05  # ... raised by this at sensitivity 1
GLOW_MIN = 10  # grey levels a blob must be brighter than its ring ...
GLOW_MIN_PER_SHIFT = 10
RIGID_ALIGNED_MIN = 0.3  # aligned match (0..1) from which a site can be a moving rigid object
JUDGED_FRAMES = 3  # frames whose judgement confirms ...
CONFIRM_FRAMES = 2  # ... of which this many must have found fire
FIRE_CONFIDENCE_GAIN = 0.5  # confidence = this x flicker strength / novelty_min, at most 1
BOX_PAD_CELLS = 1  # cells added around a burning site for the rigidity test
GROWTH_WINDOW_S = 60.0  # s of burning frames over which the growth slope is fitted ...
GROWTH_MIN_FRAMES = 4  # ... from at least this many frames ...
GROWTH_MIN_SPAN_S = 2.0  # ... spanning at least this many seconds
SMOKE_GLOBAL_MAX = 0.5  # share of the textured cells hazy at once from which it is fog or exposure, not smoke
SMOKE_CONFIDENCE_BASE = 0.5  # smoke confidence = this + this x edge loss, at most 1


class FireSettings(DetectorSettings):
    """Settings of the fire detector."""

    min_area_pct: float = Field(
        0.1, ge=0.0, le=100.0, description="Smallest burning area, % of the watched region")
    min_history_s: float = Field(
        3.0, ge=0.5, le=30.0, description="Seconds of frames needed before fire can be judged")
    static_scenes: bool = Field(
        True, description="Judge static scenes (replayed stills, frozen streams) with the "
                          "conservative single-frame flame test instead of reporting them not ready")
    verify: bool = Field(
        True, description="Decide fire with the learned verifiers (detectors.scene, with the patch "
                          "model of detectors.verifier for boxes); off = the classical cues alone decide")


class SmokeSettings(DetectorSettings):
    """Settings of the smoke detector (runs inside the fire detector)."""

    min_area_pct: float = Field(
        1.0, ge=0.0, le=100.0, description="Smallest hazy area, % of the watched region")
    min_history_s: float = Field(
        10.0, ge=1.0, le=120.0, description="Seconds of frames needed before smoke can be judged")
    verify: bool = Field(
        True, description="Decide smoke with the learned scene verifier (detectors.scene); "
                          "off = the classical haze cues alone decide")


def _shift(sensitivity: float) -> float:
    """-1 at sensitivity 0, 0 at the default 0.5, +1 at 1."""
    return (sensitivity - 0.5) * 2.0


class FireDetector:
    """Per-camera fire and smoke detector: ``detect(frame, ts)`` -> [fire Finding, smoke Finding]."""

    event_types: tuple[str, ...] = ("fire", "smoke")

    def __init__(self, fire: FireSettings | None = None, smoke: SmokeSettings | None = None) -> None:
        self.fire = fire or FireSettings()
        self.smoke = smoke or SmokeSettings()
        k = _shift(self.fire.sensitivity)
        self.red_min = int(round(RED_MIN - RED_MIN_PER_SHIFT * k))
        self.presence_min = PRESENCE_MIN - PRESENCE_MIN_PER_SHIFT * k
        self.novelty_min = NOVELTY_MIN - NOVELTY_MIN_PER_SHIFT * k
        self.shimmer_min = SHIMMER_MIN - SHIMMER_MIN_PER_SHIFT * k
        self.rigid_gain = RIGID_GAIN + RIGID_GAIN_PER_SHIFT * k
        self.glow_min = GLOW_MIN - GLOW_MIN_PER_SHIFT * k
        self.flicker = CellFlicker(cell=CELL)
        self.haze = SmokeHaze(cell=CELL // 2, sensitivity=self.smoke.sensitivity)
        self._masks: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}
        self._half_regions: dict[tuple[int, int], tuple[np.ndarray, int]] = {}
        self._region_px: dict[tuple[int, int], tuple[int, bool]] = {}  # fire region: pixels, whole frame
        self._last_fire = Finding("fire", False, ready=False)
        self._last_smoke = Finding("smoke", False, ready=False)
        self._area_ts: deque[float] = deque()  # times of frames with a burning area, for growth
        self._area_pct: deque[float] = deque()  # their burning area, %
        self._judged: deque[bool] = deque(maxlen=JUDGED_FRAMES)
        self._still_since: float | None = None
        self._judging_still = False

    def _region(self, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
        if (h, w) not in self._masks:
            self._masks[(h, w)] = (region_mask(self.fire.regions, h, w) > 0,
                                   region_mask(self.smoke.regions, h, w) > 0)
            fire = self._masks[(h, w)][0]
            self._region_px[(h, w)] = (max(int(np.count_nonzero(fire)), 1), bool(fire.all()))
        return self._masks[(h, w)]

    def _smoke_region(self, region: np.ndarray) -> tuple[np.ndarray, int]:
        """The smoke region at half size and its pixel count, computed once per frame size."""
        key = region.shape
        if key not in self._half_regions:
            small = resize_mask(region, region.shape[1] // 2, region.shape[0] // 2)
            self._half_regions[key] = (small, max(int(np.count_nonzero(small)), 1))
        return self._half_regions[key]

    def detect(self, frame: np.ndarray, ts: float) -> list[Finding]:
        """One fire and one smoke Finding for a BGR uint8 frame taken at ``ts`` seconds."""
        if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8 or frame.ndim != 3 \
                or frame.shape[2] != 3:
            got = getattr(frame, "shape", type(frame).__name__)
            raise ValueError(f"frame must be a BGR uint8 array of shape (h, w, 3), got {got}")
        h, w = working_size(*frame.shape[:2])
        if h < CELL or w < CELL:
            raise ValueError(f"frame {frame.shape[1]}x{frame.shape[0]} is too small to analyse")
        small = shrink(frame, w, h, "halving_uncropped")
        luma = cv2.cvtColor(small, cv2.COLOR_BGR2GRAY)
        fire_region, smoke_region = self._region(h, w)
        fire = self._detect_fire(small, luma, fire_region, ts)
        smoke = self._detect_smoke(small, luma, smoke_region, ts)
        return [fire, smoke]

    # --- fire -------------------------------------------------------------------------------
    def _detect_fire(self, small: np.ndarray, luma: np.ndarray, region: np.ndarray,
                     ts: float) -> Finding:
        if not self.fire.enabled:
            return Finding("fire", False, ready=False)
        if not self.flicker.due(ts):
            return self._last_fire
        mask = flame_colour_mask(small, self.red_min)
        region_px, whole = self._region_px[region.shape]
        if not whole:
            mask &= region
        self.flicker.store(ts, mask, luma)
        if len(self.flicker.times) == 1:  # history restarted (new stream or size)
            self._judged.clear()
        still = self._track_still(ts)
        if still != self._judging_still:  # never confirm one kind of evidence with the other
            self._judged.clear()
            self._judging_still = still
        if still:
            self._last_fire = self._judge_still(small, luma, mask, region_px, ts)
            return self._last_fire
        ready = self.flicker.span_s >= self.fire.min_history_s
        presence, novelty, shimmer = self.flicker.cell_scores(self.presence_min)
        burning = (presence >= self.presence_min) & (novelty >= self.novelty_min) \
            & (shimmer >= self.shimmer_min)
        boxes, area, strength = self._burning_sites(mask, luma, burning, presence, novelty, region_px)
        # confirm over stored frames (2 of the last 3), so a single judgement repeated by a high
        # frame rate cannot fill the alert policy's debounce on its own
        self._judged.append(bool(boxes) and ready)
        active = sum(self._judged) >= CONFIRM_FRAMES and bool(boxes) and ready
        confidence = min(1.0, FIRE_CONFIDENCE_GAIN * strength / max(self.novelty_min, 1e-3)) if active else 0.0
        area_pct = area * 100.0 / region_px
        measurements = {
            "area_pct": round(area_pct, 3),
            "growth": round(self._growth(ts, area_pct), 3),
            "candidate_pct": round(float(np.count_nonzero(mask)) * 100.0 / region_px, 3),
            "flicker": round(float(novelty[burning].mean()) if burning.any() else 0.0, 3),
            "static_scene": 0.0,
        }
        self._last_fire = Finding("fire", active, round(confidence, 3), measurements,
                                  tuple(boxes) if active else (), None, ready)
        return self._last_fire

    def _judge_still(self, small: np.ndarray, luma: np.ndarray, mask: np.ndarray, region_px: int,
                     ts: float) -> Finding:
        """A static scene: the single-frame flame test, confirmed like temporal judgements (2 of
        the last 3) and with a lower confidence; not ready when the test is switched off."""
        flames = still_flames(small, luma, mask, region_px) if self.fire.static_scenes else []
        area_pct = sum(f.pixels for f in flames) * 100.0 / region_px
        found = bool(flames) and area_pct >= self.fire.min_area_pct
        self._judged.append(found)
        active = found and sum(self._judged) >= CONFIRM_FRAMES
        low, high = STILL_CONFIDENCE
        confidence = low + (high - low) * max(f.score for f in flames) if active else 0.0
        measurements = {
            "area_pct": round(area_pct, 3),
            "growth": round(self._growth(ts, area_pct), 3),
            "candidate_pct": round(float(np.count_nonzero(mask)) * 100.0 / region_px, 3),
            "flicker": 0.0,
            "static_scene": 1.0,
        }
        boxes = tuple(f.box for f in flames) if active else ()
        return Finding("fire", active, round(confidence, 3), measurements, boxes, None,
                       self.fire.static_scenes)

    def _burning_sites(self, mask: np.ndarray, luma: np.ndarray, burning: np.ndarray,
                       presence: np.ndarray, novelty: np.ndarray, region_px: int
                       ) -> tuple[list[tuple[float, float, float, float]], int, float]:
        """Flame blobs touching clusters of burning cells that are big enough, glow and do not
        move rigidly: their normalized boxes, total pixels and the best cluster strength."""
        rows, cols = self.flicker.grid
        count, labels, stats, _ = cv2.connectedComponentsWithStats(
            burning.reshape(rows, cols).astype(np.uint8), connectivity=8)
        if count <= 1:
            return [], 0, 0.0
        hh, ww = mask.shape
        blob_labels, (top, left), blob_stats = flame_blobs(mask, GLOW_RING)
        blobs = len(blob_stats)
        boxes, area, best = [], 0, 0.0
        counted = np.zeros(blobs, bool)
        for i in range(1, count):
            x, y, cw, ch = (int(v) for v in stats[i][:4])
            # the blobs under the cluster's cells (within the cluster's box of cells), not yet counted
            y0, x0 = max(y * CELL, top), max(x * CELL, left)
            y1 = min((y + ch) * CELL, top + blob_labels.shape[0])
            x1 = min((x + cw) * CELL, left + blob_labels.shape[1])
            seen = np.zeros(blobs, bool)
            if y0 < y1 and x0 < x1:
                under = blob_labels[y0 - top: y1 - top, x0 - left: x1 - left]
                cells = labels[y:y + ch, x:x + cw] == i
                if not cells.all():
                    inside = np.repeat(np.repeat(cells, CELL, axis=0), CELL, axis=1)
                    under = under[inside[y0 - y * CELL: y1 - y * CELL, x0 - x * CELL: x1 - x * CELL]]
                seen[under] = True
            seen[0] = False
            touched = np.flatnonzero(seen & ~counted)
            px = int(blob_stats[touched, cv2.CC_STAT_AREA].sum())
            if px * 100.0 / region_px < self.fire.min_area_pct \
                    or not glows(luma, blob_labels, (top, left), blob_stats, touched, self.glow_min):
                continue
            aligned, raw = self.flicker.rigidity(
                (max(x - BOX_PAD_CELLS, 0) * CELL, max(y - BOX_PAD_CELLS, 0) * CELL,
                 (cw + 2 * BOX_PAD_CELLS) * CELL, (ch + 2 * BOX_PAD_CELLS) * CELL))
            if aligned >= RIGID_ALIGNED_MIN and aligned - raw >= self.rigid_gain:
                continue  # a moving object (bus, kayak, a panning camera): it translates, not flickers
            counted[touched] = True
            idx = (labels == i).ravel()
            nov, pres = novelty[idx], presence[idx]
            best = max(best, float((nov.sum() / nov.size) * (pres.sum() / pres.size)))
            area += px
            for j in touched:
                bx, by, bw, bh = (int(v) for v in blob_stats[j][:4])
                boxes.append((bx / ww, by / hh, bw / ww, bh / hh))
        return boxes, area, best

    def _growth(self, ts: float, area_pct: float) -> float:
        """Relative change of the burning area per minute: least-squares slope over the last
        minute of frames with a burning area, divided by their mean area."""
        times, areas = self._area_ts, self._area_pct
        if times and ts < times[-1]:
            times.clear()
            areas.clear()
        if area_pct > 0:
            times.append(ts)
            areas.append(area_pct)
        while times and ts - times[0] > GROWTH_WINDOW_S:
            times.popleft()
            areas.popleft()
        if len(times) < GROWTH_MIN_FRAMES or times[-1] - times[0] < GROWTH_MIN_SPAN_S:
            return 0.0
        t = np.fromiter(times, float, len(times))
        a = np.fromiter(areas, float, len(areas))
        t -= t.sum() / len(t)
        mean_area = float(a.sum()) / len(a)
        slope = float(t @ (a - mean_area)) / float(t @ t)  # the least-squares line's slope
        return slope * 60.0 / mean_area  # per minute

    def _track_still(self, ts: float) -> bool:
        """True once the frames have been identical for the whole judging period (a replayed still)."""
        if len(self.flicker.times) < 2 or self.flicker.last_change > STILL_CHANGE:
            self._still_since = None
            return False
        if self._still_since is None:
            self._still_since = self.flicker.times[-2]
        return ts - self._still_since >= self.fire.min_history_s

    # --- smoke ------------------------------------------------------------------------------
    def _detect_smoke(self, small: np.ndarray, luma: np.ndarray, region: np.ndarray,
                      ts: float) -> Finding:
        if not self.smoke.enabled:
            return Finding("smoke", False, ready=False)
        half = (small.shape[1] // 2, small.shape[0] // 2)  # smoke is slow and large: half size
        if not self.haze.due(ts, half[::-1]):
            return self._last_smoke  # the haze model only changes on the frames it stores
        region, region_px = self._smoke_region(region)
        hazy_cells, m = self.haze.update(
            ts, shrink(luma, half[0], half[1], "linear"), region, small)
        area = float(self.haze.region_pixels(region)[hazy_cells].sum()) * 100.0 / region_px
        ready = self.haze.span_s >= self.smoke.min_history_s
        active = ready and area >= self.smoke.min_area_pct and m["global"] < SMOKE_GLOBAL_MAX
        boxes: list[tuple[float, float, float, float]] = []
        if active:
            hh, ww = region.shape
            boxes = [(x / ww, y / hh, w / ww, h / hh) for x, y, w, h in self.haze.plume_boxes(region)]
        measurements = {"area_pct": round(area, 3), "growth": round(m["growth"], 3),
                        "edge_loss": round(m["edge_loss"], 3)}
        confidence = min(1.0, SMOKE_CONFIDENCE_BASE + SMOKE_CONFIDENCE_BASE * m["edge_loss"]) if active else 0.0
        self._last_smoke = Finding("smoke", active, round(confidence, 3), measurements,
                                   tuple(boxes), None, ready)
        return self._last_smoke
