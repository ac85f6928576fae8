"""Building blocks of the fire detector: flame colour candidates, flicker analysis of candidate
sites over a short history, flame blobs and their glow. The smoke (haze) model is in
:mod:`detectors.fire_smoke`.

Everything works on the detector's working-size frame; nothing here knows about settings models.
"""

from __future__ import annotations

from collections import deque

import cv2
import numpy as np

# Flame colour (BGR levels 0..255); the ratios are compared in integers as NUM/DEN fractions.
BODY_SATURATION = (2, 5)  # body: HSV saturation (R - B) / R at least 2/5 = 0.4 ...
BODY_HUE = (3, 25)  # ... and hue ratio (G - B) / (R - B) at least 3/25 = 0.12 (above pure red)
CORE_RED_MIN = 220  # core (white-hot) pixels: R above this ...
CORE_GREEN_MIN = 170  # ... and G above this
CORE_REACH = 2  # px at working size: core pixels count within this distance of the body


def flame_colour_mask(bgr: np.ndarray, red_min: int) -> np.ndarray:
    """Pixels whose colour could be flame: bright saturated red-orange-yellow body pixels, plus
    washed-out yellow-white core pixels that touch a body pixel.

    Body rule (after Chen et al. 2004 and Celik & Demirel 2009): R >= G > B, R > ``red_min``,
    HSV saturation (R-B)/R >= 0.4 and hue above pure red, (G-B)/(R-B) >= 0.12 (both ratios tested
    exactly in integers). Core: R > 220, G > 170, R >= G >= B within 2 px of the body. Colour only
    proposes candidates; returns a bool mask.
    """
    b, g, r = cv2.split(bgr)  # fresh planes: a third of the cost of mixChannels into kept buffers
    body = (r > red_min) & (r >= g) & (g > b)  # cheap tests on the whole frame
    where = np.flatnonzero(body)
    if not where.size:
        return body  # no body pixel: no core pixel can touch one
    # the ratio tests only for those candidates, in integers
    r16, g16, b16 = (c.ravel()[where].astype(np.int16) for c in (r, g, b))
    chroma = r16 - b16
    ok = (BODY_SATURATION[1] * chroma >= BODY_SATURATION[0] * r16) \
        & (BODY_HUE[1] * (g16 - b16) >= BODY_HUE[0] * chroma)
    body.ravel()[where] = ok
    where = where[ok]
    if not where.size:
        return body
    # core pixels within 2 px of the body: only inside the body's box grown by 2 px
    width = body.shape[1]
    columns = where % width
    box = np.s_[max(int(where[0]) // width - CORE_REACH, 0): int(where[-1]) // width + CORE_REACH + 1,
                max(int(columns.min()) - CORE_REACH, 0): int(columns.max()) + CORE_REACH + 1]
    r, g, b, near = r[box], g[box], b[box], body[box]
    core = (r > CORE_RED_MIN) & (g > CORE_GREEN_MIN) & (r >= g) & (g >= b)
    near |= core & cv2.dilate(near.view(np.uint8), _NEAR_BODY).view(bool)
    return body


_NEAR_BODY = np.ones((2 * CORE_REACH + 1, 2 * CORE_REACH + 1), np.uint8)


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

    Only cells holding candidates are measured; the per-frame results live in fixed arrays with one
    slot per stored frame (``slots`` lists them oldest first).
    """

    def __init__(self, cell: int = 16, window_s: float = 6.0, min_step_s: float = 0.45,
                 max_frames: int = 14, min_past: int = 5) -> None:
        self.cell = cell
        self.min_past = min_past  # novelty is only judged against at least this many past frames
        self.window_s = window_s
        self.min_step_s = min_step_s
        self.max_frames = max_frames
        self.reset()

    def reset(self, grid: tuple[int, int] = (0, 0)) -> None:
        """Forget the history (new stream, size change or time going backwards)."""
        self.grid = grid
        cells, slots = grid[0] * grid[1], self.max_frames + 1
        self.times: deque[float] = deque()
        self.slots: deque[int] = deque()  # the stored frames' slots in the arrays below
        self._free = list(range(slots))
        words = -(-self.cell * self.cell // 64)  # a cell's shape packed into 64-bit words
        self.bits = np.zeros((slots, cells, words), np.uint64)
        self.counts = np.zeros((slots, cells), np.int64)  # candidate pixels per cell
        self.judged = np.zeros((slots, cells), bool)  # novelty and shimmer measured (0 where not)
        self.novelty = np.zeros((slots, cells), np.float32)
        self.shimmer = np.zeros((slots, cells), np.float32)
        self.present = np.zeros((slots, cells), bool)  # cell held candidates
        self.present_frames = np.zeros(cells, np.int64)  # stored frames of the window with candidates
        self.judged_frames = np.zeros(cells, np.int64)  # stored frames of the window judged
        # Full candidate masks, only as many as the rigidity test reads (memory: a camera's state).
        self.masks: deque[np.ndarray] = deque(maxlen=RIGIDITY_PAIRS + 1)
        self.last_lum: np.ndarray | None = None  # grey image (the grid's crop) of the last stored frame
        self.last_change = 0.0  # mean absolute brightness change at the last store (0..1)

    def _cells(self, image: np.ndarray, at: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
        """The pixels of the cells at (rows, columns) ``at``: (number of cells, cell*cell)."""
        rows, cols = self.grid
        c = self.cell
        blocks = image[: rows * c, : cols * c].reshape(rows, c, cols, c)
        return blocks[at[0], :, at[1]].reshape(len(at[0]), c * c)

    def due(self, ts: float) -> bool:
        """Whether a frame at ``ts`` would be stored (the analysis only changes then)."""
        return not self.times or ts - self.times[-1] >= self.min_step_s or ts < self.times[-1]

    def store(self, ts: float, mask: np.ndarray, luma: np.ndarray) -> None:
        """Add a frame's candidate mask and grey image and measure every cell against the history."""
        grid = (mask.shape[0] // self.cell, mask.shape[1] // self.cell)
        if grid != self.grid or (self.times and ts < self.times[-1]):
            self.reset(grid)
        rows, cols = grid
        c = self.cell
        crop = np.s_[: rows * c, : cols * c]
        lum = luma[crop]
        slot = self._free.pop()
        counts, novelty, shimmer = self.counts[slot], self.novelty[slot], self.shimmer[slot]
        counts[:] = 0
        x, y, w, h = cv2.boundingRect(mask[crop].view(np.uint8))
        if w:  # pixels per cell (of the cells under the candidates' box) from the integral image
            cells = np.s_[y // c: (y + h - 1) // c + 1, x // c: (x + w - 1) // c + 1]
            under = mask[cells[0].start * c: cells[0].stop * c, cells[1].start * c: cells[1].stop * c]
            corners = cv2.integral(under.view(np.uint8), sdepth=cv2.CV_32S)[::c, ::c]
            counts.reshape(rows, cols)[cells] = \
                corners[1:, 1:] - corners[:-1, 1:] - corners[1:, :-1] + corners[:-1, :-1]
        occupied = np.flatnonzero(counts)
        novelty[:] = 0.0
        shimmer[:] = 0.0
        self.judged[slot] = False
        self.bits[slot] = 0
        change = cv2.absdiff(lum, self.last_lum) if self.last_lum is not None else None
        if occupied.size:
            at = np.divmod(occupied, cols)
            shape = self._cells(mask, at)
            packed = np.packbits(shape, axis=1)  # the IoUs count bits, 64 pixels a word
            if packed.shape[1] % 8:
                packed = np.pad(packed, ((0, 0), (0, -packed.shape[1] % 8)))
            bits = packed.view(np.uint64)
            self.bits[slot, occupied] = bits
            if len(self.slots) >= self.min_past:
                past = np.fromiter(self.slots, np.intp, len(self.slots))
                frames = (past[:, None], occupied)  # (past frames, occupied cells)
                inter = np.bitwise_count(self.bits[frames] & bits).sum(axis=2, dtype=np.int64)
                union = self.counts[frames] + counts[occupied] - inter  # > 0: the cell is occupied now
                novelty[occupied] = 1.0 - (inter / union).max(axis=0)
                self.judged[slot, occupied] = True
                # inside the flame in both frames: rigid objects do not change there
                assert change is not None  # min_past >= 1 past frame, so a previous luma exists
                lit = shape & self._cells(self.masks[-1], at)
                diff = self._cells(change, at) * lit
                shimmer[occupied] = diff.sum(axis=1) / np.maximum(np.count_nonzero(lit, axis=1), 1) / 255.0
        self.last_change = cv2.sumElems(change)[0] / change.size / 255.0 if change is not None else 0.0
        self.last_lum = lum
        self.present[slot] = counts > 0
        self.present_frames += self.present[slot]
        self.judged_frames += self.judged[slot]
        self.times.append(ts)
        self.slots.append(slot)
        self.masks.append(mask)
        while len(self.times) > self.max_frames or ts - self.times[0] > self.window_s:
            self.times.popleft()
            old = self.slots.popleft()
            self.present_frames -= self.present[old]
            self.judged_frames -= self.judged[old]
            self._free.append(old)
        while len(self.masks) > len(self.times):
            self.masks.popleft()

    @property
    def span_s(self) -> float:
        return self.times[-1] - self.times[0] if self.times else 0.0

    def cell_scores(self, presence_min: float = 0.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per cell over the window: presence (0..1), mean novelty and mean shimmer when judged.
        Novelty and shimmer are only averaged when some cell reaches ``presence_min`` (else 0)."""
        n = self.grid[0] * self.grid[1]
        if len(self.times) <= self.min_past or n == 0:
            return np.zeros(n), np.zeros(n), np.zeros(n)
        presence = self.present_frames / len(self.times)
        if not (presence >= presence_min).any():
            return presence, np.zeros(n), np.zeros(n)
        slots = np.fromiter(self.slots, np.intp, len(self.slots))  # oldest first
        hits = np.maximum(self.judged_frames, 1)
        mean_novelty = self.novelty[slots].sum(axis=0) / hits  # 0 where not judged
        mean_shimmer = self.shimmer[slots].sum(axis=0) / hits
        return presence, mean_novelty, mean_shimmer

    def rigidity(self, box: tuple[int, int, int, int], pairs: int = RIGIDITY_PAIRS) -> tuple[float, float]:
        """Mean IoU of consecutive candidate shapes inside ``box`` (x, y, w, h pixels) after
        aligning their centroids, and without aligning. A moving rigid object matches well only
        once aligned; a steady or flickering fire gains nothing from the alignment."""
        x, y, w, h = box
        crops = [m[y:y + h, x:x + w].view(np.uint8) for m in list(self.masks)[-(pairs + 1):]]
        moments = [cv2.moments(m, binaryImage=True) for m in crops]
        aligned, raw = [], []
        for a, b, ma, mb in zip(crops, crops[1:], moments, moments[1:]):
            if ma["m00"] and mb["m00"]:
                union = ma["m00"] + mb["m00"]
                inter = cv2.countNonZero(a & b)
                raw.append(inter / (union - inter))
                aligned.append(_aligned_iou(a, b, ma, mb, inter))
        if not raw:
            return 0.0, 0.0
        return _mean(aligned), _mean(raw)


def _mean(values: list[float]) -> float:
    """The mean of a few floats, summed in order (as numpy sums fewer than 8 values)."""
    total = 0.0
    for v in values:
        total += v
    return total / len(values)


def _aligned_iou(a: np.ndarray, b: np.ndarray, ma: dict, mb: dict, inter: int) -> float:
    """IoU of two 0/1 masks after shifting ``a`` so the centroids coincide (rigid motion removed);
    ``ma``, ``mb`` are their image moments, ``inter`` their overlap unshifted."""
    dy = int(round(mb["m01"] / mb["m00"] - ma["m01"] / ma["m00"]))
    dx = int(round(mb["m10"] / mb["m00"] - ma["m10"] / ma["m00"]))
    h, w = a.shape
    if dy or dx:
        inter = 0
        if abs(dy) < h and abs(dx) < w:  # a's pixel (y, x) lands on b's (y + dy, x + dx)
            moved = a[max(-dy, 0): h - max(dy, 0), max(-dx, 0): w - max(dx, 0)]
            under = b[max(dy, 0): h - max(-dy, 0), max(dx, 0): w - max(-dx, 0)]
            inter = cv2.countNonZero(moved & under)
    union = int(ma["m00"]) + int(mb["m00"]) - inter
    return inter / union if union else 1.0


GLOW_RING = 5  # px around a flame blob its glow is compared with
_RING = np.ones((2 * GLOW_RING + 1, 2 * GLOW_RING + 1), np.uint8)


def flame_blobs(mask: np.ndarray, margin: int) -> tuple[np.ndarray, tuple[int, int], np.ndarray]:
    """8-connected blobs of a mask, labelled (uint16) only in the candidates' box grown by
    ``margin``: the labels, their (top, left) in the mask and the blobs' stats in mask coordinates.
    The box starts at even coordinates: OpenCV scans 2x2 blocks, so the labels come in the same
    order as over the whole mask."""
    x, y, w, h = cv2.boundingRect(mask.view(np.uint8))
    if not w:
        return np.zeros((0, 0), np.uint16), (0, 0), np.zeros((1, 5), np.int32)
    top, left = max(y - margin, 0), max(x - margin, 0)
    top, left = top - top % 2, left - left % 2
    # 16-bit labels suffice at working size (fewer than 65536 blobs) and are faster
    _, labels, stats, _ = cv2.connectedComponentsWithStats(
        mask[top: y + h + margin, left: x + w + margin].view(np.uint8), connectivity=8,
        ltype=cv2.CV_16U)
    stats[:, cv2.CC_STAT_LEFT] += left
    stats[:, cv2.CC_STAT_TOP] += top
    return labels, (top, left), stats


def glows(luma: np.ndarray, blob_labels: np.ndarray, origin: tuple[int, int], blob_stats: np.ndarray,
          touched: np.ndarray, glow_min: float) -> bool:
    """Flames emit light: the pixels of the blobs ``touched`` are at least ``glow_min`` grey levels
    brighter than their surroundings (a ring of ``GLOW_RING`` px). Measured inside the blobs' box
    plus the ring; ``blob_labels`` (from :func:`flame_blobs`) start at ``origin`` (top, left)."""
    if not touched.size:
        return True
    left, top = blob_stats[touched, cv2.CC_STAT_LEFT], blob_stats[touched, cv2.CC_STAT_TOP]
    right = left + blob_stats[touched, cv2.CC_STAT_WIDTH]
    bottom = top + blob_stats[touched, cv2.CC_STAT_HEIGHT]
    y0, y1 = max(int(top.min()) - GLOW_RING, 0), int(bottom.max()) + GLOW_RING
    x0, x1 = max(int(left.min()) - GLOW_RING, 0), int(right.max()) + GLOW_RING
    lut = np.zeros(len(blob_stats), np.uint8)
    lut[touched] = 1
    flame = lut[blob_labels[y0 - origin[0]: y1 - origin[0], x0 - origin[1]: x1 - origin[1]]]
    ring = cv2.dilate(flame, _RING) - flame  # 0/1: the flame lies inside its dilation
    ring_px = cv2.countNonZero(ring)
    if not ring_px:
        return True
    lum = luma[y0:y1, x0:x1]
    flame_mean = cv2.sumElems(lum * flame)[0] / int(blob_stats[touched, cv2.CC_STAT_AREA].sum())
    return flame_mean >= cv2.sumElems(lum * ring)[0] / ring_px + glow_min
