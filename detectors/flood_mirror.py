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
MIRROR_MIN_PX = 4  # px at working size: smallest mirror patch ...
MIRROR_MIN_SHARE = 0.001  # ... or this fraction of the road region, whichever is larger
MIRROR_TEXTURE_WINDOW = 3  # px at working size: window of the core's texture
MIRROR_BRIGHTNESS_OFFSET = 20.0  # grey levels added to the brightness that divides the texture
MIRROR_SMOOTH_SHARE = 0.5  # more than this fraction of the core must be smoother than max_texture
_OPEN_KERNEL = np.ones((2, 2), np.uint8)
_CORE_KERNEL = np.ones((3, 3), np.uint8)


def ground_levels(cells_bgr: np.ndarray, cells_region: np.ndarray) -> tuple[float, float]:
    """The ground's median luma (YCbCr Y) and blue chroma (Cb) over a region, from a frame's
    cell means (the grid of ``flood_features.to_cells``: the medians of 2x2 means; histograms)."""
    ycc = cv2.cvtColor(cells_bgr, cv2.COLOR_BGR2YCrCb)
    mask = np.ascontiguousarray(cells_region).view(np.uint8)
    cumulative = np.cumsum([cv2.calcHist([ycc], [c], mask, [256], [0, 256]).ravel() for c in (0, 2)], axis=1)
    luma, blue = np.count_nonzero(cumulative < 0.5 * cumulative[:, -1:], axis=1)  # first bin reaching half
    return float(luma), float(blue)


def mirror_puddles(frame_small: np.ndarray, gray: np.ndarray, region: np.ndarray,
                   ground: tuple[float, float], max_texture: float) -> np.ndarray:
    """Calm water mirroring a blue sky: patches of the region brighter than the region's ground
    (``ground``: median luma and Cb, see ``ground_levels``), bluer than grey and the ground and
    than their own rim (a sharp colour edge), with a core (eroded by 1 px) whose median 3x3
    texture (of ``gray``, the frame's grey image) is below ``max_texture``, at least as wide as
    tall (flat water seen in perspective), not reaching the region's top edge (the sky or the
    sea beyond the road), and at least 0.1 % of the region. Returns a bool mask of the patches.
    The patches are cleaned and labelled only in the box holding the candidates; the shape tests
    run on all patches at once, the rim and texture tests only on the few that pass them."""
    ycc = cv2.cvtColor(frame_small, cv2.COLOR_BGR2YCrCb)  # Cb (channel 2): 128 = grey
    region_u8 = np.ascontiguousarray(region).view(np.uint8)
    min_area = max(MIRROR_MIN_PX, MIRROR_MIN_SHARE * cv2.countNonZero(region_u8))
    puddles = np.zeros(region.shape, bool)
    brighter, bluer = int(ground[0]) + MIRROR_MIN_BRIGHT + 1, int(max(ground[1], 128)) + MIRROR_MIN_BLUE + 1
    if max(brighter, bluer) > 255:
        return puddles
    candidate = cv2.bitwise_and(cv2.inRange(ycc, (brighter, 0, bluer), (255, 255, 255)), region_u8)  # 0/1
    if cv2.countNonZero(candidate) < min_area:
        return puddles
    # The box holding the candidates, widened by the margin every patch test reads (the rim's
    # dilation reaches 2 px beyond the rim): results as on the whole frame.
    bx, by, bw, bh = cv2.boundingRect(candidate)
    pad = MIRROR_RING // 2 + 2
    box = (slice(max(0, by - pad), by + bh + pad), slice(max(0, bx - pad), bx + bw + pad))
    candidate = cv2.morphologyEx(candidate[box], cv2.MORPH_OPEN, _OPEN_KERNEL)
    ycc, gray, in_box = ycc[box], gray[box], puddles[box]
    _, labels, stats, _ = cv2.connectedComponentsWithStats(candidate, connectivity=8, ltype=cv2.CV_16U)
    top = cv2.boundingRect(region_u8)[1] - box[0].start  # the region's top row, in the box
    x, y, w, h, area = (stats[:, i] for i in range(5))
    shaped = np.flatnonzero((area >= min_area) & (w >= h) & (y > top + 1))
    for patch in shaped[shaped > 0]:
        rows = slice(max(0, y[patch] - pad), y[patch] + h[patch] + pad)
        cols = slice(max(0, x[patch] - pad), x[patch] + w[patch] + pad)
        if _mirrors_sky(labels[rows, cols], patch, candidate[rows, cols], ycc[rows, cols],
                        gray[rows, cols], max_texture):
            in_box[rows, cols] |= labels[rows, cols] == patch
    return puddles


def _mirrors_sky(labels: np.ndarray, patch: int, candidate: np.ndarray, ycc: np.ndarray,
                 gray: np.ndarray, max_texture: float) -> bool:
    """Whether one patch (``labels == patch`` in this window) is bluer than its rim (the ring of
    ground around it; a ring pixel between patches belongs to the higher label) and smooth:
    the median 3x3 texture of its core (eroded by 1 px) below ``max_texture``."""
    inside = (labels == patch).view(np.uint8)
    ring = (cv2.dilate(labels, _RING_KERNEL) == patch).view(np.uint8)
    ring[candidate > 0] = 0
    if cv2.mean(ycc, mask=inside)[2] <= cv2.mean(ycc, mask=ring)[2] + MIRROR_MIN_BLUE:  # 0 if no ring
        return False
    core = cv2.erode(candidate, _CORE_KERNEL) & inside
    core_px = cv2.countNonZero(core)
    if not core_px:  # too thin to show that it is smooth inside
        return False
    window = (MIRROR_TEXTURE_WINDOW, MIRROR_TEXTURE_WINDOW)
    texture = cv2.blur(np.abs(cv2.Laplacian(gray, cv2.CV_32F, ksize=1)), window) * 100.0 / (
        cv2.blur(gray, window).astype(np.float32) + MIRROR_BRIGHTNESS_OFFSET)
    return bool(np.count_nonzero((texture < max_texture) & (core > 0)) > MIRROR_SMOOTH_SHARE * core_px)
