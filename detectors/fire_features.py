"""Building blocks of the fire and smoke detector: flame colour candidates, flicker analysis of
candidate sites over a short history, and a smoke (haze) model against a slow background.

Everything works on the detector's working-size frame; nothing here knows about settings models.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import cv2
import numpy as np


def flame_colour_mask(bgr: np.ndarray, red_min: int, sat_min: float = 0.4,
                      hue_min: float = 0.12) -> np.ndarray:
    """Pixels whose colour could be flame: bright saturated red-orange-yellow body pixels, plus
    washed-out yellow-white core pixels that touch a body pixel.

    Body rule (after Chen et al. 2004 and Celik & Demirel 2009): R >= G > B, R > ``red_min``,
    HSV saturation (R-B)/R >= ``sat_min`` and hue above pure red, (G-B)/(R-B) >= ``hue_min``.
    Core: R > 220, G > 170, R >= G >= B within 2 px of the body. Colour only proposes candidates;
    returns a bool mask.
    """
    b, g, r = cv2.split(bgr)
    body = (r > red_min) & (r >= g) & (g > b)  # cheap uint8 tests first, ratios only where needed
    where = np.flatnonzero(body)
    if where.size:
        rb, gb, bb = (c.ravel()[where].astype(np.int16) for c in (r, g, b))
        chroma = rb - bb
        body.ravel()[where] = (chroma >= sat_min * rb) & (gb - bb >= hue_min * chroma)
    if not where.size or not body.any():
        return body  # no body pixel: no core pixel can touch one
    core = (r > 220) & (g > 170) & (r >= g) & (g >= b)
    near_body = cv2.dilate(body.view(np.uint8), _NEAR_BODY).view(bool)
    return body | (core & near_body)


_NEAR_BODY = np.ones((5, 5), np.uint8)


RIGIDITY_PAIRS = 3  # consecutive stored frames compared by the rigidity test (at most)


class CellFlicker:
    """Flicker evidence per grid cell from the history of flame-colour candidate masks.

    The frame is cut into ``cell`` x ``cell`` squares. Whenever a frame is stored (at most every
    ``min_step_s`` seconds, so 1 and 30 frames/s look alike), each cell's candidate shape is
    compared with its shapes in every stored frame of the window. Its *novelty* is 1 minus the best
    match (IoU): a static logo or lamp matches itself, a blinking or cycling neon matches an earlier
    cycle, a slowly sliding object matches the previous frame, but a flame's outline never repeats.
    *Shimmer* is the brightness change where the cell was candidate in both frames (a flame flickers
    inside, a creeping car only changes at its edges); *presence* the share of stored
    frames in which the cell held candidates (a passing car leaves quickly).
    """

    def __init__(self, cell: int = 16, window_s: float = 6.0, min_step_s: float = 0.45,
                 max_frames: int = 14, min_past: int = 5) -> None:
        self.cell = cell
        self.min_past = min_past  # novelty is only judged against at least this many past frames
        self.window_s = window_s
        self.min_step_s = min_step_s
        self.max_frames = max_frames
        self.reset()

    def reset(self) -> None:
        """Forget the history (new stream, size change or time going backwards)."""
        self.times: deque[float] = deque()
        self.shapes: deque[np.ndarray] = deque()  # (cells, cell*cell/8) packed bits per stored frame
        self.counts: deque[np.ndarray] = deque()  # (cells,) candidate pixels per stored frame
        self.last_shape: np.ndarray | None = None  # (cells, cell*cell) bool of the last stored frame
        # Full candidate masks, only as many as the rigidity test reads (memory: a camera's state).
        self.masks: deque[np.ndarray] = deque(maxlen=RIGIDITY_PAIRS + 1)
        self.present: deque[np.ndarray] = deque()  # per stored frame: cell held candidates
        self.last_lum: np.ndarray | None = None  # cells' grey levels of the last stored frame
        self.novelty: deque[np.ndarray] = deque()  # per stored frame, NaN where the cell was empty
        self.shimmer: deque[np.ndarray] = deque()
        self.grid: tuple[int, int] = (0, 0)
        self.last_change = 0.0  # mean absolute brightness change at the last store (0..1)

    def _cells(self, image: np.ndarray) -> np.ndarray:
        rows, cols = self.grid
        c = self.cell
        cut = image[: rows * c, : cols * c]
        return cut.reshape(rows, c, cols, c).swapaxes(1, 2).reshape(rows * cols, c * c)

    def due(self, ts: float) -> bool:
        """Whether a frame at ``ts`` would be stored (the analysis only changes then)."""
        return not self.times or ts - self.times[-1] >= self.min_step_s or ts < self.times[-1]

    def store(self, ts: float, mask: np.ndarray, luma: np.ndarray) -> None:
        """Add a frame's candidate mask and grey image and measure every cell against the history."""
        grid = (mask.shape[0] // self.cell, mask.shape[1] // self.cell)
        if grid != self.grid or (self.times and ts < self.times[-1]):
            self.reset()
            self.grid = grid
        shape = self._cells(mask)
        lum = self._cells(luma).astype(np.int16)
        counts = shape.sum(axis=1)
        novelty = np.full(len(counts), np.nan, np.float32)
        shimmer = np.zeros(len(counts), np.float32)
        occupied = counts > 0
        bits = np.packbits(shape, axis=1)  # 8 pixels a byte: the IoUs count bits, not bools
        if len(self.shapes) >= self.min_past and occupied.any():
            past = np.stack([old[occupied] for old in self.shapes])  # (frames, cells, bytes)
            inter = np.bitwise_count(past & bits[occupied]).sum(axis=2, dtype=np.int64)
            union = np.stack([old[occupied] for old in self.counts]) + counts[occupied] - inter
            best = np.max(np.where(union > 0, inter / np.maximum(union, 1), 0.0), axis=0)
            novelty[occupied] = 1.0 - best
            now = shape[occupied]
            prev_shape, prev_lum = self.last_shape[occupied], self.last_lum[occupied]
            lit = now & prev_shape  # inside the flame in both frames: rigid objects do not change there
            diff = np.abs(lum[occupied] - prev_lum) * lit
            shimmer[occupied] = diff.sum(axis=1) / np.maximum(lit.sum(axis=1), 1) / 255.0
        self.last_change = (float(np.abs(lum - self.last_lum).mean()) / 255.0
                            if self.last_lum is not None else 0.0)
        self.last_lum, self.last_shape = lum, shape
        queues = (self.times, self.shapes, self.counts, self.novelty, self.shimmer, self.present)
        for queue, item in zip(queues, (ts, bits, counts, novelty, shimmer, occupied)):
            queue.append(item)
        self.masks.append(mask)
        while len(self.times) > self.max_frames or ts - self.times[0] > self.window_s:
            for queue in queues:
                queue.popleft()
        while len(self.masks) > len(self.times):
            self.masks.popleft()

    @property
    def span_s(self) -> float:
        return self.times[-1] - self.times[0] if self.times else 0.0

    def cell_scores(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per cell over the window: presence (0..1), mean novelty and mean shimmer when judged."""
        n = self.grid[0] * self.grid[1]
        if len(self.times) <= self.min_past or n == 0:
            return np.zeros(n), np.zeros(n), np.zeros(n)
        presence = np.stack(self.present).mean(axis=0)
        novelty = np.stack(self.novelty)
        judged = ~np.isnan(novelty)
        hits = np.maximum(judged.sum(axis=0), 1)
        mean_novelty = np.where(judged, novelty, 0.0).sum(axis=0) / hits
        mean_shimmer = np.where(judged, np.stack(self.shimmer), 0.0).sum(axis=0) / hits
        return presence, mean_novelty, mean_shimmer

    def rigidity(self, box: tuple[int, int, int, int], pairs: int = RIGIDITY_PAIRS) -> tuple[float, float]:
        """Mean IoU of consecutive candidate shapes inside ``box`` (x, y, w, h pixels) after
        aligning their centroids, and without aligning. A moving rigid object matches well only
        once aligned; a steady or flickering fire gains nothing from the alignment."""
        x, y, w, h = box
        crops = [m[y:y + h, x:x + w] for m in list(self.masks)[-(pairs + 1):]]
        pairs_ = [(a, b) for a, b in zip(crops, crops[1:]) if a.any() and b.any()]
        if not pairs_:
            return 0.0, 0.0
        aligned = float(np.mean([_aligned_iou(a, b) for a, b in pairs_]))
        raw = float(np.mean([np.count_nonzero(a & b) / np.count_nonzero(a | b) for a, b in pairs_]))
        return aligned, raw


def _aligned_iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two masks after shifting ``a`` so the centroids coincide (rigid motion removed)."""
    ya, xa = np.nonzero(a)
    yb, xb = np.nonzero(b)
    dy = int(round(yb.mean() - ya.mean()))
    dx = int(round(xb.mean() - xa.mean()))
    h, w = a.shape
    ya2, xa2 = ya + dy, xa + dx
    keep = (ya2 >= 0) & (ya2 < h) & (xa2 >= 0) & (xa2 < w)
    inter = int(b[ya2[keep], xa2[keep]].sum())
    union = len(ya) + len(yb) - inter
    return inter / union if union else 1.0


class SmokeHaze:
    """Smoke evidence per grid cell against a slow background model.

    Smoke is translucent: where it drifts in front of the scene the cell's edge energy falls
    (``edge_loss``) while the background's pattern still shows through (the cell's gradients stay
    correlated with the background's), its colour is low-saturation grey, and it changes slowly.
    An opaque object (a truck) replaces the pattern instead, so it is not haze. A cell is hazy when
    that holds in most stored frames of the window. The background is a per-pixel lower quantile
    of snapshots over ``background_s`` seconds, frozen where haze is seen.
    """

    def __init__(self, cell: int = 16, sensitivity: float = 0.5, background_s: float = 40.0,
                 window_s: float = 10.0, min_step_s: float = 0.45) -> None:
        k = (sensitivity - 0.5) * 2.0
        self.cell = cell
        self.snap_every_s = 3.0
        self.snapshots_kept = max(3, int(background_s / self.snap_every_s))
        self.window_s = window_s
        self.min_step_s = min_step_s
        self.loss_min = 0.35 - 0.1 * k  # share of the background's edge energy that must vanish
        self.corr_min = 0.3  # gradient correlation with the background (pattern shows through)
        self.sat_max = 70 + 20 * k  # mean HSV saturation (0..255) of a hazy cell
        self.texture_min = 6.0  # mean gradient the background needs for a loss to be measurable
        self.persist = 0.7 - 0.15 * k
        self.min_cells = 4  # a plume covers at least a 2x2 block of cells
        self.scene_change = 0.4  # share of textured cells no longer matching the background
        self.reset()

    def reset(self) -> None:
        """Forget the background and the history."""
        self.grid: tuple[int, int] = (0, 0)
        self.bg_grad: np.ndarray | None = None  # (cells, cell*cell) float32 gradient magnitude
        self.times: deque[float] = deque()
        self.flags: deque[np.ndarray] = deque()
        self.first_ts: float | None = None
        self.snapshots: deque[np.ndarray] = deque(maxlen=self.snapshots_kept)
        self.snap_ts = 0.0
        self.last = (np.zeros((0, 0), bool), {"growth": 0.0, "edge_loss": 0.0, "global": 0.0})
        self.areas: deque[tuple[float, float]] = deque()
        self._inside_of: np.ndarray | None = None
        self._inside_cells = np.zeros(0, bool)
        self._bg_terms_of: np.ndarray | None = None
        self._bg_terms: tuple[np.ndarray, np.ndarray, np.ndarray] = ()  # type: ignore[assignment]

    @property
    def span_s(self) -> float:
        return self.times[-1] - self.first_ts if self.times and self.first_ts is not None else 0.0

    def _cells(self, image: np.ndarray) -> np.ndarray:
        rows, cols = self.grid
        c = self.cell
        return image[: rows * c, : cols * c].reshape(rows, c, cols, c).swapaxes(1, 2) \
            .reshape(rows * cols, c * c)

    def _inside(self, region: np.ndarray) -> np.ndarray:
        """Cells mostly inside the region (recomputed only when another region array comes)."""
        if self._inside_of is not region or self._inside_cells.shape[0] != self.grid[0] * self.grid[1]:
            self._inside_of = region
            self._inside_cells = self._cells(region).mean(axis=1) > 0.5
        return self._inside_cells

    def _background_terms(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per cell of the background: mean energy, centred gradients and their squared norm
        (they change only when the background does)."""
        if self._bg_terms_of is not self.bg_grad:
            bg_energy = self.bg_grad.mean(axis=1)
            b = self.bg_grad - bg_energy[:, None]
            self._bg_terms = (bg_energy, b, (b * b).sum(axis=1))
            self._bg_terms_of = self.bg_grad
        return self._bg_terms

    def update(self, ts: float, bgr: np.ndarray, luma: np.ndarray,
               region: np.ndarray) -> tuple[np.ndarray, dict[str, float]]:
        """Feed a working-size frame; returns the hazy pixel mask and measurements."""
        grid = (luma.shape[0] // self.cell, luma.shape[1] // self.cell)
        if grid != self.grid or (self.times and ts < self.times[-1]):
            self.reset()
            self.grid = grid
        if self.times and ts - self.times[-1] < self.min_step_s:
            return self.last
        gx = cv2.Sobel(luma, cv2.CV_32F, 1, 0, ksize=3)
        gy = cv2.Sobel(luma, cv2.CV_32F, 0, 1, ksize=3)
        np.abs(gx, out=gx)
        gx += np.abs(gy, out=gy)
        grad = self._cells(gx)
        sat = self._cells(cv2.cvtColor(bgr, cv2.COLOR_BGR2HSV)[:, :, 1]).mean(axis=1)
        inside = self._inside(region)
        if self.bg_grad is None:
            self.bg_grad, self.first_ts = grad.copy(), ts
        bg_energy, b, bb = self._background_terms()
        energy = grad.mean(axis=1)
        loss = 1.0 - energy / np.maximum(bg_energy, 1e-3)
        a = grad - energy[:, None]
        corr = (a * b).sum(axis=1) / np.maximum(np.sqrt((a * a).sum(axis=1) * bb), 1e-3)
        textured = inside & (bg_energy >= self.texture_min)
        if self.times and textured.any() and (corr[textured] < self.corr_min).mean() > self.scene_change:
            # most of the scene no longer matches: the camera moved or the view switched
            # (exposure, IR): adopt the new view as background and start over
            first = self.first_ts
            self.reset()
            self.grid, self.first_ts, self.bg_grad = grid, first, grad.copy()
            corr = np.ones_like(corr)
        flag = (textured & (loss >= self.loss_min) & (corr >= self.corr_min)
                & (sat <= self.sat_max))
        if not self.snapshots or ts - self.snap_ts >= self.snap_every_s:
            # background = per-pixel lower quantile (30 %) of snapshots every few seconds: passing
            # cars add edges, so they do not enter it; cells seen hazy keep their old background
            snap = np.where(flag[:, None], self.bg_grad, grad)
            self.snapshots.append(snap)
            self.snap_ts = ts
            k = int(0.3 * (len(self.snapshots) - 1))
            self.bg_grad = np.partition(np.stack(self.snapshots), k, axis=0)[k]
        self.times.append(ts)
        self.flags.append(flag)
        while ts - self.times[0] > self.window_s:
            self.times.popleft()
            self.flags.popleft()
        hazy_cells = np.stack(self.flags).mean(axis=0) >= self.persist if len(self.flags) >= 3 \
            else np.zeros_like(flag)
        rows, cols = self.grid
        # smoke is one spreading plume, not scattered cells (cars over lane markings)
        count, labels, stats, _ = cv2.connectedComponentsWithStats(
            hazy_cells.reshape(rows, cols).astype(np.uint8), connectivity=8)
        keep = np.zeros(count, bool)
        keep[1:] = stats[1:, cv2.CC_STAT_AREA] >= self.min_cells
        hazy_cells = keep[labels].ravel()
        hazy = np.zeros(luma.shape, bool)
        if hazy_cells.any():
            up = cv2.resize(hazy_cells.reshape(rows, cols).view(np.uint8),
                            (cols * self.cell, rows * self.cell), interpolation=cv2.INTER_NEAREST)
            hazy[: rows * self.cell, : cols * self.cell] = up.view(bool) & region[
                : rows * self.cell, : cols * self.cell]
        area = float(hazy_cells.sum())
        self.areas.append((ts, area))
        while ts - self.areas[0][0] > 60.0:
            self.areas.popleft()
        t0, a0 = self.areas[0]
        growth = (area - a0) / max(a0, 1.0) / max((ts - t0) / 60.0, 1e-3) if ts > t0 else 0.0
        measures = {
            "growth": float(growth),
            "edge_loss": float(loss[hazy_cells].mean()) if hazy_cells.any() else 0.0,
            "global": float(hazy_cells.sum() / max(textured.sum(), 1)),
        }
        self.last = (hazy, measures)
        return self.last
