"""Seeded generator of the synthetic sample scenes.

    python -m sample_media.generate [--out DIR] [--seed N] [--scene NAME ...]

writes ``<out>/<scene>/<index:04d>.jpg`` (640x360, 2 frames/s, JPEG quality 75) and
``<out>/manifest.json``. The same seed always gives the same pixels on the same OpenCV build.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sample_media.effects import Fire, FloodWater, Smoke
from sample_media.render import HEIGHT, WIDTH, Camera, finish
from sample_media.street import StreetLayout, Traffic, build_street, draw_cars

DEFAULT_SEED = 7
FPS = 2.0
QUALITY = 75
SCENES_DIR = Path(__file__).resolve().parent / "scenes"
Frames = Iterator[tuple[np.ndarray, float]]  # (float32 BGR canvas, exposure gain)


@dataclass(frozen=True)
class SceneSpec:
    """One scene: how long, what a detector should report, and when the event begins."""

    name: str
    duration_s: float
    expected: tuple[str, ...]
    onset_s: float | None
    description: str
    render: Callable[[np.random.Generator, int], Frames]


def _warm(traffic: Traffic, seconds: float) -> None:
    for _ in range(int(seconds * 10)):
        traffic.step(0.1)


def _advance(traffic: Traffic, seconds: float) -> None:
    for _ in range(round(seconds * 10)):
        traffic.step(0.1)


def _fire(rng: np.random.Generator, frames: int) -> Frames:
    camera, layout = Camera(), StreetLayout()
    background, _, _ = build_street(rng, camera, layout)
    traffic = Traffic(layout, rng, rate=0.08)
    _warm(traffic, 30)
    base = (-layout.half_width - layout.sidewalk + 0.6, 21.0, 0.0)
    (u, v), = camera.project(np.array([base]))
    px_per_m = camera.focal / base[1]
    fire = Fire(rng, (u, v), px_per_m, ignite_s=5.0, full_s=22.0)
    smoke = Smoke(rng, (u, v - 3.5 * px_per_m), px_per_m, start_s=6.0)
    for i in range(frames):
        t = i / FPS
        canvas = background.copy()
        draw_cars(canvas, camera, traffic.cars)
        smoke.draw(canvas, t, strength=fire.growth(t))
        fire.draw(canvas, t)
        yield canvas, 1.0
        _advance(traffic, 1 / FPS)


def _flood(rng: np.random.Generator, frames: int) -> Frames:
    camera = Camera(height=7.0, horizon=105.0)
    layout = StreetLayout()
    background, facades, sky_canvas = build_street(rng, camera, layout)
    water = FloodWater(rng, camera, layout.half_width, layout.sidewalk, facades, sky_canvas)
    traffic = Traffic(layout, rng, rate=0.1)
    _warm(traffic, 30)
    for i in range(frames):
        t = i / FPS
        if t >= 8.0:
            traffic.rate = 0.0  # the road is closed as the water rises
        level = -0.05 + 0.22 * float(np.clip((t - 6.0) / 21.0, 0, 1)) ** 0.8
        canvas = background.copy()
        water.draw(canvas, t, level)
        draw_cars(canvas, camera, [c for c in traffic.cars if level < 0.02])
        yield canvas, 1.0
        _advance(traffic, 1 / FPS)


def _traffic(rng: np.random.Generator, frames: int) -> Frames:
    camera = Camera(height=9.0, horizon=95.0)
    layout = StreetLayout(lanes=((-5.25, 1), (-1.75, 1), (1.75, 1), (5.25, 1)))
    background, _, _ = build_street(rng, camera, layout)
    traffic = Traffic(layout, rng, rate=0.3)
    _warm(traffic, 30)
    for i in range(frames):
        t = i / FPS
        if t >= 4.0:  # an incident ahead: the queue forms and backs up toward the camera
            traffic.stop_at, traffic.rate = 75.0, 1.2
        canvas = background.copy()
        draw_cars(canvas, camera, traffic.cars)
        yield canvas, 1.0
        _advance(traffic, 1 / FPS)


def _quiet(rng: np.random.Generator, frames: int) -> Frames:
    camera, layout = Camera(), StreetLayout()
    background, _, _ = build_street(rng, camera, layout)
    traffic = Traffic(layout, rng, rate=0.12)
    _warm(traffic, 30)
    for i in range(frames):
        t = i / FPS
        gain = 1.0 - 0.12 * math.exp(-(((t - 12.0) / 4.0) ** 2))  # a cloud passes over the sun
        canvas = background.copy()
        draw_cars(canvas, camera, traffic.cars)
        yield canvas, gain
        _advance(traffic, 1 / FPS)


SCENES: dict[str, SceneSpec] = {s.name: s for s in (
    SceneSpec("fire", 28.0, ("fire", "smoke"), 5.0,
              "Street with light traffic; a shop front catches fire at 5 s, flames grow and smoke rises", _fire),
    SceneSpec("flood", 30.0, ("flood",), 8.0,
              "Street whose asphalt and lane markings vanish under rising muddy water from about 8 s", _flood),
    SceneSpec("traffic", 38.0, ("congestion",), 4.0,
              "Four-lane one-way road: free flow, then from 4 s a stopped queue backs up to the camera", _traffic),
    SceneSpec("quiet", 20.0, (), None,
              "Dry street with light two-way traffic and a passing cloud: nothing to report", _quiet),
)}


def generate(out: Path, seed: int = DEFAULT_SEED, names: list[str] | None = None) -> dict:
    """Render the named scenes (all by default) into ``out``; returns and writes the manifest."""
    names = names or list(SCENES)
    unknown = [n for n in names if n not in SCENES]
    if unknown:
        raise ValueError(f"unknown scene(s) {unknown}; choose from {list(SCENES)}")
    out.mkdir(parents=True, exist_ok=True)
    manifest_path = out / "manifest.json"
    manifest = {"width": WIDTH, "height": HEIGHT, "jpeg_quality": QUALITY, "scenes": {}}
    if manifest_path.exists():
        manifest["scenes"] = json.loads(manifest_path.read_text()).get("scenes", {})
    for name in names:
        spec = SCENES[name]
        index = list(SCENES).index(name)
        rng = np.random.default_rng([seed, index])
        frames = int(spec.duration_s * FPS)
        folder = out / name
        folder.mkdir(exist_ok=True)
        for old in folder.glob("*.jpg"):
            old.unlink()
        hashes = []
        for i, (canvas, gain) in enumerate(spec.render(rng, frames)):
            jpeg = finish(rng, canvas, gain=gain, quality=QUALITY)
            (folder / f"{i:04d}.jpg").write_bytes(jpeg)
            hashes.append(hashlib.sha256(jpeg).hexdigest()[:16])
        manifest["scenes"][name] = {
            "frames": frames, "fps": FPS, "duration_s": spec.duration_s, "expected": list(spec.expected),
            "onset_s": spec.onset_s, "seed": seed, "description": spec.description, "sha256_16": hashes,
        }
    manifest["scenes"] = dict(sorted(manifest["scenes"].items()))
    manifest_path.write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m sample_media.generate", description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=SCENES_DIR, help="output folder (default: the package's)")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="random seed (default %(default)s)")
    parser.add_argument("--scene", action="append", choices=list(SCENES), help="only this scene (repeatable)")
    args = parser.parse_args(argv)
    manifest = generate(args.out, args.seed, args.scene)
    total = sum(p.stat().st_size for p in args.out.glob("*/*.jpg"))
    for name, info in manifest["scenes"].items():
        print(f"{name:8s} {info['frames']:3d} frames  expected={info['expected']}")
    print(f"wrote {args.out} ({total / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
