"""Rendering primitives for the synthetic scenes: a pinhole camera over a ground plane, textured
planes drawn with mip-mapping (no aliasing at distance), procedural textures, and the camera
"finish" (optics blur, vignetting, sensor noise, JPEG).

World coordinates are metres: X to the right, Y forward (away from the camera), Z up.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

WIDTH, HEIGHT = 640, 360
HAZE = (205, 200, 195)  # BGR of distant air


@dataclass(frozen=True)
class Camera:
    """A level pinhole camera ``height`` metres above the ground; ``horizon`` is the image row of
    the horizon and ``focal`` the focal length in pixels."""

    focal: float = 520.0
    horizon: float = 120.0
    height: float = 6.5
    cx: float = WIDTH / 2

    def project(self, pts: np.ndarray) -> np.ndarray:
        """(N, 3) world points (Y > 0) -> (N, 2) pixel coordinates."""
        pts = np.asarray(pts, np.float64)
        y = np.maximum(pts[:, 1], 0.05)
        u = self.cx + self.focal * pts[:, 0] / y
        v = self.horizon + self.focal * (self.height - pts[:, 2]) / y
        return np.stack([u, v], axis=1)

    def ground_maps(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-pixel ground X and Y (metres); NaN above the horizon."""
        v, u = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float32)
        dv = v - self.horizon
        with np.errstate(divide="ignore", invalid="ignore"):
            y = np.where(dv > 0.5, self.focal * self.height / dv, np.nan).astype(np.float32)
        x = (u - self.cx) * y / self.focal
        return x, y


def value_noise(rng: np.random.Generator, shape: tuple[int, int], cell: float) -> np.ndarray:
    """Smooth noise in about -1..1 whose features are ``cell`` pixels across."""
    gh, gw = max(2, int(shape[0] / cell) + 2), max(2, int(shape[1] / cell) + 2)
    grid = rng.standard_normal((gh, gw)).astype(np.float32)
    big = cv2.resize(grid, (shape[1], shape[0]), interpolation=cv2.INTER_CUBIC)
    return np.clip(big / 1.5, -1.5, 1.5)


def fractal_noise(rng: np.random.Generator, shape: tuple[int, int], cell: float, octaves: int = 4) -> np.ndarray:
    """Sum of ``octaves`` value-noise layers, each half the size and amplitude of the previous."""
    out = np.zeros(shape, np.float32)
    amp, total = 1.0, 0.0
    for _ in range(octaves):
        out += amp * value_noise(rng, shape, max(cell, 1.5))
        total += amp
        amp, cell = amp * 0.5, cell / 2
    return out / total


def shade(base_bgr: tuple[float, float, float], field: np.ndarray, amount: float) -> np.ndarray:
    """A float32 BGR texture: a base colour modulated by ``field`` (-1..1) times ``amount`` levels."""
    tex = np.empty(field.shape + (3,), np.float32)
    for c in range(3):
        tex[..., c] = base_bgr[c] + amount * field
    return tex


class Plane:
    """A textured rectangle in the world, drawn through a mip-map pyramid so that distant parts
    are filtered instead of aliased."""

    def __init__(self, texture: np.ndarray, corners: np.ndarray, levels: int = 6) -> None:
        # corners: world points of texture (0,0), (w,0), (w,h), (0,h)
        self.corners = np.asarray(corners, np.float64)
        self.pyramid = [np.ascontiguousarray(texture, np.float32)]
        for _ in range(levels - 1):
            if min(self.pyramid[-1].shape[:2]) < 8:
                break
            self.pyramid.append(cv2.pyrDown(self.pyramid[-1]))

    def draw(self, canvas: np.ndarray, camera: Camera, mirror: bool = False) -> np.ndarray:
        """Paint the plane onto ``canvas`` (float32 BGR) in place; returns its coverage mask.
        ``mirror`` draws its reflection in the ground plane (Z negated)."""
        corners = self.corners * (1, 1, -1) if mirror else self.corners
        img_pts = camera.project(corners).astype(np.float32)
        h, w = self.pyramid[0].shape[:2]
        tex_pts = np.float32([[0, 0], [w - 1, 0], [w - 1, h - 1], [0, h - 1]])
        to_tex = cv2.getPerspectiveTransform(img_pts, tex_pts)
        mask = np.zeros(canvas.shape[:2], np.uint8)
        cv2.fillConvexPoly(mask, np.round(img_pts * 16).astype(np.int32), 255, cv2.LINE_AA, shift=4)
        ys, xs = np.nonzero(mask)
        if len(xs) == 0:
            return mask
        grid = np.stack([xs, ys], axis=1).astype(np.float32)[None]
        m0 = cv2.perspectiveTransform(grid, to_tex)[0]
        mx = cv2.perspectiveTransform(grid + np.float32([1, 0]), to_tex)[0] - m0
        my = cv2.perspectiveTransform(grid + np.float32([0, 1]), to_tex)[0] - m0
        footprint = np.maximum(np.hypot(*mx.T), np.hypot(*my.T))
        level = np.clip(np.log2(np.maximum(footprint, 1.0)), 0, len(self.pyramid) - 1)
        lo = np.floor(level).astype(int)
        frac = (level - lo)[:, None]
        colour = np.zeros((len(xs), 3), np.float32)
        for k, tex in enumerate(self.pyramid):
            near = (lo == k) | ((lo + 1 == k) & (frac[:, 0] > 0))
            if not near.any():
                continue
            scale = 0.5 ** k
            coords = (m0[near] + 0.5) * scale - 0.5
            sampled = _sample(tex, coords)
            weight = np.where(lo[near] == k, 1.0 - frac[near, 0], frac[near, 0])[:, None]
            colour[near] += weight * sampled
        h_tex, w_tex = self.pyramid[0].shape[:2]
        c0, c1, c3 = self.corners[0], self.corners[1], self.corners[3]
        depth = c0[1] + m0[:, 0] / w_tex * (c1[1] - c0[1]) + m0[:, 1] / h_tex * (c3[1] - c0[1])
        fog = np.clip((depth - 40.0) / 500.0, 0, 0.4)[:, None].astype(np.float32)
        colour = colour * (1 - fog) + np.float32(HAZE) * fog
        alpha = (mask[ys, xs].astype(np.float32) / 255.0)[:, None]
        canvas[ys, xs] = canvas[ys, xs] * (1 - alpha) + colour * alpha
        return mask


def _sample(tex: np.ndarray, coords: np.ndarray) -> np.ndarray:
    """Bilinear samples of ``tex`` at (N, 2) texel coordinates (remap wants a 2-D map < 32k wide)."""
    n, row = len(coords), 1024
    padded = np.zeros((-(-n // row) * row, 2), np.float32)
    padded[:n] = coords
    maps = padded.reshape(-1, row, 2)
    out = cv2.remap(tex, maps[..., 0], maps[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    return out.reshape(-1, 3)[:n]


def sky(rng: np.random.Generator, camera: Camera, overcast: float = 0.5) -> np.ndarray:
    """A float32 BGR sky: a vertical gradient with soft clouds (fills the whole canvas)."""
    v = np.linspace(0, 1, HEIGHT, dtype=np.float32)[:, None]
    top = np.array([200, 160, 120], np.float32) * (1 - overcast) + np.array([190, 185, 180], np.float32) * overcast
    low = np.array([230, 220, 210], np.float32)
    t = np.clip(v * HEIGHT / max(camera.horizon, 1.0), 0, 1)[..., None]
    canvas = top * (1 - t) + low * t
    clouds = fractal_noise(rng, (HEIGHT, WIDTH), 120, 4)[..., None]
    canvas = canvas + 22 * np.clip(clouds, 0, None) * np.array([1.0, 1.0, 1.0], np.float32)
    return np.broadcast_to(canvas, (HEIGHT, WIDTH, 3)).astype(np.float32).copy()


def finish(rng: np.random.Generator, canvas: np.ndarray, gain: float = 1.0, noise: float = 1.5,
           quality: int = 80) -> bytes:
    """Optics blur, vignetting, exposure ``gain``, sensor noise and JPEG encoding of one frame."""
    img = cv2.GaussianBlur(canvas, (0, 0), 0.6)
    v, u = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float32)
    r2 = ((u - WIDTH / 2) / WIDTH) ** 2 + ((v - HEIGHT / 2) / HEIGHT) ** 2
    img = img * (gain * (1 - 0.35 * r2))[..., None]
    luma_noise = rng.normal(0, noise, (HEIGHT, WIDTH, 1)).astype(np.float32)
    chroma_noise = rng.normal(0, noise * 0.3, (HEIGHT, WIDTH, 3)).astype(np.float32)
    img = np.clip(img + luma_noise + chroma_noise, 0, 255).astype(np.uint8)
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return buf.tobytes()
