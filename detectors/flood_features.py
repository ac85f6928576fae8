"""Per-pixel water evidence for the flood detector (pure functions, working-size images),
the dry reference it is compared with, and small helpers.

Standing water seen by a street camera differs from dry asphalt in three measurable ways:

* **texture loss** - lane markings and asphalt grain vanish under a water film: the local
  Laplacian energy, divided by local brightness so that night and day compare, is low;
* **colour** - flood water is turbid brown/grey or mirrors a grey sky: low saturation;
* **ripples and reflections** - seen at a grazing angle, ripples and broken reflections form
  horizontal bands, so vertical intensity gradients dominate horizontal ones. Dry roads in
  perspective show the opposite (lanes, kerbs and tyre tracks run toward the vanishing point).

``water_maps`` computes these maps once per frame, on a grid of 2x2 px cells (~160x90: water
spreads over metres, so the grid resolves it, and everything after the per-pixel derivatives
costs a quarter); ``water_mask`` thresholds them.

A fourth cue, calm puddles mirroring a blue sky, is in ``flood_mirror``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import cast

import cv2
import numpy as np

from detectors.imaging import block_means, close_mask, open_mask

ORIENTATION_WINDOW = 15  # px at working size: structure tensor for ripple orientation
CELL = 2  # px: the maps are kept on a grid of CELL x CELL px cells (derivatives are per pixel)
TEXTURE_CELLS = 3  # cells: window of the local texture and colour statistics (6 px)
ORIENTATION_CELLS = 7  # cells: window of the structure tensor (14 px, ~ORIENTATION_WINDOW)
MIN_VALUE = 35  # darker pixels (night, letterbox bars) carry no water evidence
MAX_VALUE = 240  # blown-out pixels neither
TEXTURE_BRIGHTNESS_OFFSET = 20.0  # grey levels added to the brightness that divides the texture (dark areas)


@dataclass(frozen=True)
class WaterMaps:
    """Per-cell measurements of one frame on the CELL grid (arrays of the same height, width)."""

    texture: np.ndarray  # float32: mean |Laplacian| / (local brightness + 20) * 100
    orientation: np.ndarray  # float32: (Eyy - Exx) / (Eyy + Exx), -1 (vertical) .. 1 (horizontal)
    hue: np.ndarray  # uint8: local mean HSV hue (0..180) ...
    saturation: np.ndarray  # ... saturation ...
    value: np.ndarray  # ... and value
    valid: np.ndarray  # bool: bright enough and not blown out, the only cells that show evidence


def to_cells(image: np.ndarray) -> np.ndarray:
    """Mean of each CELL x CELL block (``image``: even height and width; OpenCV's area resize by
    exactly 1/2 is the 2x2 mean, and its fast path)."""
    return block_means(image, image.shape[1] // CELL, image.shape[0] // CELL)


def mask_to_cells(mask: np.ndarray) -> np.ndarray:
    """A bool mask at working size (even height and width) to the grid: cells at least half set."""
    return to_cells(np.ascontiguousarray(mask).view(np.uint8) * np.uint8(255)) >= 128


def water_maps(cells_bgr: np.ndarray, gray: np.ndarray) -> WaterMaps:
    """Compute the texture, colour and orientation maps on the grid from a frame's uint8 grey
    image at working size (even height and width) and its BGR cell means (``to_cells``).
    Laplacian and gradients are taken per pixel, their magnitudes and products averaged per
    cell, then over the windows: the fine asphalt grain still counts as texture."""
    local = cv2.blur(cv2.cvtColor(cells_bgr, cv2.COLOR_BGR2HSV), (TEXTURE_CELLS, TEXTURE_CELLS))
    hue, saturation, value = cv2.split(local)
    # |Laplacian| x4 in int16: the 2x2 means of multiples of 4 are whole, so exact (and cheaper
    # than float); float from the cell level on.
    laplacian = cv2.Laplacian(gray, cv2.CV_16S, ksize=1, scale=4)
    np.abs(laplacian, out=laplacian)
    texture = cv2.blur(to_cells(laplacian).astype(np.float32), (TEXTURE_CELLS, TEXTURE_CELLS))
    texture *= 100.0 / 4
    texture /= value.astype(np.float32) + TEXTURE_BRIGHTNESS_OFFSET
    owin = (ORIENTATION_CELLS, ORIENTATION_CELLS)
    gx, gy = cv2.spatialGradient(gray)  # 3x3 Sobel pair, int16
    gx, gy = gx.astype(np.float32), gy.astype(np.float32)
    exx = cv2.blur(to_cells(cv2.multiply(gx, gx, dst=gx)), owin)  # squares in place
    eyy = cv2.blur(to_cells(cv2.multiply(gy, gy, dst=gy)), owin)
    orientation = eyy - exx
    orientation /= eyy + exx + 1.0
    valid = cv2.inRange(value, MIN_VALUE + 1, MAX_VALUE - 1) > 0
    return WaterMaps(texture, orientation, hue, saturation, value, valid)


@dataclass(frozen=True)
class WaterThresholds:
    """Per-pixel thresholds of the water rules."""

    max_texture: float = 3.0  # smoother than this (texture units, see WaterMaps) can be water
    max_saturation: int = 69  # grey water, grey-sky reflections (HSV, 0..255, inclusive)
    brown_hue: tuple[int, int] = (5, 28)  # muddy water: orange-brown hues (0..180) ...
    brown_max_saturation: int = 119  # ... may be more saturated, but not flame-orange
    min_orientation: float = 0.25  # ripples: orientation (-1 vertical .. 1 horizontal) above this
    vegetation_hue: tuple[int, int] = (29, 89)  # yellow-green .. green-cyan
    vegetation_min_saturation: int = 41  # a green hue this saturated is grass or leaves, not water


@functools.lru_cache(maxsize=8)
def _saturation_limits(th: WaterThresholds) -> tuple[np.ndarray, np.ndarray | None]:
    """Per hue (0..255), the highest saturation a water surface may have (-1: none): grey at
    any hue, muddy brown at brown hues, never a saturated vegetation green. Also as a uint8
    table for ``cv2.LUT`` when no hue is excluded outright."""
    hue = np.arange(256)
    brown = (hue >= th.brown_hue[0]) & (hue <= th.brown_hue[1])
    green = (hue >= th.vegetation_hue[0]) & (hue <= th.vegetation_hue[1])
    limit = np.where(brown, max(th.max_saturation, th.brown_max_saturation), th.max_saturation)
    limit = np.where(green, np.minimum(limit, th.vegetation_min_saturation - 1), limit)
    limit = np.clip(limit, -1, 255).astype(np.int16)
    return limit, (limit.astype(np.uint8) if limit.min() >= 0 else None)


def surface_mask(maps: WaterMaps, th: WaterThresholds) -> np.ndarray:
    """Cells whose texture and colour allow standing water: smooth, grey or muddy brown,
    not vegetation. Necessary, not sufficient (smooth asphalt passes too)."""
    limits, per_hue_lut = _saturation_limits(th)
    if per_hue_lut is None:  # a hue where nothing passes (only with odd thresholds)
        colour = maps.saturation.astype(np.int16) <= limits[maps.hue]
    else:
        colour = cv2.compare(maps.saturation, cv2.LUT(maps.hue, per_hue_lut), cv2.CMP_LE) > 0
    return colour & maps.valid & (maps.texture < th.max_texture)


def water_mask(maps: WaterMaps, th: WaterThresholds) -> np.ndarray:
    """Pixels that look like standing water in this frame alone: a water surface with the
    horizontal ripple and reflection structure that a dry road in perspective lacks."""
    return surface_mask(maps, th) & (maps.orientation > th.min_orientation)


# On the grid: a 3x3 disc closes ~5 px gaps, a 2x2 opening drops specks narrower than ~4 px.
_CLOSE_KERNEL = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3))
_OPEN_KERNEL = cv2.getStructuringElement(cv2.MORPH_RECT, (2, 2))
_CLOSE_REACH = int(np.count_nonzero(_CLOSE_KERNEL))  # closing at most multiplies the area by this


def clean_mask(mask: np.ndarray, min_area_px: int) -> tuple[np.ndarray, list[tuple[int, int, int, int]]]:
    """Close small gaps, drop specks; return the cleaned mask and component boxes (x, y, w, h),
    largest first. Water sheets are large and connected; asphalt false positives are speckle."""
    m = mask.view(np.uint8) if mask.dtype == bool else mask.astype(np.uint8)
    if cv2.countNonZero(m) * _CLOSE_REACH < max(min_area_px, 1):  # closing cannot grow it enough
        return np.zeros(mask.shape, bool), []
    m = open_mask(close_mask(m, _CLOSE_KERNEL), _OPEN_KERNEL)
    if cv2.countNonZero(m) < max(min_area_px, 1):  # no component can be large enough
        return np.zeros(mask.shape, bool), []
    # 16-bit labels suffice at working size (fewer than 65536 components) and are faster.
    count, labels, stats, _ = cv2.connectedComponentsWithStats(m, connectivity=8, ltype=cv2.CV_16U)
    keep = stats[:, cv2.CC_STAT_AREA] >= min_area_px
    keep[0] = False
    kept = np.flatnonzero(keep)
    kept = kept[np.argsort(-stats[kept, cv2.CC_STAT_AREA], kind="stable")]
    boxes = cast(list[tuple[int, int, int, int]], [tuple(int(v) for v in stats[i, :4]) for i in kept])
    if kept.size == count - 1:  # nothing dropped (also: nothing there)
        return m > 0, boxes
    if kept.size > 8:
        return np.take(keep.view(np.uint8), labels).view(bool), boxes
    cleaned = np.zeros(mask.shape, bool)  # a few sheets among specks: copy them box by box
    for (x, y, w, h), i in zip(boxes, kept):
        cleaned[y:y + h, x:x + w] |= labels[y:y + h, x:x + w] == i
    return cleaned, boxes


class DryReference:
    """Per-cell running median of texture (log), orientation and sky-mirror puddle presence
    over frames judged dry (the puddles of a dry reference are permanent ponds, not flooding).

    A mean would be inflated by every car that drives through; the median is the road itself.
    Warm-up: the median of ``WARMUP`` frames spaced over ``span_s / 30``. After that, an
    approximate running median (each sample nudges the reference one step toward it), sampled
    at most every second so that 1 and 30 frames/s behave alike (and half the frames at 2/s pay
    nothing); a lasting change (a factor e in texture) is absorbed in about ``span_s``.
    """

    WARMUP = 7
    MIN_INTERVAL_S = 1.0
    TEXTURE_FLOOR = 0.05  # keeps the log finite on perfectly flat pixels
    WARMUP_SPAN_DIVISOR = 30.0  # the warm-up frames spread over span_s / this (10 s of 300 s)
    PUDDLE_SHARE = 0.5  # a cell belongs to the dry scene's puddles when its running share exceeds this

    def __init__(self, span_s: float) -> None:
        self.span_s = span_s
        self.samples = 0
        self._warmup: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self._log_texture: np.ndarray | None = None
        self._orientation: np.ndarray | None = None
        self._puddles: np.ndarray | None = None
        self._texture: np.ndarray | None = None
        self._last_ts: float | None = None

    @property
    def mature(self) -> bool:
        """True once the warm-up median exists."""
        return self._log_texture is not None

    def texture(self) -> np.ndarray:
        """The reference texture map (same units as ``WaterMaps.texture``)."""
        if self._texture is None:
            assert self._log_texture is not None  # read only once mature
            self._texture = np.exp(self._log_texture) - self.TEXTURE_FLOOR
        return self._texture

    @property
    def orientation(self) -> np.ndarray:
        """The reference orientation map."""
        assert self._orientation is not None  # read only once mature
        return self._orientation

    @property
    def puddles(self) -> np.ndarray:
        """Where sky-mirror puddles belong to the dry scene (bool map)."""
        assert self._puddles is not None  # read only once mature
        return self._puddles > self.PUDDLE_SHARE

    def update(self, texture: np.ndarray, orientation: np.ndarray, ts: float,
               puddles: np.ndarray | None = None) -> None:
        """Offer a dry frame's maps taken at ``ts`` seconds (``puddles``: its sky-mirror mask)."""
        spacing = self.span_s / self.WARMUP_SPAN_DIVISOR / self.WARMUP if not self.mature else self.MIN_INTERVAL_S
        if self._last_ts is not None and 0.0 <= ts - self._last_ts < spacing:
            return
        self._last_ts = ts
        self.samples += 1
        self._texture = None
        log_texture = np.log(texture + self.TEXTURE_FLOOR)
        if not self.mature:
            present = np.zeros(texture.shape, np.float32) if puddles is None else puddles.astype(np.float32)
            self._warmup.append((log_texture, orientation.copy(), present))
            if len(self._warmup) == self.WARMUP:
                self._log_texture, self._orientation, self._puddles = (
                    _median_of_frames([w[i] for w in self._warmup]) for i in range(3))
                self._warmup = []
            return
        step = self.MIN_INTERVAL_S / self.span_s  # a change of 1 (log texture) takes ~span_s
        # mature: the warm-up median set all three maps at once
        assert self._log_texture is not None and self._orientation is not None and self._puddles is not None
        _nudge(self._log_texture, log_texture, step)
        _nudge(self._orientation, orientation, step)
        if (puddles is not None and puddles.any()) or self._puddles.any():  # else all stay 0
            _nudge(self._puddles, np.zeros(texture.shape, np.float32) if puddles is None
                   else puddles.astype(np.float32), step)


def _nudge(reference: np.ndarray, sample: np.ndarray, step: float) -> None:
    """One step of the approximate running median, in place: ``reference`` moves ``step``
    toward ``sample`` (no move where equal)."""
    reference += step * np.sign(sample - reference)


def _median_of_frames(frames: list[np.ndarray]) -> np.ndarray:
    """``np.median`` over a list of same-shape maps, element-wise. For an odd number without NaN
    (the warm-up), by whole-map min/max exchanges: bubble the largest to the top until only the
    lower half plus the middle is left, whose maximum is the median (exactly the same values,
    ~3x faster than a partial sort along the frame axis)."""
    if len(frames) % 2 == 0 or any(np.isnan(f).any() for f in frames):
        return np.median(np.stack(frames), axis=0)
    maps = [f.copy() for f in frames]
    for top in range(len(maps) - 1, len(maps) // 2, -1):
        for i in range(top):  # afterwards maps[top] holds the largest of maps[:top + 1]
            low = np.minimum(maps[i], maps[i + 1])
            np.maximum(maps[i], maps[i + 1], out=maps[i + 1])
            maps[i] = low
    median = maps[0]
    for other in maps[1: len(maps) // 2 + 1]:
        np.maximum(median, other, out=median)
    return median


def thumbnail(image: np.ndarray, max_width: int = 40) -> np.ndarray:
    """Halve ``image`` by 2x2 means (dropping an odd last row or column) until it is at most
    ``max_width`` wide: a tiny float32 version for scene-change checks (cheap exact halvings)."""
    while image.shape[1] > max_width and min(image.shape[:2]) >= 2 * CELL:
        image = to_cells(image[: image.shape[0] - image.shape[0] % 2, : image.shape[1] - image.shape[1] % 2])
    return image.astype(np.float32)


class LevelGauge:
    """The water level index of one road region, 0..1: how far up the region the water reaches.

    It is the share of the region's rows, counted from the bottom, that are at least
    ``row_cover`` covered by water, up to the highest such row. A proxy for depth: water
    spreading toward the horizon over a road that slopes away from the camera means a higher
    level, with no reference markers needed. The region's per-row sizes are counted once.
    """

    def __init__(self, region: np.ndarray, row_cover: float = 0.5) -> None:
        self._region = np.ascontiguousarray(region).view(np.uint8)
        count = (cv2.reduce(self._region, 1, cv2.REDUCE_SUM, dtype=cv2.CV_32S).ravel() if region.size
                 else np.zeros(region.shape[0], np.int32))
        self._rows = np.flatnonzero(count)
        self._needed = row_cover * count[self._rows]  # wet cells that make a row count

    def level(self, water: np.ndarray) -> float:
        """The water level index of a bool ``water`` mask over the region."""
        if self._rows.size == 0:
            return 0.0
        wet_region = cv2.bitwise_and(np.ascontiguousarray(water).view(np.uint8), self._region)
        wet_count = cv2.reduce(wet_region, 1, cv2.REDUCE_SUM, dtype=cv2.CV_32S).ravel()
        wet = np.flatnonzero(wet_count[self._rows] >= self._needed)
        return float((self._rows.size - wet[0]) / self._rows.size) if wet.size else 0.0
