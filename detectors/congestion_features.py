"""Image measurements behind the congestion detector; pure functions on working-size frames.

Masks are uint8, 0 or 255 (OpenCV's convention), so they combine with ``cv2.bitwise_and`` and are
counted with ``cv2.countNonZero`` without conversions."""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import cv2
import numpy as np

from detectors.imaging import halve_mask, resize_mask


class MotionSample(NamedTuple):
    """What tracking the changed spots between two frames found."""

    spots: int  # spots tracked
    fast: float  # share of them moving faster than the crawl limit (lost tracks count as fast)
    speed: float  # median speed, frame widths per second
    rigid: float | None  # 0..1 how alike neighbouring moved spots move; None if too few moved


_CROSS3 = cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3))
_SQUARE3 = np.ones((3, 3), np.uint8)
# HSV bounds (OpenCV: hue 0..179, saturation and value 0..255, inclusive):
VEGETATION_LOW = (30, 50, 30)  # green hues, at least slightly saturated, not black ...
VEGETATION_HIGH = (90, 255, 255)  # ... up to green-cyan
GREY_MIN_VALUE = 36  # grey road pixels: not dark ...
GREY_MAX_VALUE = 234  # ... and not blown out
LANE_WIDENING = 0.05  # fraction of the width recent motion is widened by to cover whole lanes
ROAD_CLOSING = 0.04  # fraction of the (half-size) width of the kernel closing vehicle holes in asphalt
MIN_KERNEL = 3  # px: smallest of those kernels (always odd)
MIN_SPOT_CONTRAST = 20  # local contrast (grey levels) a changed spot needs to be tracked
MIN_TRACKED_SPOTS = 3  # fewer contrasted changed spots: no motion measured
SPEED_CAP = 0.5  # frame widths per s: the speed given to lost tracks at least (and to any track at most)
MIN_MOVE_PX = 1.0  # px at working size: tracks moving further count as moved for rigidity
RIGIDITY_RADIUS = 0.08  # fraction of the width: spots this close are neighbours
RIGIDITY_MIN_POINTS = 4  # moved spots needed to measure rigidity ...
RIGIDITY_MIN_JUDGED = 3  # ... of which this many need a neighbour
ALIKE_PX = 1.0  # px: neighbours move alike when their shifts differ by less than this ...
ALIKE_SHARE = 0.35  # ... or this fraction of the shift, whichever is larger
# Pyramidal LK on 4 levels with 9x9 windows, at most 10 iterations per level or until a step is
# below 0.03 px (flicker never converges; finer steps buy nothing against a 1 px check). It runs as
# two calls that give exactly what one call gives: levels 1-3 on the frames' `half_size` copies
# (made once per frame, so the finest pyramid level is not rebuilt by every call), then level 0
# starting from their flow.
_CRITERIA = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 10, 0.03)
_WINDOW = (9, 9)
_LK_COARSE: dict[str, Any] = {"winSize": _WINDOW, "maxLevel": 2, "criteria": _CRITERIA}
_LK_FINE: dict[str, Any] = {"winSize": _WINDOW, "maxLevel": 0, "criteria": _CRITERIA,
                            "flags": cv2.OPTFLOW_USE_INITIAL_FLOW}


def count(mask: np.ndarray) -> int:
    """Number of set pixels of a mask."""
    return cv2.countNonZero(mask)


def half_size(grey: np.ndarray) -> np.ndarray:
    """The frame one pyramid level down (Gaussian, then every other pixel), for tracking."""
    return cv2.pyrDown(grey)


def smooth(grey: np.ndarray) -> np.ndarray:
    """The slightly blurred (3x3 box) grey frame that `changed_mask` compares."""
    return cv2.blur(grey, (3, 3))


def brightness_shift(smoothed: np.ndarray, ref: np.ndarray) -> int:
    """Median grey difference between two frames on a 4 px grid (auto exposure), truncated."""
    diff = (smoothed[::4, ::4].astype(np.int16) - ref[::4, ::4]).ravel()
    k = diff.size // 2
    if diff.size % 2:
        return int(np.partition(diff, k)[k])
    low, high = np.partition(diff, (k - 1, k))[k - 1:k + 1]
    return int((int(low) + int(high)) / 2)


def changed_mask(smoothed: np.ndarray, ref: np.ndarray, level: int) -> np.ndarray:
    """Pixels whose grey value changed by more than ``level`` between two `smooth` frames, after
    removing a global brightness shift (auto exposure) and isolated noise pixels."""
    shift = brightness_shift(smoothed, ref)
    if shift:
        ref = cv2.add(ref, shift) if shift > 0 else cv2.subtract(ref, -shift)
    _, moved = cv2.threshold(cv2.absdiff(smoothed, ref), level, 255, cv2.THRESH_BINARY)
    return cv2.morphologyEx(moved, cv2.MORPH_OPEN, _CROSS3)


def local_contrast(grey: np.ndarray) -> np.ndarray:
    """Morphological gradient (max - min over 3x3): edges and fine texture."""
    return cv2.morphologyEx(grey, cv2.MORPH_GRADIENT, _SQUARE3)


def colour_masks(bgr: np.ndarray, max_sat: int = 60) -> tuple[np.ndarray, np.ndarray]:
    """(vegetation, grey and lit) masks: clearly green pixels (trees, grass, verges: never road,
    never vehicles), and low-saturation pixels neither dark nor blown out (what road looks like)."""
    hsv = cv2.cvtColor(bgr, cv2.COLOR_BGR2HSV)
    return (cv2.inRange(hsv, VEGETATION_LOW, VEGETATION_HIGH),
            cv2.inRange(hsv, (0, 0, GREY_MIN_VALUE), (180, max_sat - 1, GREY_MAX_VALUE)))


def asphalt_mask(grey_lit: np.ndarray, contrast: np.ndarray, max_contrast: int = 16) -> np.ndarray:
    """Smooth (`local_contrast` below ``max_contrast``) grey, lit pixels: what bare road looks like."""
    _, smooth_px = cv2.threshold(contrast, max_contrast - 1, 255, cv2.THRESH_BINARY_INV)
    return cv2.bitwise_and(grey_lit, smooth_px)


def coarse(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A mask at a coarser (height, width): a cell is set if any of its pixels is. A 2x, 4x or 8x
    reduction is done by halving (area averages of 0/255 stay above zero), much cheaper than
    one general area reduction."""
    factor = mask.shape[0] / shape[0]
    if factor in (2, 4, 8) and mask.shape[1] == factor * shape[1]:
        while mask.shape != shape:
            mask = cv2.resize(mask, (mask.shape[1] // 2, mask.shape[0] // 2),
                              interpolation=cv2.INTER_AREA)
    else:
        mask = cv2.resize(mask, (shape[1], shape[0]), interpolation=cv2.INTER_AREA)
    _, cells = cv2.threshold(mask, 0, 255, cv2.THRESH_BINARY)
    return cells


def lanes_from_motion(recent_motion: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Where traffic moved recently (a coarse mask), widened by ~5 % of the width so whole lanes
    count, returned at the working (height, width)."""
    k = max(MIN_KERNEL, int(round(recent_motion.shape[1] * LANE_WIDENING)) | 1)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))
    lanes = cv2.dilate(recent_motion, kernel)
    return resize_mask(lanes, shape[1], shape[0])


def road_zone_from_asphalt(asphalt: np.ndarray, min_part: float = 0.02) -> np.ndarray:
    """Road surface with the holes vehicles punch into it closed: asphalt closed with a kernel
    of ~4 % of the width, keeping only parts larger than ``min_part`` of the frame. Worked out
    at half size (it only runs until motion has shown where the lanes are)."""
    h, w = asphalt.shape
    half = halve_mask(asphalt)
    k = max(MIN_KERNEL, int(round(half.shape[1] * ROAD_CLOSING)) | 1)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))
    closed = cv2.morphologyEx(half, cv2.MORPH_CLOSE, kernel)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(closed, connectivity=8, ltype=cv2.CV_16U)
    big = np.where(stats[:, cv2.CC_STAT_AREA] >= min_part * half.size, 255, 0).astype(np.uint8)
    big[0] = 0
    return resize_mask(big[labels], w, h)


def vehicle_texture(contrast: np.ndarray, level: int) -> np.ndarray:
    """Pixels that look like vehicles rather than bare road: `local_contrast` above ``level``,
    closed over 3x3 so small vehicles count as solid blobs."""
    _, textured = cv2.threshold(contrast, level, 255, cv2.THRESH_BINARY)
    return cv2.morphologyEx(textured, cv2.MORPH_CLOSE, _SQUARE3)


def pyramid_lk(prev: tuple[np.ndarray, np.ndarray], nxt: tuple[np.ndarray, np.ndarray],
               points: np.ndarray) -> np.ndarray:
    """Where ``points`` ((n, 1, 2) float32) of the ``prev`` frame went in ``nxt`` (each a
    (frame, `half_size` frame) pair): pyramidal LK as described at ``_LK_COARSE``."""
    if min(prev[1].shape) <= _WINDOW[0]:  # too small for a pyramid: one level only
        return cv2.calcOpticalFlowPyrLK(prev[0], nxt[0], points, None, winSize=_WINDOW,
                                        maxLevel=0, criteria=_CRITERIA)[0]
    flow, _, _ = cv2.calcOpticalFlowPyrLK(prev[1], nxt[1], points * 0.5, None, **_LK_COARSE)
    return cv2.calcOpticalFlowPyrLK(prev[0], nxt[0], points, flow * 2, **_LK_FINE)[0]


@functools.lru_cache(maxsize=4)
def _grid_points(shape: tuple[int, int], step: int) -> np.ndarray:
    """(cells, 1, 2) float32 x, y of the centres of a ``step`` px grid over a (height, width)."""
    ys, xs = np.mgrid[step // 2:shape[0]:step, step // 2:shape[1]:step]
    points = np.stack([xs.ravel(), ys.ravel()], axis=1).astype(np.float32).reshape(-1, 1, 2)
    points.setflags(write=False)
    return points


def track_motion(ref: tuple[np.ndarray, np.ndarray], ref_contrast: np.ndarray,
                 frame: tuple[np.ndarray, np.ndarray], changed: np.ndarray, dt: float,
                 slow_speed: float, max_points: int = 40, step: int = 6, max_error: float = 1.0
                 ) -> MotionSample:
    """Track the most contrasted changed spots of ``ref`` (``ref_contrast`` is its
    `local_contrast`) to ``frame`` (both (grey, `half_size` grey)) with pyramidal LK; a track is
    kept when tracking it back lands within ``max_error`` px of where it started. A spot whose
    track is lost counts as fast: at 1-2 frames/s a vehicle in free flow moves further than LK can
    follow, while crawling traffic tracks well."""
    h, w = changed.shape
    o = step // 2
    grid = ref_contrast[o::step, o::step] & cv2.dilate(changed, _SQUARE3)[o::step, o::step]
    flat = grid.ravel()
    if dt <= 0 or len(flat) < MIN_TRACKED_SPOTS:
        return MotionSample(0, 0.0, 0.0, None)
    top = np.argpartition(flat, -min(max_points, len(flat)))[-max_points:]
    top = top[flat[top] > MIN_SPOT_CONTRAST]
    n = len(top)
    if n < MIN_TRACKED_SPOTS:
        return MotionSample(0, 0.0, 0.0, None)
    pts = _grid_points((h, w), step)[top]
    after = pyramid_lk(ref, frame, pts)
    back = pyramid_lk(frame, ref, after)
    start = pts.view(np.complex64).ravel()  # x + iy
    ok = np.abs(start - back.view(np.complex64).ravel()) < max_error
    shift = after.view(np.complex64).ravel() - start
    dist = np.abs(shift)
    cap = max(2 * slow_speed, SPEED_CAP)
    speed = np.where(ok, np.minimum(dist / w / dt, cap), cap)
    fast = np.count_nonzero(speed > slow_speed) / n
    speed.sort()
    median = speed[n // 2] if n % 2 else (speed[n // 2 - 1] + speed[n // 2]) / 2
    moved = ok & (dist > MIN_MOVE_PX)
    return MotionSample(n, fast, float(median), rigidity(start[moved], shift[moved], RIGIDITY_RADIUS * w))


def rigidity(points: np.ndarray, shifts: np.ndarray, radius: float) -> float | None:
    """Mean share of each moved spot's neighbours (within ``radius``) that moved alike (within
    1 px or 35 %); ``points`` and ``shifts`` are complex x + iy. Spots on a vehicle move
    together; flames and flicker do not. None when fewer than three spots have a neighbour."""
    if len(points) < RIGIDITY_MIN_POINTS:
        return None
    near = np.abs(points[:, None] - points) < radius
    np.fill_diagonal(near, False)
    neighbours = near.sum(axis=1)
    has = neighbours > 0
    judged = np.count_nonzero(has)
    if judged < RIGIDITY_MIN_JUDGED:
        return None
    alike = np.abs(shifts[:, None] - shifts) < np.maximum(ALIKE_PX, ALIKE_SHARE * np.abs(shifts))[:, None]
    return float(((alike & near).sum(axis=1)[has] / neighbours[has]).sum() / judged)


def count_vehicles(occupied: np.ndarray, min_area_frac: float = 2e-4) -> int:
    """Rough vehicle count: blobs of the occupied mask at half size (touching vehicles merge,
    so dense queues are undercounted)."""
    half = halve_mask(occupied)
    _, _, stats, _ = cv2.connectedComponentsWithStats(half, connectivity=8, ltype=cv2.CV_16U)
    min_area = max(2, int(min_area_frac * half.size))
    return int(np.count_nonzero(stats[1:, cv2.CC_STAT_AREA] >= min_area))
