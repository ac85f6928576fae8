"""Local appearance of flame-coloured patches, the input of the learned fire verifier.

The frame (at the detectors' 320 px working width) is cut into :data:`PATCH` px squares. A patch
is a *candidate* when at least :data:`CANDIDATE_SHARE` of its pixels pass the loose flame colour
rule; each candidate gets a row of :data:`FEATURES`: means of saturation, value, texture
(|Laplacian|, |d/dx|, |d/dy|) and of colour-class masks (flame, white core, yellow, red, mud, grey,
blue, specular, hue), spreads of saturation/value/hue, the patch against the frame's mean
brightness, saturation and texture, and the patch's height in the picture.

Only local evidence enters a row, on purpose: scene-level descriptors learned on a hundred clips
memorise the scenes (leave-one-source-out AUC 0.72 with frame context against 0.85 without).
"""

from __future__ import annotations

import cv2
import numpy as np

from detectors.imaging import block_means

PATCH = 24  # px at the 320 px working width
CANDIDATE_SHARE = 0.1  # share of a patch's pixels that must be flame-coloured to be scored
_MASKS = ("flame", "core", "yellow", "red", "mud", "grey", "blue", "specular")
FEATURES: tuple[str, ...] = (
    ("sat", "val", "laplacian", "grad_x", "grad_y") + _MASKS + ("hue",)
    + ("sat_std", "val_std", "hue_std", "val_vs_frame", "sat_vs_frame", "texture_vs_frame", "height")
)
FLAME = FEATURES.index("flame")


def _block_means(image: np.ndarray, ny: int, nx: int) -> np.ndarray:
    """Mean of each PATCH x PATCH block (exact: area resize by an integer factor)."""
    crop = np.ascontiguousarray(image[: ny * PATCH, : nx * PATCH], np.float32)
    return block_means(crop, nx, ny)


def _flame(b: np.ndarray, g: np.ndarray, r: np.ndarray, sat: np.ndarray) -> np.ndarray:
    # Thresholds on 0..255 integers, equal to the 0..1 rules of the docstring (s >= 0.3: sat >= 77).
    return (r >= 150) & (r >= g) & (g > b) & (sat >= 77)


def _rows(frame: np.ndarray, hsv: np.ndarray, lap: np.ndarray, means: tuple[float, float, float],
          box: tuple[int, int, int, int]) -> np.ndarray:
    """Rows of the patches in ``box`` = (first patch row, rows, first patch column, columns)."""
    py, ny, px, nx = box
    y0, y1, x0, x1 = py * PATCH, (py + ny) * PATCH, px * PATCH, (px + nx) * PATCH
    h, w = frame.shape[:2]
    gy0, gx0 = max(y0 - 1, 0), max(x0 - 1, 0)  # one real pixel around the box for the Sobel kernels
    grey = cv2.cvtColor(frame[gy0: min(y1 + 1, h), gx0: min(x1 + 1, w)], cv2.COLOR_BGR2GRAY)
    inner = (slice(y0 - gy0, y0 - gy0 + y1 - y0), slice(x0 - gx0, x0 - gx0 + x1 - x0))
    gx = np.abs(cv2.Sobel(grey, cv2.CV_32F, 1, 0, ksize=3))[inner] / 255.0
    gy = np.abs(cv2.Sobel(grey, cv2.CV_32F, 0, 1, ksize=3))[inner] / 255.0
    part = hsv[y0:y1, x0:x1]
    hue, sat8, val8 = part[..., 0], part[..., 1], part[..., 2]
    sat, val = sat8.astype(np.float32) / 255.0, val8.astype(np.float32) / 255.0
    b, g, r = (frame[y0:y1, x0:x1, i] for i in range(3))
    masks = (  # on 0..255 integers, equal to the 0..1 rules (e.g. v >= 0.94: val >= 240)
        _flame(b, g, r, sat8),                                                   # flame
        (val8 >= 240) & (sat8 <= 89),                                            # white core
        (hue >= 18) & (hue <= 35) & (sat8 >= 102) & (val8 >= 179),               # yellow
        ((hue <= 15) | (hue >= 170)) & (sat8 >= 128) & (val8 >= 102),            # red
        (hue >= 5) & (hue <= 30) & (sat8 >= 31) & (sat8 <= 165) & (val8 >= 51) & (val8 <= 216),  # mud
        (sat8 <= 30) & (val8 >= 39) & (val8 <= 229),                             # grey
        (hue >= 90) & (hue <= 130) & (sat8 >= 51),                               # blue
        val8 >= 230,                                                             # specular
    )
    hue01 = hue.astype(np.float32) / 180.0
    maps = [sat, val, lap[y0:y1, x0:x1], gx, gy] + [m.view(np.uint8) for m in masks] + [hue01]
    block = [_block_means(m, ny, nx) for m in maps]
    stds = [np.sqrt(np.maximum(_block_means(m * m, ny, nx) - block[i] ** 2, 0.0))
            for i, m in ((0, sat), (1, val), (len(maps) - 1, hue01))]
    height = np.repeat(((np.arange(py, py + ny, dtype=np.float32) + 0.5) / (h // PATCH))[:, None], nx, axis=1)
    rel = [block[1] - means[0], block[0] - means[1], block[2] - means[2]]
    return np.stack(block + stds + rel + [height], axis=-1).reshape(-1, len(FEATURES))


def _frame_maps(frame: np.ndarray) -> tuple[np.ndarray, np.ndarray, tuple[float, float, float]]:
    hsv = cv2.cvtColor(frame, cv2.COLOR_BGR2HSV)
    lap = np.abs(cv2.Laplacian(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY), cv2.CV_32F, ksize=3)) / 255.0
    means = (cv2.mean(hsv[..., 2])[0] / 255.0, cv2.mean(hsv[..., 1])[0] / 255.0, float(lap.mean()))
    return hsv, lap, means


def patch_rows(frame: np.ndarray) -> np.ndarray:
    """One row of :data:`FEATURES` per patch of a BGR uint8 frame, row-major; (0, n) if too small."""
    ny, nx = frame.shape[0] // PATCH, frame.shape[1] // PATCH
    if ny == 0 or nx == 0:
        return np.zeros((0, len(FEATURES)), np.float32)
    hsv, lap, means = _frame_maps(frame)
    return _rows(frame, hsv, lap, means, (0, ny, 0, nx))


def candidate_rows(frame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(indices, rows)`` of the candidate patches only (row-major indices into the frame's
    patches): the same rows as ``patch_rows(frame)[candidates(...)]``, computed only inside the
    box that holds the candidates."""
    ny, nx = frame.shape[0] // PATCH, frame.shape[1] // PATCH
    empty = (np.zeros(0, np.int64), np.zeros((0, len(FEATURES)), np.float32))
    if ny == 0 or nx == 0:
        return empty
    hsv, lap, means = _frame_maps(frame)
    b, g, r = (frame[..., i] for i in range(3))
    share = _block_means(_flame(b, g, r, hsv[..., 1]).view(np.uint8), ny, nx)
    ys, xs = np.nonzero(share >= CANDIDATE_SHARE)
    if ys.size == 0:
        return empty
    box = (int(ys.min()), int(ys.max() - ys.min() + 1), int(xs.min()), int(xs.max() - xs.min() + 1))
    rows = _rows(frame, hsv, lap, means, box)
    keep = np.flatnonzero(candidates(rows))
    local_y, local_x = np.divmod(keep, box[3])
    return (local_y + box[0]) * nx + local_x + box[2], rows[keep]


def candidates(rows: np.ndarray) -> np.ndarray:
    """Boolean mask of the rows worth scoring (enough flame-coloured pixels)."""
    return rows[:, FLAME] >= CANDIDATE_SHARE


def patch_box(index: int, frame_shape: tuple[int, ...]) -> tuple[float, float, float, float]:
    """Normalized (x, y, w, h) of patch ``index`` (row-major) in a frame of ``frame_shape``."""
    h, w = frame_shape[:2]
    nx = max(w // PATCH, 1)
    y, x = divmod(index, nx)
    return (x * PATCH / w, y * PATCH / h, PATCH / w, PATCH / h)
