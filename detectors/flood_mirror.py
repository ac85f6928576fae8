"""Sky-mirror puddles for the flood detector (a pure function of one working-size frame).

A cue for calm puddles too small or too clear for the texture/colour/ripple rules of
``flood_features``. In daylight a still water surface reflects the sky, so a puddle on asphalt,
sand or gravel is a patch that is *brighter* than the ground and *bluer* than both grey and its
own rim (a sharp colour edge), glass-smooth inside and flat. A wet road reflects the sky too,
but as a diffuse grey sheen that keeps the road's texture and has no edge of its own; the sky
itself and the sea are excluded by requiring the patch to lie inside the watched region (not
reaching its top edge). Puddles mirroring an overcast (grey) sky are not found by this cue.
"""

from __future__ import annotations

import cv2
import numpy as np

MIRROR_MIN_BLUE = 8  # Cb (blue-difference chroma) levels: the patch is this much bluer than the
#                      ground, its rim and grey
MIRROR_MIN_BRIGHT = 10  # luma levels: ... and this much brighter than the ground
MIRROR_RING = 5  # px kernel at working size: the rim is the 2 px of ground around a patch
_RING_KERNEL = np.ones((MIRROR_RING, MIRROR_RING), np.uint8)
_OPEN_KERNEL = np.ones((2, 2), np.uint8)
_CORE_KERNEL = np.ones((3, 3), np.uint8)


def _median_u8(channel: np.ndarray, mask: np.ndarray) -> float:
    """Median of a uint8 channel under a uint8 mask (from its histogram: fast)."""
    cumulative = np.cumsum(cv2.calcHist([channel], [0], mask, [256], [0, 256]).ravel())
    return float(np.searchsorted(cumulative, 0.5 * cumulative[-1])) if cumulative[-1] else 0.0


def ground_levels(cells_bgr: np.ndarray, cells_region: np.ndarray) -> tuple[float, float]:
    """The ground's median luma and blue chroma (Cb) over a region, from a frame's cell means
    (the grid of ``flood_features.to_cells``; the medians of 2x2 means, 4x fewer values)."""
    ycc = cv2.cvtColor(cells_bgr, cv2.COLOR_BGR2YCrCb)
    mask = np.ascontiguousarray(cells_region).view(np.uint8)
    return _median_u8(cv2.extractChannel(ycc, 0), mask), _median_u8(cv2.extractChannel(ycc, 2), mask)


def mirror_puddles(frame_small: np.ndarray, gray: np.ndarray, region: np.ndarray,
                   ground: tuple[float, float], max_texture: float) -> np.ndarray:
    """Calm water mirroring a blue sky: patches of the region brighter than the region's ground
    (``ground``: median luma and Cb, see ``ground_levels``), bluer than grey and the ground and
    than their own rim (a sharp colour edge), with a core (eroded by 1 px) whose median 3x3
    texture is below ``max_texture``, at least as wide as tall (flat water seen in perspective),
    not reaching the region's top edge (the sky or the sea beyond the road), and at least 0.1 %
    of the region. Returns a bool mask of the patches. ``gray`` is the frame's grey image (its
    luma). The shape tests run first, on all patches at once; the colour and texture tests only
    on the few patches that pass them."""
    blue = cv2.extractChannel(cv2.cvtColor(frame_small, cv2.COLOR_BGR2YCrCb), 2)  # Cb, 128 = grey
    region_u8 = np.ascontiguousarray(region).view(np.uint8)
    region_px = cv2.countNonZero(region_u8)
    min_area = max(4, 0.001 * region_px)
    ground_y, ground_b = ground
    candidate = cv2.threshold(blue, max(ground_b, 128) + MIRROR_MIN_BLUE, 1, cv2.THRESH_BINARY)[1]
    candidate &= region_u8
    candidate &= cv2.threshold(gray, ground_y + MIRROR_MIN_BRIGHT, 1, cv2.THRESH_BINARY)[1]
    puddles = np.zeros(region.shape, bool)
    if cv2.countNonZero(candidate) < min_area:
        return puddles
    candidate = cv2.morphologyEx(candidate, cv2.MORPH_OPEN, _OPEN_KERNEL)
    bx, by, bw, bh = cv2.boundingRect(candidate)
    if not bw:
        return puddles
    # Label only the box holding the candidates, widened by the margin every patch test reads
    # (the rim's dilation reaches 2 px beyond the rim): results as on the whole frame.
    pad = MIRROR_RING // 2 + 2
    box = (slice(max(0, by - pad), by + bh + pad), slice(max(0, bx - pad), bx + bw + pad))
    candidate, blue, gray, in_box = candidate[box], blue[box], gray[box], puddles[box]
    _, labels, stats, _ = cv2.connectedComponentsWithStats(candidate, connectivity=8, ltype=cv2.CV_16U)
    top = cv2.boundingRect(region_u8)[1] - box[0].start  # the region's top row, in the box
    x, y, w, h, area = (stats[:, i] for i in range(5))
    shaped = np.flatnonzero((area >= min_area) & (w >= h) & (y > top + 1))
    for patch in shaped[shaped > 0]:
        rows = slice(max(0, y[patch] - pad), y[patch] + h[patch] + pad)
        cols = slice(max(0, x[patch] - pad), x[patch] + w[patch] + pad)
        if _mirrors_sky(labels[rows, cols], patch, candidate[rows, cols], blue[rows, cols],
                        gray[rows, cols], max_texture):
            in_box[rows, cols] |= labels[rows, cols] == patch
    return puddles


def _mirrors_sky(labels: np.ndarray, patch: int, candidate: np.ndarray, blue: np.ndarray,
                 gray: np.ndarray, max_texture: float) -> bool:
    """Whether one patch (``labels == patch`` in this window) is bluer than its rim (the ring of
    ground around it; a ring pixel between patches belongs to the higher label) and smooth:
    the median 3x3 texture of its core (eroded by 1 px) below ``max_texture``."""
    inside = (labels == patch).view(np.uint8)
    ring = (cv2.dilate(labels, _RING_KERNEL) == patch).view(np.uint8)
    ring[candidate > 0] = 0
    if cv2.mean(blue, mask=inside)[0] <= cv2.mean(blue, mask=ring)[0] + MIRROR_MIN_BLUE:  # 0 if no ring
        return False
    core = cv2.erode(candidate, _CORE_KERNEL) & inside
    core_px = cv2.countNonZero(core)
    if not core_px:  # too thin to show that it is smooth inside
        return False
    texture = cv2.blur(np.abs(cv2.Laplacian(gray, cv2.CV_32F, ksize=1)), (3, 3)) * 100.0 / (
        cv2.blur(gray, (3, 3)).astype(np.float32) + 20.0)
    return np.count_nonzero((texture < max_texture) & (core > 0)) > 0.5 * core_px
