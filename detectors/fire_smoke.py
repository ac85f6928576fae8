"""Smoke evidence for the fire detector: a haze model per grid cell against a slow background.

Works on a grey image (the detector passes its working-size frame shrunk to half); nothing here
knows about settings models.
"""

from __future__ import annotations

from collections import deque

import cv2
import numpy as np

from detectors.imaging import block_means, resize_mask

BACKGROUND_QUANTILE = 0.3  # the background is this lower quantile of the snapshots (passing cars add edges)
MIN_FLAGGED_FRAMES = 3  # stored frames needed before a cell can be called hazy
GROWTH_WINDOW_S = 60.0  # s: the plume's growth is measured against its area this long ago (at most)


class SmokeHaze:
    """Smoke evidence per grid cell against a slow background model.

    Smoke is translucent: where it drifts in front of the scene the cell's edge energy falls
    (``edge_loss``) while the background's pattern still shows through (the cell's gradients stay
    correlated with the background's), its colour is low-saturation grey, and it changes slowly.
    An opaque object (a truck) replaces the pattern instead, so it is not haze. A cell is hazy when
    that holds in most stored frames of the window. The background is a per-pixel lower quantile
    of snapshots over ``background_s`` seconds, frozen where haze is seen. Smoke is slow (it must
    persist for ``window_s``), so frames are stored at most every ``min_step_s`` = 0.9 s: every
    other frame at 2 frames/s, half the work of looking at each.

    Gradients are exact integers (|Sobel x| + |Sobel y| of the grey image); the per-cell energy,
    correlation and saturation come from per-cell sums (an exact box average per cell), not from
    per-pixel copies of every cell.
    """

    def __init__(self, cell: int = 16, sensitivity: float = 0.5, background_s: float = 40.0,
                 window_s: float = 10.0, min_step_s: float = 0.9) -> None:
        k = (sensitivity - 0.5) * 2.0
        self.cell = cell
        self.snap_every_s = 3.0  # s between background snapshots
        self.snapshots_kept = max(3, int(background_s / self.snap_every_s))
        self.window_s = window_s
        self.min_step_s = min_step_s
        self.loss_min = 0.35 - 0.1 * k  # share of the background's edge energy that must vanish
        self.corr_min = 0.3  # gradient correlation with the background (pattern shows through)
        self.sat_max = 70 + 20 * k  # mean HSV saturation (0..255) of a hazy cell
        self.texture_min = 6.0  # mean gradient the background needs for a loss to be measurable
        self.persist = 0.7 - 0.15 * k  # share of the window's stored frames a cell must be flagged in
        self.min_cells = 4  # a plume covers at least a 2x2 block of cells
        self.scene_change = 0.4  # share of textured cells no longer matching the background
        self.reset()

    def reset(self) -> None:
        """Forget the background and the history."""
        self.grid: tuple[int, int] = (0, 0)
        self.bg_grad: np.ndarray | None = None  # int16 gradient magnitude of the grid's crop
        self._bg_terms: tuple[np.ndarray, ...] = ()  # per cell: sum, centred norm; the bg as float
        self.times: deque[float] = deque()
        self.flags: deque[np.ndarray] = deque()
        self.flag_counts: np.ndarray | None = None  # per cell: flagged frames in the window
        self.first_ts: float | None = None
        self.snapshots: deque[np.ndarray] = deque(maxlen=self.snapshots_kept)
        self.snap_ts = 0.0
        self.last = (np.zeros(0, bool), {"growth": 0.0, "edge_loss": 0.0, "global": 0.0})
        self.areas: deque[tuple[float, float]] = deque()
        self.plumes = np.zeros((0, 5), np.int32)  # connected hazy cells: x, y, w, h, area in cells
        self._region_of: np.ndarray | None = None
        self._region_cells = np.zeros(0)  # region pixels per cell

    @property
    def span_s(self) -> float:
        return self.times[-1] - self.first_ts if self.times and self.first_ts is not None else 0.0

    def due(self, ts: float, shape: tuple[int, ...]) -> bool:
        """Whether a frame of ``shape`` at ``ts`` would be analysed (else ``update`` repeats itself)."""
        grid = (shape[0] // self.cell, shape[1] // self.cell)
        return grid != self.grid or not self.times or ts < self.times[-1] \
            or ts - self.times[-1] >= self.min_step_s

    def _crop(self, image: np.ndarray) -> np.ndarray:
        rows, cols = self.grid
        return image[: rows * self.cell, : cols * self.cell]

    def _cell_means(self, image: np.ndarray) -> np.ndarray:
        """Mean of each cell of a float image of the grid's crop (exact: a box average)."""
        rows, cols = self.grid
        return block_means(image, cols, rows).ravel()

    def _cell_sums(self, image: np.ndarray) -> np.ndarray:
        return self._cell_means(image) * float(self.cell * self.cell)

    def region_pixels(self, region: np.ndarray) -> np.ndarray:
        """Region pixels per cell (recomputed only when another region array comes)."""
        if self._region_of is not region or self._region_cells.shape[0] != self.grid[0] * self.grid[1]:
            self._region_of = region
            self._region_cells = np.rint(self._cell_sums(self._crop(region).astype(np.float32)))
        return self._region_cells

    def plume_boxes(self, region: np.ndarray) -> list[tuple[int, int, int, int]]:
        """Pixel boxes (x, y, w, h) of the connected hazy areas of the last update inside
        ``region`` (bool, the grey image's shape)."""
        c = self.cell
        if (self.region_pixels(region) == c * c).all():  # whole cells: the plumes' cell boxes
            return [(int(x) * c, int(y) * c, int(w) * c, int(h) * c) for x, y, w, h, _ in self.plumes]
        rows, cols = self.grid
        hazy = np.zeros(region.shape, np.uint8)
        up = cv2.resize(self.last[0].reshape(rows, cols).view(np.uint8), (cols * c, rows * c),
                        interpolation=cv2.INTER_NEAREST)
        hazy[: rows * c, : cols * c] = up & self._crop(region)
        count, _, stats, _ = cv2.connectedComponentsWithStats(hazy, connectivity=8)
        return [(int(x), int(y), int(w), int(h)) for x, y, w, h, _ in stats[1:count]]

    def _saturation(self, colour: np.ndarray, shape: tuple[int, ...], which: np.ndarray) -> np.ndarray:
        """Mean HSV saturation of the cells ``which`` of ``colour`` shrunk to ``shape``."""
        rows, cols = self.grid
        c = self.cell
        if colour.shape[:2] != (2 * shape[0], 2 * shape[1]):
            half = cv2.resize(colour, shape[1::-1], interpolation=cv2.INTER_LINEAR)
            sat = cv2.cvtColor(half, cv2.COLOR_BGR2HSV)[:, :, 1]
            return self._cell_means(self._crop(sat).astype(np.float32))[which]
        # an exact halving averages 2x2 blocks: shrink only these cells' blocks, side by side
        blocks = colour[: rows * 2 * c, : cols * 2 * c].reshape(rows, 2 * c, cols, 2 * c, 3)
        mosaic = blocks.swapaxes(1, 2)[which // cols, which % cols].reshape(-1, 2 * c, 3)
        half = cv2.resize(mosaic, (c, len(which) * c), interpolation=cv2.INTER_LINEAR)
        return cv2.cvtColor(half, cv2.COLOR_BGR2HSV)[:, :, 1].reshape(len(which), c * c).mean(axis=1)

    def _background_terms(self) -> tuple[np.ndarray, ...]:
        """Per cell of the background: gradient sum and centred squared norm, and the background as
        float64 (they change only when the background does)."""
        if not self._bg_terms:
            assert self.bg_grad is not None  # update() sets the background before asking
            bg = self.bg_grad.astype(np.float64)
            b1 = self._cell_sums(bg)
            bb = self._cell_sums(bg * bg) - b1 * b1 / (self.cell * self.cell)
            self._bg_terms = (b1, bb, bg)
        return self._bg_terms

    def _set_background(self, grad: np.ndarray) -> None:
        self.bg_grad, self._bg_terms = grad, ()

    def update(self, ts: float, luma: np.ndarray, region: np.ndarray,
               colour: np.ndarray) -> tuple[np.ndarray, dict[str, float]]:
        """Feed a frame's grey image and the BGR frame it was shrunk from (bilinear); returns
        per-cell hazy flags (row-major) and measurements."""
        grid = (luma.shape[0] // self.cell, luma.shape[1] // self.cell)
        if grid != self.grid or (self.times and ts < self.times[-1]):
            self.reset()
            self.grid = grid
        if self.times and ts - self.times[-1] < self.min_step_s:
            return self.last
        n = float(self.cell * self.cell)
        gx, gy = cv2.spatialGradient(luma)  # the 3x3 Sobel pair in one pass
        np.abs(gx, out=gx)
        gx += np.abs(gy, out=gy)  # at most 2 * 4 * 255: no overflow
        grad = self._crop(gx)
        inside = self.region_pixels(region) > n / 2
        if self.bg_grad is None:
            self._set_background(grad)
            self.first_ts = ts
        assert self.bg_grad is not None  # set just above; a scene change below sets it again
        b1, bb, bg = self._background_terms()
        g = grad.astype(np.float64)
        s1 = self._cell_sums(g)
        bg_energy = (b1 / n).astype(np.float32)
        loss = 1.0 - (s1 / n).astype(np.float32) / np.maximum(bg_energy, 1e-3)
        # correlation of the cell's gradients with the background's, from per-cell sums
        cross = self._cell_sums(g * bg) - s1 * b1 / n
        spread = self._cell_sums(g * g) - s1 * s1 / n
        corr = cross / np.maximum(np.sqrt(spread * bb), 1e-3)
        textured = inside & (bg_energy >= self.texture_min)
        n_textured = np.count_nonzero(textured)
        if self.times and n_textured and \
                np.count_nonzero(textured & (corr < self.corr_min)) / n_textured > self.scene_change:
            # most of the scene no longer matches: the camera moved or the view switched
            # (exposure, IR): adopt the new view as background and start over
            first = self.first_ts
            self.reset()
            self.grid, self.first_ts = grid, first
            self._set_background(grad)
            corr = np.ones_like(corr)
        flag = textured & (loss >= self.loss_min) & (corr >= self.corr_min)
        if flag.any():  # saturation last: only for the cells that passed every other test
            which = np.flatnonzero(flag)
            flag[which] = self._saturation(colour, luma.shape, which) <= self.sat_max
        if not self.snapshots or ts - self.snap_ts >= self.snap_every_s:
            # background = per-pixel lower quantile (30 %) of snapshots every few seconds: passing
            # cars add edges, so they do not enter it; cells seen hazy keep their old background
            rows, cols = grid
            frozen = resize_mask(flag.reshape(rows, cols), grad.shape[1], grad.shape[0])
            self.snapshots.append(np.where(frozen, self.bg_grad, grad))
            self.snap_ts = ts
            self._set_background(_kth_smallest(self.snapshots, int(BACKGROUND_QUANTILE * (len(self.snapshots) - 1))))
        self.times.append(ts)
        self.flags.append(flag)
        counts = self.flag_counts if self.flag_counts is not None else np.zeros(flag.shape, np.int64)
        counts += flag
        while ts - self.times[0] > self.window_s:
            self.times.popleft()
            counts -= self.flags.popleft()
        self.flag_counts = counts
        hazy_cells = counts / len(self.flags) >= self.persist if len(self.flags) >= MIN_FLAGGED_FRAMES \
            else np.zeros_like(flag)
        rows, cols = self.grid
        # smoke is one spreading plume, not scattered cells (cars over lane markings)
        count, labels, stats, _ = cv2.connectedComponentsWithStats(
            hazy_cells.reshape(rows, cols).astype(np.uint8), connectivity=8)
        keep = np.zeros(count, bool)
        keep[1:] = stats[1:, cv2.CC_STAT_AREA] >= self.min_cells
        hazy_cells = keep[labels].ravel()
        self.plumes = stats[keep]
        area = float(hazy_cells.sum())
        self.areas.append((ts, area))
        while ts - self.areas[0][0] > GROWTH_WINDOW_S:
            self.areas.popleft()
        t0, a0 = self.areas[0]
        # relative growth per minute (the 60 converts s to min)
        growth = (area - a0) / max(a0, 1.0) / max((ts - t0) / 60.0, 1e-3) if ts > t0 else 0.0
        measures = {
            "growth": float(growth),
            "edge_loss": float(loss[hazy_cells].mean()) if hazy_cells.any() else 0.0,
            "global": float(hazy_cells.sum() / max(textured.sum(), 1)),
        }
        self.last = (hazy_cells, measures)
        return self.last


def _kth_smallest(images: deque[np.ndarray], k: int) -> np.ndarray:
    """Per-pixel ``k``-th smallest (0-based) of a few integer images: the k+1 smallest values are
    kept in order by element-wise min/max (whole-image operations, unlike a per-pixel sort)."""
    low: list[np.ndarray] = []
    for image in images:
        x = image
        for j, kept in enumerate(low):
            low[j] = np.minimum(kept, x)
            if j < k:  # the largest of k+1 is dropped
                x = np.maximum(kept, x)
        if len(low) <= k:
            low.append(x)
    return low[k]
