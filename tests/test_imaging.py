"""detectors.imaging: the shared shrink and mask helpers give exactly what each detector's own
copy gave before (the references below are those copies, verbatim), on odd and even sizes."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from detectors.base import working_size
from detectors.imaging import (
    block_means,
    close_mask,
    disc_kernel,
    halve_mask,
    open_mask,
    resize_mask,
    shrink,
    square_kernel,
)


def _flood_shrink(frame, width, height):
    while frame.shape[1] >= 2 * width and frame.shape[0] >= 2 * height:
        half = (frame.shape[1] // 2, frame.shape[0] // 2)
        frame = cv2.resize(frame[: half[1] * 2, : half[0] * 2], half, interpolation=cv2.INTER_LINEAR)
    if frame.shape[:2] == (height, width):
        return frame
    return cv2.resize(frame, (width, height), interpolation=cv2.INTER_AREA)


def _fire_shrink(frame, w, h):
    while frame.shape[1] >= 2 * w and frame.shape[0] >= 2 * h:
        frame = cv2.resize(frame, (frame.shape[1] // 2, frame.shape[0] // 2), interpolation=cv2.INTER_LINEAR)
    if frame.shape[:2] != (h, w):
        frame = cv2.resize(frame, (w, h), interpolation=cv2.INTER_AREA)
    return frame


def _congestion_shrink(frame, width, height):
    if frame.shape[1] == width and frame.shape[0] == height:
        return frame
    if frame.shape[1] >= 4 * width:
        frame = cv2.resize(frame, (2 * width, 2 * height), interpolation=cv2.INTER_NEAREST)
    return cv2.resize(frame, (width, height), interpolation=cv2.INTER_AREA)


def _obstruction_shrink(frame, w, h):
    return frame if frame.shape[:2] == (h, w) else cv2.resize(frame, (w, h), interpolation=cv2.INTER_LINEAR)


REFERENCES = {"halving": _flood_shrink, "halving_uncropped": _fire_shrink,
              "nearest_then_area": _congestion_shrink, "linear": _obstruction_shrink}
SIZES = [(240, 320), (480, 640), (481, 641), (1080, 1920), (1081, 1927), (700, 1283), (200, 300)]


@pytest.mark.parametrize("method", sorted(REFERENCES))
@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[1]}x{s[0]}")
def test_shrink_matches_the_detector_copy_it_replaced(method, size):
    rng = np.random.default_rng(size[0] * size[1])
    frame = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
    h, w = working_size(*size)
    got = shrink(frame, w, h, method)
    want = REFERENCES[method](frame, w, h)
    assert got.shape == (h, w, 3) and got.dtype == np.uint8
    assert np.array_equal(got, want)


def test_shrink_returns_a_frame_of_the_working_size_itself():
    frame = np.zeros((240, 320, 3), np.uint8)
    for method in REFERENCES:
        assert shrink(frame, 320, 240, method) is frame


def test_the_methods_really_differ_on_an_odd_frame():
    """Why the four methods are kept apart: on an odd-sized frame they do not agree."""
    rng = np.random.default_rng(7)
    frame = rng.integers(0, 256, (1081, 1927, 3), dtype=np.uint8)
    h, w = working_size(1081, 1927)
    outs = [shrink(frame, w, h, m) for m in sorted(REFERENCES)]
    assert all(not np.array_equal(a, b) for i, a in enumerate(outs) for b in outs[i + 1:])


def test_unknown_shrink_method_is_refused():
    with pytest.raises(ValueError, match="unknown shrink method"):
        shrink(np.zeros((480, 640, 3), np.uint8), 320, 240, "bicubic")  # type: ignore[arg-type]


def test_block_means_is_the_exact_block_average():
    rng = np.random.default_rng(3)
    image = rng.random((12, 20), dtype=np.float32)
    got = block_means(image, 5, 3)
    want = image.reshape(3, 4, 5, 4).mean(axis=(1, 3))
    assert got.shape == (3, 5)
    np.testing.assert_allclose(got, want, rtol=1e-6)


def test_resize_mask_keeps_bool_and_uint8_and_uses_nearest():
    mask = np.zeros((4, 6), bool)
    mask[1, 2] = True
    up = resize_mask(mask, 12, 8)
    assert up.dtype == bool and up.shape == (8, 12)
    assert np.array_equal(up, np.repeat(np.repeat(mask, 2, axis=0), 2, axis=1))
    u8 = resize_mask(mask.astype(np.uint8) * 255, 3, 2)
    assert u8.dtype == np.uint8 and set(np.unique(u8)) <= {0, 255}


def test_halve_mask_keeps_blocks_at_least_half_set():
    mask = np.zeros((4, 4), np.uint8)
    mask[0:2, 0:2] = 255  # a full block
    mask[0, 2] = 255  # a quarter of a block: averages 64, dropped
    mask[2, 2:4] = 255  # half a block: averages 128, kept
    assert halve_mask(mask).tolist() == [[255, 0], [0, 255]]
    assert halve_mask(np.full((1, 1), 255, np.uint8)).shape == (1, 1)


def test_close_and_open_mask_accept_bool_and_match_opencv():
    rng = np.random.default_rng(5)
    mask = rng.random((40, 50)) > 0.7
    u8 = mask.astype(np.uint8)
    k = disc_kernel(3)
    assert np.array_equal(close_mask(mask, k), cv2.morphologyEx(u8, cv2.MORPH_CLOSE, k))
    assert np.array_equal(open_mask(mask, square_kernel(2)),
                          cv2.morphologyEx(u8, cv2.MORPH_OPEN, np.ones((2, 2), np.uint8)))
    assert np.array_equal(square_kernel(3), np.ones((3, 3), np.uint8))
    assert np.array_equal(disc_kernel(5), cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5)))
