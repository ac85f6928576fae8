"""The committed synthetic scenes: contract (manifest, sizes, loader), determinism, and that each
scene shows the physics it claims (flicker and growth, texture loss, a stopped queue, calm)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

import sample_media
from sample_media.generate import SCENES, generate

EXPECTED = {"fire": ["fire", "smoke"], "flood": ["flood"], "traffic": ["congestion"], "quiet": []}


def _frames(name: str) -> list[np.ndarray]:
    return [cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR) for _, jpeg in sample_media.load_scene(name)]


def _flame_pixels(frame: np.ndarray) -> int:
    hsv = cv2.cvtColor(frame, cv2.COLOR_BGR2HSV)
    return int(np.count_nonzero((hsv[..., 0] < 25) & (hsv[..., 1] > 150) & (hsv[..., 2] > 200)))


def test_manifest_lists_every_scene_with_its_contract():
    info = sample_media.manifest()
    assert (info["width"], info["height"]) == (640, 360)
    assert sample_media.scene_names() == sorted(EXPECTED)
    for name, expected in EXPECTED.items():
        scene = sample_media.scene_info(name)
        assert scene["expected"] == expected
        assert scene["fps"] == 2.0 and 20 <= scene["duration_s"] <= 40
        assert scene["frames"] == scene["duration_s"] * scene["fps"] == len(scene["sha256_16"])
        assert isinstance(scene["seed"], int)


def test_scenes_are_small_enough_to_commit():
    total = sum(p.stat().st_size for p in sample_media.SCENES_DIR.glob("*/*.jpg"))
    assert 1e6 < total < 6e6


def test_load_scene_gives_timed_640x360_jpegs():
    frames = sample_media.load_scene("quiet")
    assert [ts for ts, _ in frames[:3]] == [0.0, 0.5, 1.0]
    image = cv2.imdecode(np.frombuffer(frames[-1][1], np.uint8), cv2.IMREAD_COLOR)
    assert image.shape == (360, 640, 3)


def test_unknown_scene_is_a_clear_error():
    with pytest.raises(KeyError, match="known"):
        sample_media.load_scene("volcano")
    with pytest.raises(ValueError, match="unknown scene"):
        generate(sample_media.SCENES_DIR / "nowhere", 1, ["volcano"])


def test_generation_is_deterministic_for_a_seed(tmp_path):
    committed = sample_media.manifest()
    seed = committed["scenes"]["quiet"]["seed"]
    first = generate(tmp_path / "a", seed, ["quiet", "fire"])
    second = generate(tmp_path / "b", seed, ["quiet"])
    assert first["scenes"]["quiet"]["sha256_16"] == second["scenes"]["quiet"]["sha256_16"]
    for name in ("quiet", "fire"):  # same pixels as the committed frames (bytes may differ by libjpeg build)
        committed_frames = _frames(name)
        for i in (0, len(committed_frames) // 2, len(committed_frames) - 1):
            again = cv2.imread(str(tmp_path / "a" / name / f"{i:04d}.jpg")).astype(np.float32)
            assert np.abs(again - committed_frames[i]).mean() < 1.0, (name, i)
    other = generate(tmp_path / "c", seed + 1, ["quiet"])
    assert other["scenes"]["quiet"]["sha256_16"] != committed["scenes"]["quiet"]["sha256_16"]
    assert sorted(SCENES) == sorted(EXPECTED)


def test_fire_appears_after_onset_then_grows_and_flickers():
    frames = _frames("fire")
    onset = int(sample_media.scene_info("fire")["onset_s"] * 2)
    areas = np.array([_flame_pixels(f) for f in frames])
    assert areas[:onset].max() < 20
    late = areas[-16:]
    assert late.mean() > 4 * max(areas[onset + 2:onset + 8].mean(), 1) and late.min() > 300
    assert np.std(np.diff(late)) / late.mean() > 0.05  # the outline changes frame to frame


def test_smoke_veils_the_sky_above_the_fire():
    frames = _frames("fire")
    first, last = frames[0].astype(np.float32), frames[-1].astype(np.float32)
    sat_drop = cv2.cvtColor(frames[0], cv2.COLOR_BGR2HSV)[:90, :200, 2].mean() - \
        cv2.cvtColor(frames[-1], cv2.COLOR_BGR2HSV)[:90, :200, 2].mean()
    assert np.abs(last[:90, :200] - first[:90, :200]).mean() > 4 and sat_drop > 2


def _texture(frame: np.ndarray) -> float:
    road = cv2.cvtColor(frame[250:, 200:440], cv2.COLOR_BGR2GRAY)
    return float(cv2.Laplacian(cv2.GaussianBlur(road, (3, 3), 0), cv2.CV_32F).var())


def test_flood_water_erases_the_road_texture():
    frames = _frames("flood")
    dry, wet = np.mean([_texture(f) for f in frames[:8]]), np.mean([_texture(f) for f in frames[-6:]])
    assert wet < 0.6 * dry
    hsv_dry = cv2.cvtColor(frames[0][250:, 200:440], cv2.COLOR_BGR2HSV)
    hsv_wet = cv2.cvtColor(frames[-1][250:, 200:440], cv2.COLOR_BGR2HSV)
    assert 8 <= np.median(hsv_wet[..., 0]) <= 25 and np.median(hsv_wet[..., 1]) > np.median(hsv_dry[..., 1])


def _motion(frames: list[np.ndarray]) -> float:
    grey = [cv2.cvtColor(f[150:], cv2.COLOR_BGR2GRAY).astype(np.float32) for f in frames]
    return float(np.mean([np.mean(np.abs(a - b) > 25) for a, b in zip(grey, grey[1:])]))


def test_traffic_goes_from_moving_to_a_stopped_packed_queue():
    frames = _frames("traffic")
    empty_road = np.median(np.stack([f[200:, 220:420] for f in frames[:12]]), axis=0)
    occupied = [np.mean(np.abs(f[200:, 220:420].astype(np.float32) - empty_road).max(axis=2) > 30) for f in frames]
    assert _motion(frames[:10]) > 3 * _motion(frames[-10:])
    assert np.mean(occupied[-6:]) > 0.35 and np.mean(occupied[-6:]) > 2 * np.mean(occupied[:6])


def test_quiet_street_has_traffic_but_no_fire_or_water():
    frames = _frames("quiet")
    assert max(_flame_pixels(f) for f in frames) < 20
    assert _motion(frames) > 0.001
    textures = [_texture(f) for f in frames]
    assert min(textures) > 0.75 * np.median(textures)  # passing cars add edges, nothing removes them
