"""Congestion detector on synthetic roads made here, the sample scenes and (if present) real footage."""

from __future__ import annotations

import csv
from pathlib import Path

import cv2
import numpy as np
import pytest
from pydantic import ValidationError

from detectors.congestion import CongestionDetector, CongestionSettings, level_of_service

PALETTE = [(235, 235, 235), (30, 30, 30), (40, 40, 190), (170, 90, 30), (165, 165, 160), (40, 160, 220)]


class Road:
    """A four-lane road seen from above the verge: textured asphalt, dashed markings, a grass strip,
    cars (body, windows, dark outline) moving left to right, and sensor noise on every frame."""

    def __init__(self, cars_per_lane: int, speed: float, width: int = 640, height: int = 360,
                 seed: int = 1, stop_after_s: float | None = None) -> None:
        rng = np.random.default_rng(seed)
        self.w, self.h = width, height
        self.speed = speed * width  # px per second; speed is in frame widths per second
        self.stop_after_s = stop_after_s
        bg = np.full((height, width, 3), 104.0, np.float32)
        bg += cv2.GaussianBlur(rng.normal(0, 6, (height, width)).astype(np.float32), (0, 0), 1.2)[..., None]
        top = int(0.15 * height)
        bg[:top] = (60, 140, 70)
        lane_h = (height - top) / 4
        self.lanes = [top + (k + 0.5) * lane_h for k in range(4)]
        for k in range(1, 4):
            y = int(top + k * lane_h)
            for x in range(0, width, width // 10):
                cv2.rectangle(bg, (x, y - 1), (x + width // 20, y + 1), (215, 215, 215), -1)
        self.background = np.clip(bg, 0, 255).astype(np.uint8)
        self.noise = [rng.normal(0, 2.0, bg.shape).astype(np.int16) for _ in range(7)]
        self.car_w, self.car_h = int(0.07 * width), int(0.65 * lane_h)
        self.cars: list[tuple[int, float, tuple[int, int, int]]] = []
        for lane in range(4):
            spacing = width / max(1, cars_per_lane)
            offset = rng.uniform(0, spacing)
            for i in range(cars_per_lane):
                self.cars.append((lane, offset + i * spacing, PALETTE[int(rng.integers(len(PALETTE)))]))
        self.frames = 0

    def frame(self, t: float) -> np.ndarray:
        moving_t = t if self.stop_after_s is None else min(t, self.stop_after_s)
        img = self.background.copy()
        period = self.w + self.car_w
        cw, ch = self.car_w, self.car_h
        for lane, x0, colour in self.cars:
            x = int((x0 + self.speed * moving_t) % period) - cw
            y = int(self.lanes[lane] - ch / 2)
            cv2.rectangle(img, (x, y), (x + cw, y + ch), colour, -1)
            for a, b in ((0.15, 0.3), (0.6, 0.8)):  # rear and front windows
                cv2.rectangle(img, (x + int(cw * a), y + ch // 6), (x + int(cw * b), y + ch - ch // 6),
                              (50, 45, 40), -1)
            cv2.rectangle(img, (x, y), (x + cw, y + ch), (20, 20, 20), max(1, self.w // 320))
        self.frames += 1
        noisy = img.astype(np.int16) + self.noise[self.frames % len(self.noise)]
        return np.clip(noisy, 0, 255).astype(np.uint8)


HOLD = CongestionSettings().jam_hold_s  # s a jam must hold before its flag rises


def run(detector: CongestionDetector, road: Road, seconds: float, fps: float = 2.0, still: bool = False):
    findings = []
    first = road.frame(0.0)
    for i in range(int(seconds * fps)):
        t = i / fps
        (finding,) = detector.detect(first if still else road.frame(t), 1000.0 + t)
        findings.append((t, finding))
    return findings


def judged(findings, after_s: float = 2.0):
    return [f for t, f in findings if t >= after_s and f.ready]


@pytest.mark.parametrize("fps", [1.0, 2.0, 10.0])
def test_empty_road_is_free(fps):
    findings = judged(run(CongestionDetector(), Road(cars_per_lane=0, speed=0.3), 20, fps))
    assert findings and not any(f.active for f in findings)
    assert all(f.level == "free" for f in findings)


@pytest.mark.parametrize("fps", [1.0, 2.0, 10.0, 30.0])
def test_a_few_fast_cars_are_free(fps):
    findings = judged(run(CongestionDetector(), Road(cars_per_lane=1, speed=0.45), 20 if fps < 30 else 8, fps))
    assert findings and not any(f.active for f in findings)
    assert sum(f.level == "free" for f in findings) >= 0.9 * len(findings)


@pytest.mark.parametrize("fps", [1.0, 2.0, 10.0, 30.0])
def test_packed_crawling_road_is_heavy(fps):
    road = Road(cars_per_lane=12, speed=0.01)
    findings = judged(run(CongestionDetector(), road, 20 if fps < 30 else 8, fps), after_s=3)
    heavy = [f for f in findings if f.active]
    assert len(heavy) >= 0.9 * len(findings)
    assert all(f.level == "heavy" and f.measurements["los"] == 5 for f in heavy)
    assert all(f.boxes and 0 < f.confidence <= 1 for f in heavy)
    assert heavy[-1].measurements["occupancy_pct"] >= 23


def test_packed_fast_road_is_not_a_jam():
    findings = judged(run(CongestionDetector(), Road(cars_per_lane=8, speed=0.4), 20))
    assert findings and not any(f.active for f in findings)


def test_stopped_queue_stays_heavy_for_a_minute():
    road = Road(cars_per_lane=12, speed=0.01, stop_after_s=10.0)
    findings = run(CongestionDetector(), road, 75)
    stopped = [f for t, f in findings if t >= 12.0]
    assert all(f.active and f.level == "heavy" for f in stopped)
    assert stopped[-1].measurements["occupancy_pct"] >= stopped[0].measurements["occupancy_pct"] * 0.9


def test_road_texture_learned_at_free_flow_is_not_occupancy_but_a_later_queue_is():
    det = CongestionDetector()
    free = run(det, Road(1, 0.45), 30)
    first, last = free[1][1].measurements["occupancy_pct"], free[-1][1].measurements["occupancy_pct"]
    assert last < first * 0.7  # the dashed markings and the verge edge became road texture
    jam = Road(12, 0.01)  # same seed: same road, now packed and crawling
    later = [det.detect(jam.frame(t / 2), 1100.0 + t / 2)[0] for t in range(60)]
    assert all(f.active for f in later[int(2 * (3 + HOLD)):])


@pytest.mark.parametrize("size", [(320, 240), (1280, 720), (1920, 1080)])
def test_frame_sizes(size):
    w, h = size
    jam = judged(run(CongestionDetector(), Road(12, 0.01, width=w, height=h), 10), after_s=3 + HOLD)
    free = judged(run(CongestionDetector(), Road(1, 0.45, width=w, height=h), 10))
    assert all(f.active for f in jam)
    assert not any(f.active for f in free)


def test_stills_are_judged_from_one_picture():
    jam = run(CongestionDetector(), Road(12, 0.0), 10, still=True)
    empty = run(CongestionDetector(), Road(0, 0.0), 10, still=True)
    assert not jam[0][1].ready  # nothing to compare with yet
    assert all(f.level == "heavy" for _, f in jam[1:])  # seen from the second frame, flagged once it held
    assert all(f.active == (t >= 0.5 + HOLD) for t, f in jam[1:])
    assert not any(f.active for _, f in empty)


def test_regions_limit_what_is_judged():
    road = Road(12, 0.01)
    grass_only = CongestionSettings(regions=[[(0, 0), (1, 0), (1, 0.14), (0, 0.14)]])
    road_only = CongestionSettings(regions=[[(0, 0.2), (1, 0.2), (1, 1), (0, 1)]])
    assert not any(f.active for f in judged(run(CongestionDetector(grass_only), road, 10)))
    assert all(f.active for f in judged(run(CongestionDetector(road_only), road, 10), after_s=3 + HOLD))


def test_sensitivity_shifts_thresholds():
    low, mid, high = (CongestionSettings(sensitivity=s).scaled() for s in (0.0, 0.5, 1.0))
    assert low[0] > mid[0] > high[0] and low[1] > mid[1] > high[1]  # occupancy needed
    assert low[2] < mid[2] < high[2]  # share of fast spots still called stalled
    assert mid == (0.23, 0.17, 0.4)


@pytest.mark.parametrize("occupancy, fast, los", [
    (0.02, 0.0, 0), (0.07, 0.9, 1), (0.15, 0.5, 2), (0.5, 0.95, 2),  # sparse, or any density at free-flow
    (0.2, 0.6, 3), (0.2, 0.3, 4), (0.3, 0.6, 4), (0.3, 0.3, 5), (0.9, 0.0, 5),
])
def test_level_of_service_table(occupancy, fast, los):
    assert level_of_service(occupancy, fast, heavy=0.23, medium=0.17, stalled=0.4) == los


def test_bad_input_is_refused():
    det = CongestionDetector()
    with pytest.raises(ValueError, match="BGR uint8"):
        det.detect(np.zeros((10, 10), np.uint8), 1.0)
    with pytest.raises(ValueError, match="BGR uint8"):
        det.detect(np.zeros((10, 10, 3), np.float32), 1.0)
    det.detect(np.zeros((10, 10, 3), np.uint8), 2.0)
    with pytest.raises(ValueError, match="not after"):
        det.detect(np.zeros((10, 10, 3), np.uint8), 2.0)
    with pytest.raises(ValidationError, match="heavy_occupancy_pct"):
        CongestionSettings(heavy_occupancy_pct=150)
    with pytest.raises(ValidationError, match="extra"):
        CongestionSettings(occupancy=3)


def test_camera_motion_is_not_judged():
    det = CongestionDetector()
    road = Road(12, 0.01)
    det.detect(road.frame(0), 0.0)
    shifted = np.roll(road.frame(0.5), 8, axis=1)  # the pole sways: everything shifts a little
    (finding,) = det.detect(shifted, 0.5)
    assert not finding.ready and not finding.active
    assert finding.measurements["changed_pct"] > 25


def test_resolution_change_starts_over():
    det = CongestionDetector()
    run(det, Road(12, 0.01), 5)
    (finding,) = det.detect(Road(12, 0.01, width=320, height=240).frame(6), 2000.0)
    assert not finding.ready


def test_sample_traffic_scene_is_flagged_and_the_others_are_not():
    sample_media = pytest.importorskip("sample_media")
    try:
        names = sample_media.scene_names()
    except FileNotFoundError:
        pytest.skip("sample scenes not generated")
    flagged = {}
    for name in names:
        det, acts, flagged[name] = CongestionDetector(), [], None
        for t, jpeg in sample_media.load_scene(name):
            frame = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
            acts.append(det.detect(frame, t)[0].active)
            if flagged[name] is None and sum(acts[-5:]) >= 3:
                flagged[name] = t
    onset = sample_media.scene_info("traffic")["onset_s"]
    assert flagged.pop("traffic") is not None
    assert all(t is None for t in flagged.values()), flagged
    assert onset is not None


def test_grey_camera_jam_is_heavy():
    """Monochrome cameras (UCSD-style highway footage) have no colour to lean on."""
    road = Road(12, 0.01)

    class Grey:
        def frame(self, t):
            return cv2.cvtColor(cv2.cvtColor(road.frame(t), cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)

    assert all(f.active for f in judged(run(CongestionDetector(), Grey(), 10), after_s=3 + HOLD))


def _footage_frames(path: Path, still: bool, duration_s: float):
    """The evaluation protocol: clips sampled at 2 frames/s (the first frame at or after each
    0.5 s step, read in order rather than by seeking, which is 4x faster), stills as 20 frames."""
    if still:
        return [cv2.imread(str(path))] * 20
    cap = cv2.VideoCapture(str(path))
    fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
    frames, t, index = [], 0.0, 0
    while t < duration_s and cap.grab():
        if index / fps >= t - 1e-6:
            ok, frame = cap.retrieve()
            if not ok:
                break
            frames.append(frame)
            t += 0.5
        index += 1
    cap.release()
    return frames


def test_footage_regression(footage_dir):
    """The detector alone on the 102-media set (flagged = active in 3 of 5 consecutive frames), with
    the fitted 3 s jam hold. Measured: 4 of 6 congested (the Mumbai auto-rickshaw jam and the
    10 s Kolkata queue are missed; `citywatch evaluate`, which samples the clips by their own
    timestamps, finds the Kolkata one), 1 of 14 free flagged (a dry CCTV still), no empty one."""
    flagged: dict[str, list[str]] = {"congested": [], "medium": [], "free": [], "empty": [], "na": []}
    total: dict[str, int] = dict.fromkeys(flagged, 0)
    with open(footage_dir / "labels.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    for row in rows:
        still = row["frames"] == "1"
        frames = _footage_frames(footage_dir / row["path"], still, 0 if still else float(row["duration_s"]))
        assert frames, row["path"]
        det, acts = CongestionDetector(), []
        for i, frame in enumerate(frames):
            acts.append(det.detect(frame, 1000.0 + 0.5 * i)[0].active)
        total[row["traffic"]] += 1
        if any(sum(acts[max(0, i - 4): i + 1]) >= 3 for i in range(len(acts))):
            flagged[row["traffic"]].append(row["path"])
    assert total["congested"] >= 6 and len(flagged["congested"]) >= total["congested"] - 2, flagged
    assert len(flagged["free"]) <= 1 and flagged["empty"] == [], flagged
    assert len(flagged["na"]) <= 10, flagged["na"]


def test_two_call_lk_is_one_pyramidal_lk():
    """Levels 1-3 on the half-size frames, then level 0, give exactly what one 4-level call gives."""
    from detectors.congestion_features import _CRITERIA, _WINDOW, half_size, pyramid_lk

    road = Road(12, 0.02)
    a, b = (cv2.cvtColor(cv2.resize(road.frame(t), (320, 180), interpolation=cv2.INTER_AREA),
                         cv2.COLOR_BGR2GRAY) for t in (0.0, 0.5))
    rng = np.random.default_rng(3)
    points = rng.uniform([5, 5], [315, 175], (40, 2)).astype(np.float32).reshape(-1, 1, 2)
    one, _, _ = cv2.calcOpticalFlowPyrLK(a, b, points, None, winSize=_WINDOW, maxLevel=3,
                                         criteria=_CRITERIA)
    two = pyramid_lk((a, half_size(a)), (b, half_size(b)), points)
    assert np.array_equal(one, two)
    assert np.abs(two - points).max() > 2  # the cars moved and were followed
