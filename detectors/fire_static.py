"""Single-frame flame test for static scenes (a replayed still, a frozen stream).

Used only when consecutive frames have been identical for seconds, where the temporal evidence of
:mod:`detectors.fire` (flicker, outline change) cannot exist. Colour alone fires on sunsets, lit
windows, red rooms and orange buses, so a flame-colour blob counts as flame only when every
physical cue holds (conservative AND):

* **core**: at least 10 % of the blob is bright white-yellow (R >= 235, G >= 200): burning gas is
  hot enough to saturate the sensor; red walls, buses and sodium-lit facades are not;
* **envelope**: at least 15 % is saturated orange-red (hue ratio (G-B)/(R-B) < 0.45): the cooler
  outer flame; warm lamps and lit windows are yellow-white without a red rim;
* **ordering along the distance transform**: the inner half of the blob (by distance to its
  outline) is at least as bright as its outer quarter, hottest inside (neon letters and merged
  lamp halos are brightest along their outline);
* **rising, not layered**: flame tongues stand upright, so brightness changes across (horizontal
  gradients) at least 0.6 times as much as up and down; a sunset sky is horizontal layers;
* **irregular outline**: solidity (area / convex hull area) at most 0.9; a sun disk, a box, a bus
  side are close to 1;
* **glow**: the blob is at least 10 grey levels brighter than a 5 px ring around it (it emits).

Thresholds are round physical values with margins on both sides, not fitted to single images.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from detectors.imaging import close_mask, square_kernel

Box = tuple[float, float, float, float]


# Cue measurement (BGR levels 0..255, px at working size):
CORE_RED_MIN = 235  # white-yellow core pixel: R at least this ...
CORE_GREEN_MIN = 200  # ... and G at least this
ENVELOPE_HUE_MAX = 0.45  # orange-red envelope pixel: hue ratio (G - B) / (R - B) below this ...
ENVELOPE_CHROMA_MIN = 60  # ... and R - B above this (saturated)
INNER_DEPTH = 0.5  # interior: distance to the outline at least this fraction of the blob's deepest ...
RIM_DEPTH = 0.25  # ... rim: below this fraction
RISE_REACH = 2  # px around the blob where the brightness gradients of the rise cue are summed
GLOW_RING = 5  # px: the ring around the blob its glow is compared with
MIN_BLOB_PX = 16  # px: smallest blob judged, whatever the region's size
GRADIENT_SIGMA = 1.0  # px: Gaussian blur of the brightness before its gradients
BOX_MARGIN = 8  # px around a blob measured with it (holds the glow ring)


@dataclass(frozen=True)
class StillFlameRule:
    """Thresholds of the static-scene flame test (defaults are the conservative ones)."""

    min_area_pct: float = 0.3  # a blob smaller than this share of the region is not judged
    core_min: float = 0.10  # share of the blob that is white-yellow core
    envelope_min: float = 0.15  # share of the blob that is saturated orange-red
    rise_min: float = 0.6  # sum |d/dx| / sum |d/dy| of brightness over the blob
    solidity_max: float = 0.9  # a disc (sun) or a box (window, sign) is close to 1
    glow_min: float = 10.0  # blob brighter than a 5 px ring around it, grey levels
    order_min: float = 0.0  # interior at least as bright as the rim, grey levels


@dataclass(frozen=True)
class StillFlame:
    """A blob that passed every cue: normalized box, pixels and how clearly it passed (0..1)."""

    box: Box
    pixels: int
    score: float


def _cues(blob: np.ndarray, bgr16: tuple[np.ndarray, ...], luma: np.ndarray, gx: np.ndarray,
          gy: np.ndarray) -> dict[str, float]:
    """The physical measurements of one candidate blob (bool mask at working size)."""
    b, g, r = bgr16
    area = int(blob.sum())
    chroma = r - b
    hue = (g - b) / np.maximum(chroma, 1)
    core = blob & (r >= CORE_RED_MIN) & (g >= CORE_GREEN_MIN) & (g >= b)
    envelope = blob & (hue < ENVELOPE_HUE_MAX) & (chroma > ENVELOPE_CHROMA_MIN)
    u8 = blob.view(np.uint8)
    depth = cv2.distanceTransform(u8, cv2.DIST_L2, 3)
    depth /= max(float(depth.max()), 1.0)
    inner, rim = blob & (depth >= INNER_DEPTH), blob & (depth > 0) & (depth < RIM_DEPTH)
    order = float(luma[inner].mean() - luma[rim].mean()) if inner.any() and rim.any() else 0.0
    near = cv2.dilate(u8, square_kernel(2 * RISE_REACH + 1)).view(bool)
    rise = float(np.abs(gx[near]).sum() / max(float(np.abs(gy[near]).sum()), 1.0))
    contours, _ = cv2.findContours(u8, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    hull = cv2.contourArea(cv2.convexHull(np.vstack(contours)))
    ring = cv2.dilate(u8, square_kernel(2 * GLOW_RING + 1)).view(bool) & ~blob
    glow = float(luma[blob].mean() - luma[ring].mean()) if ring.any() else 0.0
    return {"core": float(core.sum()) / area, "envelope": float(envelope.sum()) / area,
            "order": order, "rise": rise, "solidity": area / max(hull, 1.0), "glow": glow}


def passes(cues: dict[str, float], rule: StillFlameRule) -> bool:
    """Whether every flame cue holds for one blob's measurements."""
    return (cues["core"] >= rule.core_min and cues["envelope"] >= rule.envelope_min
            and cues["order"] >= rule.order_min and cues["rise"] >= rule.rise_min
            and cues["solidity"] <= rule.solidity_max and cues["glow"] >= rule.glow_min)


def _margin(cues: dict[str, float], rule: StillFlameRule) -> float:
    """How clearly the blob passed: the smallest relative margin over the cues, in 0..1."""
    margins = (cues["core"] / rule.core_min - 1, cues["envelope"] / rule.envelope_min - 1,
               cues["rise"] / rule.rise_min - 1, rule.solidity_max / max(cues["solidity"], 1e-3) - 1,
               cues["glow"] / rule.glow_min - 1)
    return float(np.clip(min(margins), 0.0, 1.0))


def candidate_blobs(mask: np.ndarray, min_px: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Connected flame-colour blobs after closing 1 px gaps: (labels, stats, which to judge)."""
    closed = close_mask(mask, square_kernel(3))
    _, labels, stats, _ = cv2.connectedComponentsWithStats(closed, connectivity=8)
    keep = stats[:, cv2.CC_STAT_AREA] >= min_px
    keep[0] = False
    return labels, stats, keep


def still_flames(bgr: np.ndarray, luma: np.ndarray, mask: np.ndarray, region_px: int,
                 rule: StillFlameRule = StillFlameRule()) -> list[StillFlame]:
    """Flame blobs of one working-size frame by the single-frame test; ``mask`` is the
    flame-colour candidate mask already restricted to the watched region."""
    min_px = max(int(rule.min_area_pct / 100.0 * region_px), MIN_BLOB_PX)
    labels, stats, keep = candidate_blobs(mask, min_px)
    if not keep.any():
        return []
    smooth = cv2.GaussianBlur(luma, (0, 0), GRADIENT_SIGMA).astype(np.float32)
    gx = cv2.Sobel(smooth, cv2.CV_32F, 1, 0)
    gy = cv2.Sobel(smooth, cv2.CV_32F, 0, 1)
    channels = tuple(c.astype(np.int16) for c in cv2.split(bgr))
    lum = luma.astype(np.float32)
    hh, ww = mask.shape
    found = []
    for i in np.flatnonzero(keep):
        x, y, w, h = (int(v) for v in stats[i][:4])
        # measure inside the blob's box plus a margin for the glow ring
        x0, y0 = max(x - BOX_MARGIN, 0), max(y - BOX_MARGIN, 0)
        x1, y1 = min(x + w + BOX_MARGIN, ww), min(y + h + BOX_MARGIN, hh)
        blob = labels[y0:y1, x0:x1] == i
        cues = _cues(blob, tuple(c[y0:y1, x0:x1] for c in channels), lum[y0:y1, x0:x1],
                     gx[y0:y1, x0:x1], gy[y0:y1, x0:x1])
        if passes(cues, rule):
            found.append(StillFlame((x / ww, y / hh, w / ww, h / hh), int(blob.sum()),
                                    _margin(cues, rule)))
    return found
