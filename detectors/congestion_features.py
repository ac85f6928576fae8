"""Image measurements behind the congestion detector; pure functions on working-size frames."""

from __future__ import annotations

from typing import NamedTuple

import cv2
import numpy as np


class MotionSample(NamedTuple):
    """What tracking the changed spots between two frames found."""

    spots: int  # spots tracked
    fast: float  # share of them moving faster than the crawl limit (lost tracks count as fast)
    speed: float  # median speed, frame widths per second
    rigid: float | None  # 0..1 how alike neighbouring moved spots move; None if too few moved


_CROSS3 = cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3))
_SQUARE3 = np.ones((3, 3), np.uint8)


def shrink(frame: np.ndarray, width: int, height: int) -> np.ndarray:
    """Resize a BGR frame to (width, height): nearest to twice the size first when it is much
    larger (cheap), then area averaging (no aliasing)."""
    if frame.shape[1] == width and frame.shape[0] == height:
        return frame
    if frame.shape[1] >= 4 * width:
        frame = cv2.resize(frame, (2 * width, 2 * height), interpolation=cv2.INTER_NEAREST)
    return cv2.resize(frame, (width, height), interpolation=cv2.INTER_AREA)


def count(mask: np.ndarray) -> int:
    """Number of set pixels of a boolean mask."""
    return cv2.countNonZero(mask.view(np.uint8))


def changed_mask(grey: np.ndarray, ref: np.ndarray, level: int) -> np.ndarray:
    """Pixels whose (slightly blurred) grey value changed by more than ``level`` since ``ref``,
    after removing a global brightness shift (auto exposure) and isolated noise pixels."""
    a = cv2.blur(grey, (3, 3))
    b = cv2.blur(ref, (3, 3))
    shift = int(np.median(a[::4, ::4].astype(np.int16) - b[::4, ::4]))
    if shift:
        b = cv2.add(b, shift) if shift > 0 else cv2.subtract(b, -shift)
    moved = (cv2.absdiff(a, b) > level).astype(np.uint8)
    return cv2.morphologyEx(moved, cv2.MORPH_OPEN, _CROSS3) > 0


def local_contrast(grey: np.ndarray) -> np.ndarray:
    """Morphological gradient (max - min over 3x3): edges and fine texture."""
    return cv2.morphologyEx(grey, cv2.MORPH_GRADIENT, _SQUARE3)


def vegetation_mask(hsv: np.ndarray) -> np.ndarray:
    """Clearly green pixels (trees, grass, verges): never road, never vehicles."""
    return cv2.inRange(hsv, (30, 50, 30), (90, 255, 255)) > 0


def coarse(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A boolean mask at a coarser (height, width): a cell is set if any of its pixels is."""
    return cv2.resize(mask.astype(np.uint8) * 255, (shape[1], shape[0]),
                      interpolation=cv2.INTER_AREA) > 0


def lanes_from_motion(recent_motion: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Where traffic moved recently (a coarse mask), widened by ~5 % of the width so whole lanes
    count, returned at the working (height, width)."""
    k = max(3, int(round(recent_motion.shape[1] * 0.05)) | 1)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))
    lanes = cv2.dilate(recent_motion.astype(np.uint8), kernel)
    return cv2.resize(lanes, (shape[1], shape[0]), interpolation=cv2.INTER_NEAREST) > 0


def asphalt_mask(hsv: np.ndarray, contrast: np.ndarray, max_sat: int = 60, max_contrast: int = 16
                 ) -> np.ndarray:
    """Smooth, low-saturation, neither dark nor blown-out pixels: what bare road looks like."""
    grey_ish_lit = cv2.inRange(hsv, (0, 0, 36), (180, max_sat - 1, 234)) > 0
    return grey_ish_lit & (contrast < max_contrast)


def road_zone_from_asphalt(asphalt: np.ndarray, min_part: float = 0.02) -> np.ndarray:
    """Road surface with the holes vehicles punch into it closed: asphalt closed with a kernel
    of ~4 % of the width, keeping only parts larger than ``min_part`` of the frame. Worked out
    at half size (it only runs until motion has shown where the lanes are)."""
    h, w = asphalt.shape
    half = cv2.resize(asphalt.astype(np.uint8) * 255, (max(1, w // 2), max(1, h // 2)),
                      interpolation=cv2.INTER_AREA) > 127
    k = max(3, int(round(half.shape[1] * 0.04)) | 1)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))
    closed = cv2.morphologyEx(half.astype(np.uint8), cv2.MORPH_CLOSE, kernel)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(closed, connectivity=8)
    big = stats[:, cv2.CC_STAT_AREA] >= min_part * half.size
    big[0] = False
    zone = big[labels].astype(np.uint8)
    return cv2.resize(zone, (w, h), interpolation=cv2.INTER_NEAREST) > 0


def vehicle_texture(contrast: np.ndarray, level: int) -> np.ndarray:
    """Pixels that look like vehicles rather than bare road: `local_contrast` above ``level``,
    closed over 3x3 so small vehicles count as solid blobs."""
    textured = contrast > level
    return cv2.morphologyEx(textured.astype(np.uint8), cv2.MORPH_CLOSE, _SQUARE3) > 0


def track_motion(ref: np.ndarray, ref_contrast: np.ndarray, grey: np.ndarray, changed: np.ndarray,
                 dt: float, slow_speed: float, max_points: int = 40, step: int = 6,
                 max_error: float = 1.0) -> MotionSample:
    """Track the most contrasted changed spots of ``ref`` (``ref_contrast`` is its
    `local_contrast`) to ``grey`` with pyramidal LK; a track is kept when tracking it back lands
    within ``max_error`` px of where it started. A spot whose track is lost counts as fast: at
    1-2 frames/s a vehicle in free flow moves further than LK can follow, while crawling traffic
    tracks well."""
    h, w = grey.shape
    near_change = cv2.dilate(changed.view(np.uint8), _SQUARE3)[step // 2::step, step // 2::step]
    grid = ref_contrast[step // 2::step, step // 2::step].copy()
    grid[near_change == 0] = 0
    flat = grid.ravel()
    if dt <= 0 or len(flat) < 3:
        return MotionSample(0, 0.0, 0.0, None)
    top = np.argpartition(flat, -min(max_points, len(flat)))[-max_points:]
    top = top[flat[top] > 20]
    if len(top) < 3:
        return MotionSample(0, 0.0, 0.0, None)
    ys, xs = np.unravel_index(top, grid.shape)
    pts = np.stack([xs * step + step // 2, ys * step + step // 2], 1).astype(np.float32)
    pts = pts.reshape(-1, 1, 2)
    lk = {"winSize": (9, 9), "maxLevel": 3}
    after, _, _ = cv2.calcOpticalFlowPyrLK(ref, grey, pts, None, **lk)
    back, _, _ = cv2.calcOpticalFlowPyrLK(grey, ref, after, None, **lk)
    ok = np.linalg.norm((pts - back).reshape(-1, 2), axis=1) < max_error
    shift = (after - pts).reshape(-1, 2)
    dist = np.linalg.norm(shift, axis=1)
    cap = max(2 * slow_speed, 0.5)
    speed = np.where(ok, np.minimum(dist / w / dt, cap), cap)
    fast = float((speed > slow_speed).mean())
    moved = ok & (dist > 1.0)
    rigid = rigidity(pts.reshape(-1, 2)[moved], shift[moved], 0.08 * w)
    return MotionSample(len(pts), fast, float(np.median(speed)), rigid)


def rigidity(points: np.ndarray, shifts: np.ndarray, radius: float) -> float | None:
    """Mean share of each moved spot's neighbours (within ``radius``) that moved alike (within
    1 px or 35 %). Spots on a vehicle move together; flames and flicker do not. None when fewer
    than three spots have a neighbour."""
    if len(points) < 4:
        return None
    near = np.linalg.norm(points[:, None] - points[None], axis=2) < radius
    np.fill_diagonal(near, False)
    size = np.linalg.norm(shifts, axis=1)
    alike = np.linalg.norm(shifts[:, None] - shifts[None], axis=2) < np.maximum(1.0, 0.35 * size)[:, None]
    has = near.any(axis=1)
    if has.sum() < 3:
        return None
    return float(((alike & near).sum(axis=1)[has] / near.sum(axis=1)[has]).mean())


def count_vehicles(occupied: np.ndarray, min_area_frac: float = 2e-4) -> int:
    """Rough vehicle count: blobs of the occupied mask at half size (touching vehicles merge,
    so dense queues are undercounted)."""
    h, w = occupied.shape
    half = cv2.resize(occupied.astype(np.uint8) * 255, (max(1, w // 2), max(1, h // 2)),
                      interpolation=cv2.INTER_AREA) > 127
    n, _, stats, _ = cv2.connectedComponentsWithStats(half.astype(np.uint8), connectivity=8)
    min_area = max(2, int(min_area_frac * half.size))
    return int((stats[1:, cv2.CC_STAT_AREA] >= min_area).sum())
