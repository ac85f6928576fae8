"""Time-varying phenomena drawn over a street: flickering flames, rising smoke, rising flood water."""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from sample_media.render import HEIGHT, WIDTH, Camera, Plane, value_noise

_FLAME_STOPS = np.float32([[20, 30, 170], [10, 110, 250], [60, 200, 255], [200, 245, 255]])  # BGR red->white


@dataclass
class Fire:
    """A fire at a ground point: irregular flickering tongues whose size grows from ``ignite_s`` to
    ``full_s``, lighting the wall around it."""

    rng: np.random.Generator
    base_uv: tuple[float, float]
    px_per_m: float
    ignite_s: float
    full_s: float
    width_m: tuple[float, float] = (0.5, 3.0)
    height_m: tuple[float, float] = (0.8, 4.5)

    def growth(self, t: float) -> float:
        """0 before ignition, rising to 1 when fully developed."""
        if t < self.ignite_s:
            return 0.0
        return float(np.clip((t - self.ignite_s) / (self.full_s - self.ignite_s), 0.05, 1.0))

    def mask(self, t: float) -> np.ndarray:
        g = self.growth(t)
        alpha = np.zeros((HEIGHT, WIDTH), np.uint8)
        if g <= 0:
            return alpha.astype(np.float32)
        width = self.px_per_m * (self.width_m[0] + g * (self.width_m[1] - self.width_m[0]))
        height = self.px_per_m * (self.height_m[0] + g * (self.height_m[1] - self.height_m[0]))
        u0, v0 = self.base_uv
        for _ in range(int(4 + 5 * g)):
            bx = u0 + self.rng.uniform(-0.5, 0.5) * width
            h = height * self.rng.uniform(0.35, 1.1)
            w = width * self.rng.uniform(0.25, 0.5)
            sway, phase = self.rng.uniform(-0.35, 0.35) * h, self.rng.uniform(0, 2 * np.pi)
            k = np.linspace(0, 1, 14)
            half = 0.5 * w * (1 - k) ** 0.6 * (1 + 0.35 * self.rng.standard_normal(14))
            cx = bx + sway * k ** 1.5 * np.sin(phase + 3 * k) + self.rng.normal(0, 0.06 * w, 14) * k
            vy = v0 - h * k + self.rng.normal(0, 0.02 * h, 14)
            pts = np.concatenate([np.stack([cx - half, vy], 1), np.stack([cx + half, vy], 1)[::-1]])
            cv2.fillPoly(alpha, [np.round(pts * 4).astype(np.int32)], 255, cv2.LINE_AA, shift=2)
        for _ in range(self.rng.poisson(2 * g)):  # detached flamelets above the tips
            c = (u0 + self.rng.uniform(-0.4, 0.4) * width, v0 - height * self.rng.uniform(0.8, 1.3))
            axes = (max(1, int(width * 0.05)), max(2, int(height * 0.08)))
            cv2.ellipse(alpha, (int(c[0]), int(c[1])), axes, 0, 0, 360, 255, -1, cv2.LINE_AA)
        return cv2.GaussianBlur(alpha.astype(np.float32) / 255.0, (0, 0), 0.8)

    def draw(self, canvas: np.ndarray, t: float) -> None:
        alpha = self.mask(t)
        if not alpha.any():
            return
        glow = cv2.GaussianBlur(alpha, (0, 0), 12 + 25 * self.growth(t)) * self.rng.uniform(0.8, 1.2)
        canvas += (glow * 1.6)[..., None] * np.float32([15, 60, 120])
        core = cv2.distanceTransform((alpha > 0.5).astype(np.uint8), cv2.DIST_L2, 3)
        heat = np.clip(core / max(float(core.max()), 1.0) * 1.3, 0, 1)
        idx = heat * (len(_FLAME_STOPS) - 1)
        lo = np.minimum(idx.astype(int), len(_FLAME_STOPS) - 2)
        frac = (idx - lo)[..., None]
        colour = _FLAME_STOPS[lo] * (1 - frac) + _FLAME_STOPS[lo + 1] * frac
        canvas[:] = canvas * (1 - alpha[..., None]) + colour * alpha[..., None]


@dataclass
class Smoke:
    """Grey puffs emitted at a source, rising, spreading and fading; they veil and blur what is
    behind them."""

    rng: np.random.Generator
    source_uv: tuple[float, float]
    px_per_m: float
    start_s: float
    puffs: list[list[float]] = field(default_factory=list)  # u, v, radius, density, age
    _t: float = 0.0

    def advance(self, t: float, strength: float) -> None:
        dt = 0.1
        while self._t < t:
            self._t += dt
            if self._t >= self.start_s and self.rng.random() < 6 * dt * strength:
                u0, v0 = self.source_uv
                self.puffs.append([u0 + self.rng.normal(0, 0.6 * self.px_per_m), v0, 0.9 * self.px_per_m,
                                   self.rng.uniform(0.35, 0.6), 0.0])
            for p in self.puffs:
                p[0] += dt * (0.6 * self.px_per_m + self.rng.normal(0, 0.8 * self.px_per_m))
                p[1] -= dt * self.px_per_m * (1.4 - 0.05 * p[4])
                p[2] += dt * 0.35 * self.px_per_m
                p[3] *= 0.99
                p[4] += dt
            self.puffs = [p for p in self.puffs if p[3] > 0.03 and p[1] + p[2] > 0]

    def draw(self, canvas: np.ndarray, t: float, strength: float) -> None:
        self.advance(t, strength)
        density = np.zeros((HEIGHT, WIDTH), np.float32)
        for u, v, r, d, _ in self.puffs:
            x0, x1 = int(max(0, u - 2 * r)), int(min(WIDTH, u + 2 * r + 1))
            y0, y1 = int(max(0, v - 2 * r)), int(min(HEIGHT, v + 2 * r + 1))
            if x0 >= x1 or y0 >= y1:
                continue
            yy, xx = np.mgrid[y0:y1, x0:x1]
            density[y0:y1, x0:x1] += d * np.exp(-((xx - u) ** 2 + (yy - v) ** 2) / (2 * (0.7 * r) ** 2))
        texture = 0.75 + 0.25 * value_noise(self.rng, (HEIGHT, WIDTH), 18)
        a = np.clip(density * texture, 0, 0.85)[..., None]
        blurred = cv2.GaussianBlur(canvas, (0, 0), 3.0)
        canvas[:] = canvas * (1 - a) + blurred * a  # loss of detail behind the smoke
        canvas[:] = canvas * (1 - 0.85 * a) + np.float32([105, 107, 110]) * (0.85 * a)


class FloodWater:
    """Muddy water filling the street from its low points as ``level`` (metres above the gutter)
    rises: ripples, mirrored facades and sky, and wet darkening at the water line."""

    def __init__(self, rng: np.random.Generator, camera: Camera, road_half: float, sidewalk: float,
                 reflect_planes: list[Plane], sky_canvas: np.ndarray) -> None:
        self.camera = camera
        self.x, self.y = camera.ground_maps()
        ground = ~np.isnan(self.y) & (np.abs(np.nan_to_num(self.x, nan=1e3)) <= road_half + sidewalk)
        self.ground = ground
        y = np.nan_to_num(self.y, nan=1e3)
        x = np.nan_to_num(self.x, nan=0.0)
        bumps = value_noise(rng, (64, 440), 6)  # 0.5 m cells over X -16..16, Y 0..220
        bx = cv2.remap(bumps, ((x + 16) * 2).astype(np.float32), (y * 2).astype(np.float32), cv2.INTER_LINEAR)
        crown = 0.11 * (1 - np.clip(np.abs(x) / road_half, 0, 1) ** 2)
        kerb = np.where(np.abs(x) > road_half, 0.15, 0.0)
        self.height = (crown + kerb + 0.025 * bx - 0.0004 * y).astype(np.float32)
        self.footprint = np.nan_to_num(y * y / (camera.focal * camera.height), nan=1e3).astype(np.float32)
        sediment = value_noise(rng, (64, 440), 3)
        self.sediment = cv2.remap(sediment, ((x + 16) * 2).astype(np.float32), (y * 2).astype(np.float32),
                                  cv2.INTER_LINEAR)
        refl = sky_canvas.copy()
        hz = int(camera.horizon)
        rows = np.clip(2 * hz - np.arange(HEIGHT), 0, HEIGHT - 1)
        refl[hz:] = sky_canvas[rows[hz:]]
        for plane in sorted(reflect_planes, key=lambda p: -p.corners[:, 1].min()):
            plane.draw(refl, camera, mirror=True)
        self.reflection = cv2.GaussianBlur(refl, (0, 0), 1.2)
        self.waves = [(rng.uniform(0, 2 * np.pi), rng.uniform(0.5, 1.4), rng.uniform(0.3, 0.8)) for _ in range(4)]

    def draw(self, canvas: np.ndarray, t: float, level: float) -> None:
        depth = level - self.height
        wet = self.ground & (depth > -0.03)
        if not wet.any():
            return
        x, y = np.nan_to_num(self.x), np.nan_to_num(self.y, nan=1e3)
        ripple = np.zeros_like(depth)
        for angle, wavelength, speed in self.waves:
            k = 2 * np.pi / wavelength
            phase = k * (x * np.cos(angle) + y * np.sin(angle)) - k * speed * t
            ripple += np.sin(phase) * np.exp(-(self.footprint / wavelength) ** 2)
        ripple /= len(self.waves)
        shift = (ripple * 60.0 / np.maximum(y, 1.0)).astype(np.float32)
        v, u = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float32)
        mirrored = cv2.remap(self.reflection, u + 0.5 * shift, v + shift, cv2.INTER_LINEAR,
                             borderMode=cv2.BORDER_REFLECT)
        fresnel = (0.2 + 0.45 * np.clip((y - 10) / 80, 0, 1))[..., None]
        mud = np.float32([78, 104, 128]) * (1 + 0.08 * self.sediment[..., None] + 0.06 * ripple[..., None])
        water = mud * (1 - fresnel) + mirrored * fresnel
        cover = (np.clip(depth / 0.03, 0, 1) ** 0.7 * 0.97)[..., None]
        dampness = np.where(wet, 0.8, 1.0)[..., None].astype(np.float32)
        inside = (wet & (depth > 0))[..., None]
        canvas[:] = np.where(wet[..., None], canvas * dampness, canvas)
        canvas[:] = np.where(inside, canvas * (1 - cover) + water * cover, canvas)
