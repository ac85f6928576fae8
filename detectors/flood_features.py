"""Per-pixel water evidence for the flood detector (pure functions, working-size images).

Standing water seen by a street camera differs from dry asphalt in three measurable ways:

* **texture loss** - lane markings and asphalt grain vanish under a water film: the local
  Laplacian energy, divided by local brightness so that night and day compare, is low;
* **colour** - flood water is turbid brown/grey or mirrors a grey sky: low saturation;
* **ripples and reflections** - seen at a grazing angle, ripples and broken reflections form
  horizontal bands, so vertical intensity gradients dominate horizontal ones. Dry roads in
  perspective show the opposite (lanes, kerbs and tyre tracks run toward the vanishing point).

``water_maps`` computes these maps once per frame; ``water_mask`` thresholds them.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

TEXTURE_WINDOW = 7  # px at working size: local texture and colour statistics
ORIENTATION_WINDOW = 15  # px at working size: structure tensor for ripple orientation
MIN_VALUE = 35  # darker pixels (night, letterbox bars) carry no water evidence
MAX_VALUE = 240  # blown-out pixels neither


@dataclass(frozen=True)
class WaterMaps:
    """Per-pixel measurements of one frame at working size (arrays of the same height, width)."""

    texture: np.ndarray  # float32: mean |Laplacian| / (local brightness + 20) * 100
    orientation: np.ndarray  # float32: (Eyy - Exx) / (Eyy + Exx), -1 (vertical) .. 1 (horizontal)
    hsv: np.ndarray  # uint8 H x W x 3: local mean hue (0..180), saturation, value

    @property
    def valid(self) -> np.ndarray:
        """Pixels bright enough and not saturated: the only ones that can show evidence."""
        return cv2.inRange(self.hsv[..., 2], MIN_VALUE + 1, MAX_VALUE - 1) > 0


def shrink(frame: np.ndarray, width: int, height: int) -> np.ndarray:
    """Area-average a frame down to (width, height) fast: exact 2x halvings (a bilinear resize
    by exactly 1/2 is a 2x2 mean) while the frame is at least twice too large, then INTER_AREA."""
    while frame.shape[1] >= 2 * width and frame.shape[0] >= 2 * height:
        half = (frame.shape[1] // 2, frame.shape[0] // 2)
        frame = cv2.resize(frame[: half[1] * 2, : half[0] * 2], half, interpolation=cv2.INTER_LINEAR)
    if frame.shape[:2] == (height, width):
        return frame
    return cv2.resize(frame, (width, height), interpolation=cv2.INTER_AREA)


def water_maps(frame_small: np.ndarray, gray: np.ndarray | None = None) -> WaterMaps:
    """Compute the texture, colour and orientation maps of a BGR uint8 working-size frame
    (``gray``: its uint8 grey image, if already at hand)."""
    hsv = cv2.cvtColor(frame_small, cv2.COLOR_BGR2HSV)
    if gray is None:
        gray = cv2.cvtColor(frame_small, cv2.COLOR_BGR2GRAY)
    win = (TEXTURE_WINDOW, TEXTURE_WINDOW)
    local = cv2.blur(hsv, win)  # uint8 box mean: fast, 0.5 level rounding
    laplacian = np.abs(cv2.Laplacian(gray, cv2.CV_32F, ksize=1))
    texture = cv2.blur(laplacian, win) * 100.0 / (local[..., 2].astype(np.float32) + 20.0)
    gx = cv2.Sobel(gray, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(gray, cv2.CV_32F, 0, 1, ksize=3)
    owin = (ORIENTATION_WINDOW, ORIENTATION_WINDOW)
    exx, eyy = cv2.split(cv2.blur(cv2.merge([gx * gx, gy * gy]), owin))
    orientation = (eyy - exx) / (eyy + exx + 1.0)
    return WaterMaps(texture, orientation, local)


@dataclass(frozen=True)
class WaterThresholds:
    """Per-pixel thresholds of the water rules."""

    max_texture: float = 3.0
    max_saturation: int = 69  # grey water, grey-sky reflections (HSV, 0..255, inclusive)
    brown_hue: tuple[int, int] = (5, 28)  # muddy water: orange-brown hues (0..180) ...
    brown_max_saturation: int = 119  # ... may be more saturated, but not flame-orange
    min_orientation: float = 0.25
    vegetation_hue: tuple[int, int] = (29, 89)  # yellow-green .. green-cyan
    vegetation_min_saturation: int = 41  # a green hue this saturated is grass or leaves, not water


def surface_mask(maps: WaterMaps, th: WaterThresholds) -> np.ndarray:
    """Pixels whose texture and colour allow standing water: smooth, grey or muddy brown,
    not vegetation. Necessary, not sufficient (smooth asphalt passes too)."""
    lo_v, hi_v = MIN_VALUE + 1, MAX_VALUE - 1
    grey = cv2.inRange(maps.hsv, (0, 0, lo_v), (180, th.max_saturation, hi_v))
    brown = cv2.inRange(maps.hsv, (th.brown_hue[0], 0, lo_v), (th.brown_hue[1], th.brown_max_saturation, hi_v))
    green = cv2.inRange(maps.hsv, (th.vegetation_hue[0], th.vegetation_min_saturation, 0),
                        (th.vegetation_hue[1], 255, 255))
    colour = cv2.bitwise_and(cv2.bitwise_or(grey, brown), cv2.bitwise_not(green))
    return (colour > 0) & (maps.texture < th.max_texture)


def water_mask(maps: WaterMaps, th: WaterThresholds) -> np.ndarray:
    """Pixels that look like standing water in this frame alone: a water surface with the
    horizontal ripple and reflection structure that a dry road in perspective lacks."""
    return surface_mask(maps, th) & (maps.orientation > th.min_orientation)


def clean_mask(mask: np.ndarray, min_area_px: int) -> tuple[np.ndarray, list[tuple[int, int, int, int]]]:
    """Close small gaps, drop specks; return the cleaned mask and component boxes (x, y, w, h),
    largest first. Water sheets are large and connected; asphalt false positives are speckle."""
    m = mask.astype(np.uint8)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5))
    m = cv2.morphologyEx(m, cv2.MORPH_CLOSE, kernel)
    m = cv2.morphologyEx(m, cv2.MORPH_OPEN, cv2.getStructuringElement(cv2.MORPH_RECT, (3, 3)))
    # 16-bit labels suffice at working size (fewer than 65536 components) and are faster.
    count, labels, stats, _ = cv2.connectedComponentsWithStats(m, connectivity=8, ltype=cv2.CV_16U)
    keep = stats[:, cv2.CC_STAT_AREA] >= min_area_px
    keep[0] = False
    kept = np.flatnonzero(keep)
    kept = kept[np.argsort(-stats[kept, cv2.CC_STAT_AREA], kind="stable")]
    boxes = [tuple(int(v) for v in stats[i, :4]) for i in kept]
    return keep[labels], boxes


class DryReference:
    """Per-pixel running median of texture (log) and orientation over frames judged dry.

    A mean would be inflated by every car that drives through; the median is the road itself.
    Warm-up: the median of ``WARMUP`` frames spaced over ``span_s / 30``. After that, an
    approximate running median (each sample nudges the reference one step toward it), sampled
    at most every 0.5 s so that 1 and 30 frames/s behave alike; a lasting change (a factor e in
    texture) is absorbed in about ``span_s``.
    """

    WARMUP = 7
    MIN_INTERVAL_S = 0.5
    TEXTURE_FLOOR = 0.05  # keeps the log finite on perfectly flat pixels

    def __init__(self, span_s: float) -> None:
        self.span_s = span_s
        self.samples = 0
        self._warmup: list[tuple[np.ndarray, np.ndarray]] = []
        self._log_texture: np.ndarray | None = None
        self._orientation: np.ndarray | None = None
        self._texture: np.ndarray | None = None
        self._last_ts: float | None = None

    @property
    def mature(self) -> bool:
        """True once the warm-up median exists."""
        return self._log_texture is not None

    def texture(self) -> np.ndarray:
        """The reference texture map (same units as ``WaterMaps.texture``)."""
        if self._texture is None:
            self._texture = np.exp(self._log_texture) - self.TEXTURE_FLOOR
        return self._texture

    @property
    def orientation(self) -> np.ndarray:
        """The reference orientation map."""
        return self._orientation

    def update(self, texture: np.ndarray, orientation: np.ndarray, ts: float) -> None:
        """Offer a dry frame's maps taken at ``ts`` seconds."""
        spacing = self.span_s / 30.0 / self.WARMUP if not self.mature else self.MIN_INTERVAL_S
        if self._last_ts is not None and 0.0 <= ts - self._last_ts < spacing:
            return
        self._last_ts = ts
        self.samples += 1
        self._texture = None
        log_texture = np.log(texture + self.TEXTURE_FLOOR)
        if not self.mature:
            self._warmup.append((log_texture, orientation.copy()))
            if len(self._warmup) == self.WARMUP:
                self._log_texture = np.median(np.stack([w[0] for w in self._warmup]), axis=0)
                self._orientation = np.median(np.stack([w[1] for w in self._warmup]), axis=0)
                self._warmup = []
            return
        step = self.MIN_INTERVAL_S / self.span_s  # a change of 1 (log texture) takes ~span_s
        self._log_texture += step * np.sign(log_texture - self._log_texture)
        self._orientation += step * np.sign(orientation - self._orientation)


def thumbnail(gray: np.ndarray, size: tuple[int, int] = (32, 24)) -> np.ndarray:
    """A tiny brightness-normalised image for scene-change checks (zero mean, unit scale)."""
    t = cv2.resize(gray, size, interpolation=cv2.INTER_AREA)
    return (t - t.mean()) / (t.std() + 8.0)


def water_level_index(water: np.ndarray, region: np.ndarray, row_cover: float = 0.5) -> float:
    """How far up the road region the water reaches, 0..1: the share of the region's rows,
    counted from the bottom, that are at least ``row_cover`` covered by water, up to the
    highest such row. A proxy for depth: water spreading toward the horizon over a road that
    slopes away from the camera means a higher level, with no reference markers needed."""
    rows = np.flatnonzero(region.any(axis=1))
    if rows.size == 0:
        return 0.0
    region_count = region[rows].sum(axis=1)
    cover = (water[rows] & region[rows]).sum(axis=1) / np.maximum(region_count, 1)
    wet = np.flatnonzero(cover >= row_cover)
    if wet.size == 0:
        return 0.0
    return float((rows.size - wet.min()) / rows.size)
