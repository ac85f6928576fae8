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
    return cv2.resize(crop, (nx, ny), interpolation=cv2.INTER_AREA)


def patch_rows(frame: np.ndarray) -> np.ndarray:
    """One row of :data:`FEATURES` per patch of a BGR uint8 frame, row-major; (0, n) if too small."""
    h, w = frame.shape[:2]
    ny, nx = h // PATCH, w // PATCH
    if ny == 0 or nx == 0:
        return np.zeros((0, len(FEATURES)), np.float32)
    hsv = cv2.cvtColor(frame, cv2.COLOR_BGR2HSV)
    hue = hsv[..., 0].astype(np.float32)
    sat = hsv[..., 1].astype(np.float32) / 255.0
    val = hsv[..., 2].astype(np.float32) / 255.0
    grey = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
    lap = np.abs(cv2.Laplacian(grey, cv2.CV_32F, ksize=3)) / 255.0
    gx = np.abs(cv2.Sobel(grey, cv2.CV_32F, 1, 0, ksize=3)) / 255.0
    gy = np.abs(cv2.Sobel(grey, cv2.CV_32F, 0, 1, ksize=3)) / 255.0
    b, g, r = (frame[..., i].astype(np.int16) for i in range(3))
    masks = (
        (r >= 150) & (r >= g) & (g > b) & (sat >= 0.3),                          # flame
        (val >= 0.94) & (sat <= 0.35),                                            # white core
        (hue >= 18) & (hue <= 35) & (sat >= 0.4) & (val >= 0.7),                  # yellow
        ((hue <= 15) | (hue >= 170)) & (sat >= 0.5) & (val >= 0.4),               # red
        (hue >= 5) & (hue <= 30) & (sat >= 0.12) & (sat <= 0.65) & (val >= 0.2) & (val <= 0.85),  # mud
        (sat < 0.12) & (val >= 0.15) & (val <= 0.9),                              # grey
        (hue >= 90) & (hue <= 130) & (sat >= 0.2),                                # blue
        val >= 0.9,                                                               # specular
    )
    hue01 = hue / 180.0
    maps = [sat, val, lap, gx, gy] + [m.astype(np.float32) for m in masks] + [hue01]
    means = [_block_means(m, ny, nx) for m in maps]
    stds = [np.sqrt(np.maximum(_block_means(m * m, ny, nx) - means[i] ** 2, 0.0))
            for i, m in ((0, sat), (1, val), (len(maps) - 1, hue01))]
    height = np.repeat(((np.arange(ny, dtype=np.float32) + 0.5) / ny)[:, None], nx, axis=1)
    rel = [means[1] - float(val.mean()), means[0] - float(sat.mean()), means[2] - float(lap.mean())]
    return np.stack(means + stds + rel + [height], axis=-1).reshape(-1, len(FEATURES))


def candidates(rows: np.ndarray) -> np.ndarray:
    """Boolean mask of the rows worth scoring (enough flame-coloured pixels)."""
    return rows[:, FLAME] >= CANDIDATE_SHARE


def patch_box(index: int, frame_shape: tuple[int, ...]) -> tuple[float, float, float, float]:
    """Normalized (x, y, w, h) of patch ``index`` (row-major) in a frame of ``frame_shape``."""
    h, w = frame_shape[:2]
    nx = max(w // PATCH, 1)
    y, x = divmod(index, nx)
    return (x * PATCH / w, y * PATCH / h, PATCH / w, PATCH / h)
