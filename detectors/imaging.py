"""Shared image helpers of the detectors: shrinking a frame to the working size, resizing and
cleaning masks. One place, so every detector shrinks and cleans the same documented way.

Each shrink method is kept exactly as the detector that uses it was tuned (and, for fire, as the
shipped verifier model was trained): the methods differ in interpolation and rounding, so their
outputs differ by a grey level here and there, and they are not interchangeable.
"""

from __future__ import annotations

from typing import Literal

import cv2
import numpy as np

ShrinkMethod = Literal["halving", "halving_uncropped", "nearest_then_area", "linear"]


def _halve(frame: np.ndarray, width: int, height: int, crop_to_even: bool) -> np.ndarray:
    """Halve exactly (a bilinear resize by 1/2 is a 2x2 mean) while the frame is at least twice
    (width, height); with ``crop_to_even`` an odd last row/column is dropped first, else the
    bilinear resize spreads the odd pixel over the row/column."""
    while frame.shape[1] >= 2 * width and frame.shape[0] >= 2 * height:
        half = (frame.shape[1] // 2, frame.shape[0] // 2)
        if crop_to_even:
            frame = frame[: half[1] * 2, : half[0] * 2]
        frame = cv2.resize(frame, half, interpolation=cv2.INTER_LINEAR)
    return frame


def shrink(frame: np.ndarray, width: int, height: int, method: ShrinkMethod) -> np.ndarray:
    """``frame`` resized to (width, height); the frame itself when it has that size already.

    - ``halving`` (flood): exact 2x halvings of the even-cropped frame, then INTER_AREA.
    - ``halving_uncropped`` (fire): 2x halvings without cropping, then INTER_AREA.
    - ``nearest_then_area`` (congestion): nearest to twice the size when the frame is at least
      4x wider (cheap), then INTER_AREA (no aliasing).
    - ``linear`` (obstruction): one bilinear resize.
    """
    if frame.shape[:2] == (height, width):
        return frame
    if method in ("halving", "halving_uncropped"):
        frame = _halve(frame, width, height, crop_to_even=method == "halving")
        if frame.shape[:2] == (height, width):
            return frame
        return cv2.resize(frame, (width, height), interpolation=cv2.INTER_AREA)
    if method == "nearest_then_area":
        if frame.shape[1] >= 4 * width:
            frame = cv2.resize(frame, (2 * width, 2 * height), interpolation=cv2.INTER_NEAREST)
        return cv2.resize(frame, (width, height), interpolation=cv2.INTER_AREA)
    if method == "linear":
        return cv2.resize(frame, (width, height), interpolation=cv2.INTER_LINEAR)
    raise ValueError(f"unknown shrink method {method!r}")


def block_means(image: np.ndarray, cols: int, rows: int) -> np.ndarray:
    """Mean of each block when ``image`` is an exact multiple of (cols, rows) blocks (OpenCV's
    area resize by an integer factor is the exact box average)."""
    return cv2.resize(image, (cols, rows), interpolation=cv2.INTER_AREA)


def resize_mask(mask: np.ndarray, width: int, height: int) -> np.ndarray:
    """A bool or uint8 mask resized to (width, height) by nearest neighbour, same dtype back."""
    if mask.dtype == bool:
        return cv2.resize(mask.view(np.uint8), (width, height), interpolation=cv2.INTER_NEAREST).view(bool)
    return cv2.resize(mask, (width, height), interpolation=cv2.INTER_NEAREST)


def square_kernel(size: int) -> np.ndarray:
    """A size x size square structuring element (all ones, uint8)."""
    return np.ones((size, size), np.uint8)


def disc_kernel(size: int) -> np.ndarray:
    """A size x size elliptic (disc) structuring element."""
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))


def close_mask(mask: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Morphological closing (fills gaps narrower than the kernel); bool input is read as 0/1,
    the result is uint8."""
    m = mask.view(np.uint8) if mask.dtype == bool else mask
    return cv2.morphologyEx(m, cv2.MORPH_CLOSE, kernel)


def open_mask(mask: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Morphological opening (drops specks narrower than the kernel); bool input is read as 0/1,
    the result is uint8."""
    m = mask.view(np.uint8) if mask.dtype == bool else mask
    return cv2.morphologyEx(m, cv2.MORPH_OPEN, kernel)


def halve_mask(mask: np.ndarray) -> np.ndarray:
    """A 0/255 uint8 mask at half size (at least 1x1): area-averaged, then kept where at least
    half of the 2x2 block was set (average above 127)."""
    h, w = mask.shape
    half = cv2.resize(mask, (max(1, w // 2), max(1, h // 2)), interpolation=cv2.INTER_AREA)
    _, half = cv2.threshold(half, 127, 255, cv2.THRESH_BINARY)
    return half
