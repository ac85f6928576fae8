"""A city street for the synthetic scenes: textured road, sidewalks and building facades, plus
cars drawn as shaded 3-D boxes that follow each other with the Intelligent Driver Model."""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from sample_media.render import HAZE, Camera, Plane, fractal_noise, shade, sky

RES = 0.05  # metres per texel of the ground and facade textures
CAR_COLOURS = [(235, 235, 235), (190, 192, 195), (40, 40, 45), (110, 110, 115), (140, 80, 40),
               (50, 50, 150), (60, 90, 60), (30, 110, 200), (200, 200, 190), (90, 60, 30)]


@dataclass(frozen=True)
class StreetLayout:
    """Lanes (centre X, direction +1 away / -1 toward the camera) between kerbs at +-half_width."""

    lanes: tuple[tuple[float, int], ...] = ((-5.25, -1), (-1.75, -1), (1.75, 1), (5.25, 1))
    half_width: float = 7.0
    sidewalk: float = 2.5
    length: float = 220.0


def _road_texture(rng: np.random.Generator, layout: StreetLayout) -> np.ndarray:
    x0 = -layout.half_width - layout.sidewalk
    w, h = int(2 * (layout.half_width + layout.sidewalk) / RES), int((layout.length - 4) / RES)
    grain = fractal_noise(rng, (h, w), 3, 3)
    blotch = fractal_noise(rng, (h, w), 90, 3)
    tex = shade((88, 89, 92), 0.45 * grain + 0.55 * blotch, 20)
    xs = x0 + (np.arange(w) + 0.5) * RES
    ys = 4 + (np.arange(h) + 0.5) * RES
    for _ in range(int(layout.length / 8)):  # cracks and tar seams
        pts = np.cumsum(rng.normal(0, 6, (6, 2)), axis=0) + rng.uniform((0, 0), (w, h))
        cv2.polylines(tex, [pts.astype(np.int32)], False, (55, 56, 58), 1, cv2.LINE_AA)
    wear = 0.8 + 0.2 * fractal_noise(rng, (h, w), 20, 2)
    lane_edges = sorted({round(x + s * 1.75, 2) for x, _ in layout.lanes for s in (-1, 1)})
    for edge in lane_edges:
        col = (xs > edge - 0.075) & (xs < edge + 0.075)
        if abs(abs(edge) - layout.half_width) < 0.3:
            rows = np.ones(h, bool)  # solid edge line
        elif abs(edge) < 0.01:
            rows = np.ones(h, bool)  # solid centre line
        else:
            rows = (ys % 9.0) < 3.0  # dashed lane divider
        sel = np.ix_(rows, col)
        a = wear[sel][..., None]
        tex[sel] = tex[sel] * (1 - a) + np.float32((215, 218, 220)) * a
    side = np.abs(xs) > layout.half_width
    concrete = shade((150, 156, 162), fractal_noise(rng, (h, w), 6, 3), 8)
    joints = ((ys % 1.5) < 0.04)[:, None] | ((np.abs(xs) - layout.half_width) % 1.5 < 0.04)[None, :]
    concrete[joints] *= 0.75
    tex[:, side] = concrete[:, side]
    kerb = (np.abs(xs) > layout.half_width) & (np.abs(xs) < layout.half_width + 0.25)
    tex[:, kerb] = 178
    return tex


def _facade_texture(rng: np.random.Generator, length: float, height: float) -> np.ndarray:
    w, h = int(length / RES), int(height / RES)
    wall = tuple(float(c) for c in rng.choice([(120, 140, 170), (150, 160, 175), (90, 100, 140),
                                                (170, 175, 180), (110, 120, 125), (140, 150, 190)]))
    tex = shade(wall, fractal_noise(rng, (h, w), 30, 3), 8)
    floor_h, bay = 3.2, rng.uniform(2.6, 3.4)
    for z in np.arange(floor_h + 0.9, height - 1.8, floor_h):  # upper-floor windows
        for y in np.arange(0.8, length - 1.5, bay):
            r0, c0 = int((height - z - 1.6) / RES), int(y / RES)
            glass = 80 + 35 * rng.random()
            tex[r0:r0 + int(1.6 / RES), c0:c0 + int(1.3 / RES)] = (glass + 15, glass + 5, glass)
            tex[r0 - 2:r0, c0 - 2:c0 + int(1.3 / RES) + 2] *= 0.8
    r_shop = int((height - 3.0) / RES)
    for y in np.arange(0.5, length - 3.5, 4.5):  # shop fronts with a sign band
        c0 = int(y / RES)
        tex[r_shop:int((height - 0.3) / RES), c0:c0 + int(3.4 / RES)] = (70, 65, 60)
        sign = tuple(float(c) for c in rng.integers(60, 200, 3))
        tex[r_shop - int(0.6 / RES):r_shop - 2, c0:c0 + int(3.4 / RES)] = sign
    tex[: int(0.4 / RES)] *= 0.85  # cornice shadow
    return cv2.GaussianBlur(tex, (0, 0), 2.0)  # soft edges: plaster, not vector art


def build_street(rng: np.random.Generator, camera: Camera,
                 layout: StreetLayout) -> tuple[np.ndarray, list[Plane], np.ndarray]:
    """The static street: returns the rendered background (float32 BGR), the facade planes and the
    sky alone (both for reflections)."""
    sky_canvas = sky(rng, camera)
    canvas = sky_canvas.copy()
    canvas[int(camera.horizon):] = HAZE
    x0, x1 = -layout.half_width - layout.sidewalk, layout.half_width + layout.sidewalk
    ground = Plane(_road_texture(rng, layout), [(x0, 4, 0), (x1, 4, 0), (x1, layout.length, 0), (x0, layout.length, 0)])
    facades: list[Plane] = []
    for side, x in ((-1, x0), (1, x1)):
        y = 4.0
        while y < layout.length:
            length, height = rng.uniform(12, 28), rng.uniform(9, 24)
            tex = _facade_texture(rng, length, height)
            y0, y1 = y, min(y + length, layout.length)
            if side < 0:  # texture left edge is the near end on the left side
                corners = [(x, y0, height), (x, y1, height), (x, y1, 0), (x, y0, 0)]
            else:
                corners = [(x, y1, height), (x, y0, height), (x, y0, 0), (x, y1, 0)]
            facades.append(Plane(tex, corners))
            y += length
    ground.draw(canvas, camera)
    for plane in sorted(facades, key=lambda p: -p.corners[:, 1].min()):
        plane.draw(canvas, camera)
    return canvas, facades, sky_canvas


@dataclass
class Car:
    """A car on a lane: ``y`` is its rear (for cars driving away) in metres, ``v`` its speed."""

    x: float
    y: float
    v: float
    direction: int
    colour: tuple[int, int, int]
    length: float = 4.5
    width: float = 1.8
    v0: float = 13.0


def _box(x0, x1, y0, y1, z0, z1) -> np.ndarray:
    return np.array([[x, y, z] for z in (z0, z1) for y in (y0, y1) for x in (x0, x1)], np.float64)


def _fill(canvas: np.ndarray, pts2d: np.ndarray, colour) -> None:
    cv2.fillConvexPoly(canvas, np.round(pts2d * 16).astype(np.int32), tuple(float(c) for c in colour),
                       cv2.LINE_AA, shift=4)


def draw_cars(canvas: np.ndarray, camera: Camera, cars: list[Car], braking: bool = False) -> None:
    """Shadows first, then cars far to near, each as a body box and a cabin box."""
    shadow = np.zeros(canvas.shape[:2], np.float32)
    for car in cars:
        foot = _box(car.x - car.width / 2 - 0.2, car.x + car.width / 2 + 0.5, car.y - 0.1, car.y + car.length + 0.4, 0, 0)[:4]
        cv2.fillConvexPoly(shadow, np.round(camera.project(foot[[0, 1, 3, 2]])).astype(np.int32), 1.0)
    shadow = cv2.GaussianBlur(shadow, (0, 0), 1.5)
    canvas *= (1 - 0.5 * shadow)[..., None]
    for car in sorted(cars, key=lambda c: -c.y):
        if car.y < 3.0:
            continue
        col = np.float32(car.colour)
        x0, x1, y0, y1 = car.x - car.width / 2, car.x + car.width / 2, car.y, car.y + car.length
        near_y = y0  # the camera always sees the near end: rears going away, fronts coming
        for (bx0, bx1, by0, by1, z0, z1), tone in (
            ((x0 + 0.15, x1 - 0.15, y0 + 0.4, y1 - 0.4, 0.0, 0.35), np.float32((20, 20, 22))),
            ((x0, x1, y0, y1, 0.3, 1.0), col),
            ((x0 + 0.12, x1 - 0.12, y0 + 1.1, y1 - 1.2, 1.0, 1.45), col),
        ):
            box = camera.project(_box(bx0, bx1, by0, by1, z0, z1))
            side = [0, 2, 6, 4] if camera.cx < camera.project(np.array([[bx0, by0, 0.0]]))[0, 0] else [1, 3, 7, 5]
            _fill(canvas, box[side], tone * 0.62)
            _fill(canvas, box[[4, 5, 7, 6]], tone * (1.05 if z1 < 1.2 else 0.95))
            _fill(canvas, box[[0, 1, 5, 4]], np.float32((62, 56, 52)) if z0 >= 1.0 else tone * 0.8)
        lz = (0.7, 0.9)
        light = (60, 60, 255) if car.direction > 0 and (braking or car.v < 1) else (40, 40, 170)
        if car.direction < 0:
            light = (190, 230, 240)
        for lx in ((x0 + 0.1, x0 + 0.45), (x1 - 0.45, x1 - 0.1)):
            quad = _box(lx[0], lx[1], near_y, near_y, lz[0], lz[1])[[0, 1, 5, 4]]
            _fill(canvas, camera.project(quad), light)


@dataclass
class Traffic:
    """Lanes of cars following the Intelligent Driver Model; ``stop_at`` holds a virtual stopped
    obstacle (a red light, an incident ahead) at that distance on lanes driving away."""

    layout: StreetLayout
    rng: np.random.Generator
    rate: float = 0.15  # cars per second per lane
    stop_at: float | None = None
    speed: float = 13.0
    cars: list[Car] = field(default_factory=list)

    def step(self, dt: float) -> None:
        a_max, b, s0, headway = 1.6, 2.2, 2.0, 1.3
        for lane_x, direction in self.layout.lanes:
            lane = sorted((c for c in self.cars if c.x == lane_x), key=lambda c: -c.y * direction)
            stop = self.stop_at if (self.stop_at is not None and direction > 0) else None
            leader_pos, leader_v = 1e9, self.speed
            for car in lane:
                front = car.y + car.length if direction > 0 else -car.y
                if stop is not None and front <= stop + 0.5 and stop < leader_pos:
                    leader_pos, leader_v = stop, 0.0
                gap = max(0.1, leader_pos - front)
                s_star = s0 + car.v * headway + car.v * (car.v - leader_v) / (2 * np.sqrt(a_max * b))
                acc = a_max * (1 - (car.v / car.v0) ** 4 - (max(s_star, 0) / gap) ** 2)
                car.v = max(0.0, car.v + acc * dt)
                car.y += direction * car.v * dt
                leader_pos = car.y if direction > 0 else -(car.y + car.length)
                leader_v = car.v
            entry = 4.0 if direction > 0 else self.layout.length
            last = min((abs(c.y - entry) for c in lane), default=1e9)
            if self.rng.random() < self.rate * dt and last > 12.0:
                v0 = self.speed * self.rng.uniform(0.85, 1.15)
                colour = CAR_COLOURS[self.rng.integers(len(CAR_COLOURS))]
                self.cars.append(Car(lane_x, entry - (0 if direction > 0 else 4.5), min(v0, 0.8 * last),
                                     direction, colour, length=float(self.rng.uniform(4.0, 5.0)), v0=v0))
        self.cars = [c for c in self.cars if 2.0 < c.y < self.layout.length + 1]
