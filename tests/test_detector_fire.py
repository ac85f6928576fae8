"""Fire and smoke detector: synthetic scenes (flicker vs. rigid, static, blinking, haze; stills of
flames vs. sunsets, buses, lit windows) and a regression over ../shared/footage when present."""

from __future__ import annotations

import csv
from pathlib import Path

import cv2
import numpy as np
import pytest

from detectors.fire import FireDetector, FireSettings, SmokeSettings

ORANGE = (0, 140, 255)  # BGR
YELLOW = (150, 230, 255)


def background(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A dark, textured, static street-like scene."""
    rng = np.random.default_rng(seed)
    base = rng.integers(30, 80, size=(h // 8, w // 8, 1), dtype=np.uint8)
    img = cv2.resize(np.repeat(base, 3, axis=2), (w, h), interpolation=cv2.INTER_NEAREST)
    for x in range(0, w, max(w // 10, 1)):
        cv2.line(img, (x, 0), (x, h - 1), (110, 110, 110), max(1, w // 320))
    return img


def flame_frame(bg: np.ndarray, rng: np.random.Generator, cx: float, cy: float, size: float) -> np.ndarray:
    """An irregular flame: jittering tongues of orange with a yellow core, new shape every call."""
    img = bg.copy()
    h, w = img.shape[:2]
    s = size * w
    for _ in range(5):  # tongues of varying brightness: a flame flickers inside, too
        ox, oy = rng.normal(0, 0.25 * s), rng.normal(0, 0.3 * s)
        axes = (int(s * rng.uniform(0.15, 0.45)), int(s * rng.uniform(0.3, 0.9)))
        shade = (int(rng.uniform(0, 40)), int(rng.uniform(90, 200)), int(rng.uniform(220, 255)))
        cv2.ellipse(img, (int(cx * w + ox), int(cy * h + oy - axes[1] / 2)), axes,
                    rng.uniform(-25, 25), 0, 360, shade, -1)
    core = (int(s * rng.uniform(0.1, 0.2)), int(s * rng.uniform(0.15, 0.35)))
    cv2.ellipse(img, (int(cx * w + rng.normal(0, 0.05 * s)), int(cy * h - core[1])), core, 0, 0, 360,
                YELLOW, -1)
    return img


def run(detector: FireDetector, frames, fps: float) -> list[tuple[bool, bool, bool]]:
    """(fire active, smoke active, fire ready) per frame."""
    out = []
    for i, frame in enumerate(frames):
        fire, smoke = detector.detect(frame, 1000.0 + i / fps)
        assert (fire.type, smoke.type) == ("fire", "smoke")
        out.append((fire.active, smoke.active, fire.ready))
    return out


def flame_clip(h: int, w: int, seconds: float, fps: float, seed: int = 1):
    rng = np.random.default_rng(seed)
    bg = background(h, w)
    return [flame_frame(bg, rng, 0.5, 0.7, 0.12) for _ in range(int(seconds * fps))]


@pytest.mark.parametrize("h,w,fps", [(240, 320, 2), (720, 1280, 2), (240, 320, 1), (360, 640, 30)])
def test_flickering_flame_is_fire_after_a_few_seconds(h, w, fps):
    frames = flame_clip(h, w, 10 if fps < 30 else 7, fps)
    result = run(FireDetector(), frames, fps)
    first = next((i for i, (fire, _, _) in enumerate(result) if fire), None)
    assert first is not None, "a flickering flame was never detected"
    assert first / fps <= 6.0
    assert sum(fire for fire, _, _ in result[first:]) >= 0.6 * len(result[first:])


def test_flame_finding_carries_measurements_and_boxes():
    detector = FireDetector()
    for i, frame in enumerate(flame_clip(240, 320, 8, 2)):
        fire, _ = detector.detect(frame, i * 0.5)
    assert fire.active and fire.ready and 0 < fire.confidence <= 1
    assert fire.measurements["area_pct"] > 0.1 and fire.measurements["flicker"] > 0.3
    x, y, bw, bh = fire.boxes[0]
    assert 0.3 < x + bw / 2 < 0.7 and 0.4 < y + bh / 2 < 0.8  # around the flame at (0.5, 0.6)


def test_fire_ends_when_the_flames_go_out():
    detector, bg = FireDetector(), background(240, 320)
    frames = flame_clip(240, 320, 8, 2) + [bg] * 12  # the burning cells outlive the candidates
    result = run(detector, frames, 2)
    assert any(fire for fire, _, _ in result[:16])
    assert not any(fire for fire, _, _ in result[-6:])


@pytest.mark.parametrize("red_min", [140, 170, 200])
def test_flame_colour_mask_follows_the_documented_ratios(red_min):
    """The integer tests equal the ratio rules: body R >= G > B, R > red_min, (R-B)/R >= 0.4,
    (G-B)/(R-B) >= 0.12; core R > 220, G > 170, R >= G >= B within 2 px of the body."""
    from detectors.fire_features import flame_colour_mask

    rng = np.random.default_rng(red_min)
    img = rng.integers(0, 256, (300, 400, 3), dtype=np.uint8)
    img[100:200] = np.sort(img[100:200], axis=2)[..., ::-1]  # many R >= G >= B pixels
    img[150:160, 50:350] = (120, 200, 240)  # a core-coloured band next to body pixels
    b, g, r = (img[..., k].astype(float) for k in range(3))
    with np.errstate(divide="ignore", invalid="ignore"):
        body = (r > red_min) & (r >= g) & (g > b) & ((r - b) / r >= 0.4) & ((g - b) / (r - b) >= 0.12)
    core = (r > 220) & (g > 170) & (r >= g) & (g >= b)
    near = cv2.dilate(body.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
    expected = body | (core & near)
    assert body.sum() > 1000 and (core & near & ~body).sum() > 100
    assert np.array_equal(flame_colour_mask(img, red_min), expected)
    view = img[:, ::2]  # a strided view is read like its contiguous copy
    assert np.array_equal(flame_colour_mask(view, red_min), flame_colour_mask(view.copy(), red_min))


def test_growing_flame_reports_growth():
    rng, bg = np.random.default_rng(2), background(240, 320)
    detector, growth = FireDetector(), []
    for i in range(30):  # 15 s at 2 frames/s, flame size more than doubling
        fire, _ = detector.detect(flame_frame(bg, rng, 0.5, 0.8, 0.06 + 0.005 * i), i * 0.5)
        if fire.active:
            growth.append(fire.measurements["growth"])
            assert fire.measurements["area_pct"] <= fire.measurements["candidate_pct"]
    assert len(growth) >= 10 and np.median(growth[-8:]) > 0.5


def static_logo(h, w, n):
    img = background(h, w)
    cv2.rectangle(img, (int(0.7 * w), int(0.05 * h)), (int(0.95 * w), int(0.2 * h)), ORANGE, -1)
    cv2.putText(img, "NEWS", (int(0.72 * w), int(0.17 * h)), cv2.FONT_HERSHEY_SIMPLEX, w / 640,
                YELLOW, 2)
    rng = np.random.default_rng(3)  # sensor noise so frames are not bit-identical
    return [cv2.add(img, rng.integers(0, 4, img.shape, dtype=np.uint8)) for _ in range(n)]


def moving_bus(h, w, n):
    bg = background(h, w)
    frames = []
    for i in range(n):
        img = bg.copy()
        x = int((0.05 + 0.03 * i) * w) % w
        cv2.rectangle(img, (x, int(0.5 * h)), (x + int(0.3 * w), int(0.75 * h)), ORANGE, -1)
        cv2.rectangle(img, (x + 5, int(0.52 * h)), (x + int(0.1 * w), int(0.6 * h)), YELLOW, -1)
        frames.append(img)
    return frames


def blinking_light(h, w, n):
    bg = background(h, w)
    frames = []
    for i in range(n):
        img = bg.copy()
        if i % 3 != 2:  # on, on, off ...
            cv2.circle(img, (w // 2, h // 2), int(0.06 * w) + (i % 3) * 3, ORANGE, -1)
            cv2.circle(img, (w // 2, h // 2), int(0.03 * w), YELLOW, -1)
        frames.append(img)
    return frames


@pytest.mark.parametrize("scene", [static_logo, moving_bus, blinking_light])
@pytest.mark.parametrize("fps", [2, 10])
def test_rigid_static_or_blinking_orange_is_never_fire(scene, fps):
    result = run(FireDetector(FireSettings(sensitivity=0.7)), scene(240, 320, int(20 * fps)), fps)
    assert not any(fire for fire, _, _ in result)


def test_replayed_still_is_not_ready_when_static_scenes_are_off():
    frame = flame_clip(240, 320, 1, 1)[0]
    result = run(FireDetector(FireSettings(static_scenes=False)), [frame] * 20, 2)
    assert not any(fire for fire, _, _ in result)
    assert not result[-1][2]  # it says it cannot judge a still


def layered_flame(h: int, w: int, seed: int = 4) -> np.ndarray:
    """A still of a fire at night: rising tongues, each red outside, then orange, yellow, and a
    white-yellow core inside (hotter towards the middle), slightly blurred."""
    rng = np.random.default_rng(seed)
    img = background(h, w) // 2
    layers = [((30, 50, 200), 1.0), ((20, 120, 250), 0.75), ((110, 215, 255), 0.5), ((215, 245, 255), 0.3)]
    tongues = [(rng.uniform(0.4, 0.6) * w, rng.uniform(0.04, 0.07) * w, rng.uniform(0.15, 0.3) * h)
               for _ in range(5)]
    for colour, k in layers:
        for x, half_w, height in tongues:
            base = 0.75 * h
            pts = np.array([[x - half_w * k, base], [x, base - height * k],
                            [x + half_w * k, base], [x, base + 0.3 * half_w * k]], np.int32)
            cv2.fillPoly(img, [pts], colour)
    return cv2.GaussianBlur(img, (0, 0), w / 400)


def still_findings(frame: np.ndarray, settings: FireSettings | None = None, n: int = 20):
    """Fire findings of a still replayed as ``n`` identical frames at 2 frames/s."""
    detector = FireDetector(settings)
    return [detector.detect(frame, 1000.0 + i / 2)[0] for i in range(n)]


def reencoded(frame: np.ndarray, scale: int = 1, quality: int = 90) -> np.ndarray:
    """``frame`` shrunk by ``scale`` and passed through a JPEG of ``quality``."""
    if scale > 1:
        frame = cv2.resize(frame, (frame.shape[1] // scale, frame.shape[0] // scale),
                           interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, quality])
    return cv2.imdecode(buf, cv2.IMREAD_COLOR)


@pytest.mark.parametrize("scale,quality", [(1, 95), (1, 75), (2, 90), (4, 90)])
def test_replayed_still_of_a_flame_is_fire_with_a_lower_confidence(scale, quality):
    frame = reencoded(layered_flame(480, 640), scale, quality)
    findings = still_findings(frame)
    assert not any(f.active for f in findings[:6])  # under 3 s the scene is not known to be static
    last = findings[-1]
    assert last.active and last.ready and last.measurements["static_scene"] == 1.0
    assert 0.25 <= last.confidence <= 0.4  # below what flicker evidence gives
    x, y, bw, bh = last.boxes[0]
    assert 0.3 < x + bw / 2 < 0.7 and 0.4 < y + bh / 2 < 0.8  # around the fire at (0.5, 0.65)


def sunset(h: int, w: int) -> np.ndarray:
    """Blue sky turning orange-red towards the horizon, a white sun disk, dark ground."""
    t = np.linspace(0.0, 1.0, int(0.65 * h))[:, None]
    sky = np.stack([200 * (1 - t) + 20 * t, 120 * (1 - t) + 120 * t, 60 * (1 - t) + 255 * t], axis=2)
    img = np.zeros((h, w, 3), np.uint8)
    img[: len(t)] = np.repeat(sky, w, axis=1).astype(np.uint8)
    cv2.circle(img, (int(0.6 * w), int(0.6 * h)), int(0.08 * w), (200, 240, 255), -1)
    return cv2.GaussianBlur(img, (0, 0), 2)


def parked_bus(h: int, w: int) -> np.ndarray:
    """A red-orange bus with lit yellow windows, standing still."""
    img = background(h, w)
    cv2.rectangle(img, (int(0.2 * w), int(0.45 * h)), (int(0.7 * w), int(0.8 * h)), (20, 90, 235), -1)
    for k in range(4):
        x = int((0.23 + 0.11 * k) * w)
        cv2.rectangle(img, (x, int(0.5 * h)), (x + int(0.08 * w), int(0.6 * h)), YELLOW, -1)
    return img


def lit_windows(h: int, w: int) -> np.ndarray:
    """A dark facade with a grid of warm-white lit windows."""
    img = np.full((h, w, 3), 25, np.uint8)
    for row in range(3):
        for col in range(5):
            x, y = int((0.1 + 0.17 * col) * w), int((0.15 + 0.25 * row) * h)
            cv2.rectangle(img, (x, y), (x + int(0.1 * w), y + int(0.15 * h)), (120, 200, 250), -1)
            cv2.rectangle(img, (x + 4, y + 4), (x + int(0.1 * w) - 4, y + int(0.15 * h) - 4),
                          (200, 240, 255), -1)
    return cv2.GaussianBlur(img, (0, 0), 1.5)


def red_wall(h: int, w: int) -> np.ndarray:
    """A red-orange wall under daylight, a white lamp on it."""
    img = np.full((h, w, 3), (40, 60, 200), np.uint8)
    cv2.circle(img, (w // 2, h // 3), int(0.04 * w), (235, 245, 250), -1)
    return img


@pytest.mark.parametrize("scene", [sunset, parked_bus, lit_windows, red_wall, static_logo])
@pytest.mark.parametrize("scale,quality", [(1, 90), (2, 75)])
def test_static_fire_coloured_scenes_are_not_fire(scene, scale, quality):
    frame = reencoded(scene(480, 640) if scene is not static_logo else static_logo(480, 640, 1)[0],
                      scale, quality)
    findings = still_findings(frame)
    assert findings[-1].ready and findings[-1].measurements["static_scene"] == 1.0
    assert not any(f.active for f in findings)


def test_still_flame_outside_the_region_is_not_fire():
    settings = FireSettings(regions=[[(0.0, 0.0), (0.3, 0.0), (0.3, 0.3), (0.0, 0.3)]])
    findings = still_findings(layered_flame(240, 320), settings)
    assert findings[-1].ready and not any(f.active for f in findings)


def test_still_evidence_is_not_carried_into_live_frames():
    """A frozen flame picture followed by a live quiet scene: the still judgements are dropped."""
    detector = FireDetector()
    flame = layered_flame(240, 320)
    still = [detector.detect(flame, i / 2)[0] for i in range(12)]
    assert [f.measurements["static_scene"] for f in still] == [0.0] * 6 + [1.0] * 6  # 3 s identical
    assert still[-1].active
    rng = np.random.default_rng(9)
    quiet = background(240, 320)
    for i in range(12, 20):
        live = cv2.add(quiet, rng.integers(0, 12, quiet.shape, dtype=np.uint8))
        fire = detector.detect(live, i / 2)[0]
        assert not fire.active and fire.measurements["static_scene"] == 0.0


def test_region_outside_the_flame_sees_nothing():
    settings = FireSettings(regions=[[(0.0, 0.0), (0.3, 0.0), (0.3, 0.3), (0.0, 0.3)]])
    result = run(FireDetector(settings), flame_clip(240, 320, 10, 2), 2)
    assert not any(fire for fire, _, _ in result)


def test_disabled_fire_reports_inactive():
    result = run(FireDetector(FireSettings(enabled=False)), flame_clip(240, 320, 10, 2), 2)
    assert not any(fire for fire, _, _ in result)


@pytest.mark.parametrize("bad", [np.zeros((240, 320), np.uint8), np.zeros((240, 320, 3), np.float32),
                                 np.zeros((8, 8, 3), np.uint8), "frame"])
def test_bad_frames_raise_a_clear_error(bad):
    with pytest.raises(ValueError, match="frame"):
        FireDetector().detect(bad, 0.0)


def haze_clip(h, w, n, grow=True):
    bg = background(h, w, seed=5)
    frames = []
    for i in range(n):
        alpha = np.zeros((h, w), np.float32)
        if grow and i >= 4:
            radius = int(min(0.1 + 0.02 * (i - 4), 0.35) * w)
            cv2.circle(alpha, (w // 2, int(0.4 * h)), radius, 0.65, -1)
            alpha = cv2.GaussianBlur(alpha, (0, 0), w / 40)
        grey = np.full_like(bg, 170)
        frames.append((bg * (1 - alpha[..., None]) + grey * alpha[..., None]).astype(np.uint8))
    return frames


def test_grey_expanding_haze_is_smoke_not_fire():
    result = run(FireDetector(), haze_clip(240, 320, 40), 2)
    assert any(smoke for _, smoke, _ in result)
    assert not any(fire for fire, _, _ in result)


@pytest.mark.parametrize("regions", [[], [[(0.0, 0.0), (0.93, 0.0), (0.93, 0.97), (0.0, 0.97)]]])
def test_smoke_boxes_cover_the_plume(regions):
    detector = FireDetector(smoke=SmokeSettings(regions=regions))
    for i, frame in enumerate(haze_clip(240, 320, 40)):
        _, smoke = detector.detect(frame, i * 0.5)
    assert smoke.active and smoke.boxes
    x, y, bw, bh = max(smoke.boxes, key=lambda b: b[2] * b[3])
    assert x < 0.5 < x + bw and y < 0.4 < y + bh  # around the plume at (0.5, 0.4)
    assert all(bx + bw <= 0.93 + 1e-6 and by + bh <= 0.97 + 1e-6 for bx, by, bw, bh in smoke.boxes) \
        or not regions


def test_unchanging_scene_is_not_smoke():
    result = run(FireDetector(), haze_clip(240, 320, 40, grow=False), 2)
    assert not any(smoke for _, smoke, _ in result)


# --- regression on real footage -------------------------------------------------------------

def alarmed_at(detector: FireDetector, frames, event: int) -> float | None:
    """Time of the first frame closing 3 active findings out of 5 (the default debounce)."""
    flags = []
    for ts, frame in frames:
        flags.append(detector.detect(frame, ts)[event].active)
        if sum(flags[-5:]) >= 3:
            return ts
    return None


def sampled(path, fps=2.0):
    cap = cv2.VideoCapture(str(path))
    duration = cap.get(cv2.CAP_PROP_FRAME_COUNT) / max(cap.get(cv2.CAP_PROP_FPS), 1e-6)
    t = 0.0
    while t < duration:
        cap.set(cv2.CAP_PROP_POS_MSEC, t * 1000)
        ok, frame = cap.read()
        if not ok:
            break
        yield t, frame
        t += 1 / fps
    cap.release()


@pytest.mark.footage
def test_footage_clips_fire_outcome(footage_dir):
    """The classical detector alone (no learned verifier) on the clips. Measured on the 102-media set:
    every clip with visible flames alarmed; the three smoke-dominated clips (a distant plume, a
    smouldering scrub, a smoke column seen from a drone) are missed; 5 false alarms (a sunset, a
    forest without fire, fog/background footage, a news clip, canoes under orange light)."""
    rows = list(csv.DictReader(open(footage_dir / "labels.csv")))
    missed, false_alarms = [], []
    for row in rows:
        if row["frames"] == "1" or row["fire"] == "ambiguous":
            continue
        when = alarmed_at(FireDetector(), sampled(footage_dir / row["path"]), 0)
        if row["fire"] == "pos" and when is None:
            missed.append(row["path"])
        if row["fire"] != "pos" and when is not None:
            false_alarms.append(row["path"])
    assert sorted(missed) == ["deepankarvarma_forestfire_smoke/hpwren_lospinos_smoke.mp4",
                              "teerapongp_fireforest/Video3.mp4", "wsy0331_embedded_final/fire_smoke9.mp4"]
    assert len(false_alarms) <= 5, false_alarms


@pytest.mark.footage
def test_footage_stills_fire_outcome(footage_dir):
    """Stills replayed as static 10 s scenes: no negative still alarmed (sunsets, the orange bus,
    lit windows, red rooms), and at least the 11 of 20 fire stills the single-frame test reached."""
    rows = [r for r in csv.DictReader(open(footage_dir / "labels.csv"))
            if r["frames"] == "1" and r["fire"] != "ambiguous"]
    caught, false_alarms = [], []
    for row in rows:
        frame = cv2.imread(str(footage_dir / row["path"]))
        when = alarmed_at(FireDetector(), ((i * 0.5, frame) for i in range(20)), 0)
        (caught if row["fire"] == "pos" else false_alarms).extend([row["path"]] if when else [])
    assert not false_alarms
    assert len(caught) >= 11, caught


# --- the project's own synthetic scenes (sample_media) ---------------------------------------

SCENES = Path(__file__).resolve().parents[1] / "sample_media" / "scenes"


@pytest.mark.parametrize("scene,expect_fire", [("fire", True), ("traffic", False), ("quiet", False),
                                               ("flood", False)])
def test_sample_media_scenes(scene, expect_fire):
    paths = sorted((SCENES / scene).glob("*.jpg"))
    if not paths:
        pytest.skip(f"sample_media/scenes/{scene} not generated")
    detector = FireDetector()
    frames = ((i * 0.5, cv2.imread(str(p))) for i, p in enumerate(paths))  # generated at 2 frames/s
    assert (alarmed_at(detector, frames, 0) is not None) == expect_fire
