"""Fakes and media fixtures of the `citywatch evaluate` tests: analyzers that read events off a
frame's colour (no detectors needed), a trainer that records its folds, and small labelled media
written at test time (never footage)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from detectors.base import Finding
from pipeline.alerts.incidents import IncidentEvent

GREY, RED, SMOKE, BLUE, GREEN = (90, 90, 90), (0, 0, 220), (215, 215, 215), (220, 60, 0), (0, 220, 0)
BLACK = (0, 0, 0)


BOX = (0.25, 0.25, 0.5, 0.5)  # where ColourAnalyzer says its evidence is (normalized x, y, w, h)


class ColourAnalyzer:
    """Fake analyzer: a frame's mean colour says which event it shows; an incident of that type
    starts on its second such frame (a debounce), once, with its evidence in :data:`BOX`. Its flood
    finding never says it is ready. Like the real one, it runs no detector the camera disables."""

    def __init__(self, camera, alerts):
        self.camera, self.runs, self.started, self.widths = camera, {}, set(), []

    def analyze(self, frame, ts):
        self.widths.append(frame.shape[1])
        b, g, r = frame.reshape(-1, 3).mean(axis=0)
        kind = ("smoke" if min(b, g, r) > 180 else "fire" if r > 150 > g else "flood" if b > 150 > r
                else "congestion" if g > 150 > r else None)
        enabled = [t for t in ("fire", "smoke", "flood", "congestion") if getattr(self.camera.detectors, t).enabled]
        kind = kind if kind in enabled else None
        events = []
        if kind:
            self.runs[kind] = self.runs.get(kind, 0) + 1
            if self.runs[kind] == 2 and kind not in self.started:
                self.started.add(kind)
                events.append(IncidentEvent(f"{self.camera.id}-{kind}", self.camera.id, kind, "start", 1,
                                            "moderate", 0.9, boxes=(BOX,), frame_ts=ts, started_ts=ts))
        findings = [Finding(t, t == kind, 0.8 if t == kind else 0.1, boxes=(BOX,) if t == kind else (),
                            ready=t != "flood") for t in enabled]
        return findings, events


def video(path: Path, colours: list[tuple[float, tuple]], seconds: float = 4.0, fps: int = 10) -> None:
    """An MJPG clip whose colour changes at the given times: [(from_s, bgr), ...]."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (160, 120))
    for i in range(int(seconds * fps)):
        colour = [c for start, c in colours if i / fps >= start][-1]
        writer.write(np.full((120, 160, 3), colour, np.uint8))
    writer.release()


def still(path: Path, colour: tuple, size=(120, 160)) -> None:
    cv2.imwrite(str(path), np.full(size + (3,), colour, np.uint8))


@pytest.fixture
def media(tmp_path: Path) -> Path:
    """Twelve labelled media (clips, stills, excluded labels, a missing and a broken file)."""
    video(tmp_path / "fire_pos.avi", [(0, GREY), (1.5, RED)])        # fire alarm at 2.0 s
    video(tmp_path / "fire_smoke.avi", [(0, GREY), (0.5, SMOKE)])    # smoke alarm at 1.0 s
    video(tmp_path / "fire_missed.avi", [(0, GREY)])
    still(tmp_path / "neg_false.png", RED)                           # false fire alarm at 0.5 s
    still(tmp_path / "neg_ok.jpg", GREY, (720, 1280))
    still(tmp_path / "ambiguous.jpg", RED)
    still(tmp_path / "flood_pos.jpg", BLUE)
    video(tmp_path / "congested.avi", [(0, GREEN)])
    video(tmp_path / "free.avi", [(0, GREY)])
    video(tmp_path / "medium.avi", [(0, GREEN)])
    (tmp_path / "broken.mp4").write_bytes(b"this is not a video" * 50)
    (tmp_path / "labels.csv").write_text(
        "path,fire,flood,traffic,bytes,description\n"
        "fire_pos.avi,pos,neg,na,1,a\nfire_smoke.avi,pos,neg,na,1,b\nfire_missed.avi,pos,neg,na,1,c\n"
        "neg_false.png,neg_tricky,neg,na,1,d\nneg_ok.jpg,neg,neg_tricky,empty,1,e\n"
        "ambiguous.jpg,ambiguous,neg,na,1,f\nflood_pos.jpg,neg,pos,na,1,g\n"
        "congested.avi,neg,neg,congested,1,h\nfree.avi,neg,neg,free,1,i\nmedium.avi,neg,neg,medium,1,j\n"
        "missing.mp4,pos,pos,congested,1,k\nbroken.mp4,neg,neg,free,1,\"with, comma\"\n")
    return tmp_path




def _event(camera, kind, state, ts, level=None, confidence=0.9):
    return IncidentEvent(f"{camera.id}-{kind}", camera.id, kind, state, 1, "moderate", confidence, level=level,
                         boxes=(BOX,), frame_ts=ts, started_ts=ts)


class TrafficAnalyzer:
    """Fake congestion-only analyzer. Green frames: a queue whose incident starts ``medium`` on the
    2nd frame, is updated to ``heavy`` on the 4th and back to ``medium`` on the 6th. Blue frames: an
    incident that starts ``medium`` and stays. Grey frames: judged, nothing. Black: never ready."""

    def __init__(self, camera, alerts):
        self.camera, self.n = camera, 0

    def analyze(self, frame, ts):
        self.n += 1
        b, g, r = frame.reshape(-1, 3).mean(axis=0)
        events, confidence = [], 0.1 * min(self.n, 9)
        if g > 150 > r:
            level = {2: "medium", 4: "heavy", 6: "medium"}.get(self.n)
            if level:
                events.append(_event(self.camera, "congestion", "start" if self.n == 2 else "update", ts, level))
        elif b > 150 > r and self.n == 2:
            events.append(_event(self.camera, "congestion", "start", ts, "medium"))
        return [Finding("congestion", bool(events), confidence, ready=max(b, g, r) > 40)], events


class RecordingTrainer:
    """Fake trainer: records the paths of each fold's training rows; its factories build
    :class:`ColourAnalyzer` and record ``(fold number, media path)`` for each analyzer made."""

    def __init__(self):
        self.calls: list[list[str]] = []
        self.made: list[tuple[int, str]] = []

    def __call__(self, train, root):
        self.calls.append([m.path for m in train])
        fold = len(self.calls)

        def factory(camera, alerts):
            self.made.append((fold, camera.name))
            return ColourAnalyzer(camera, alerts)

        return factory


@pytest.fixture
def sources(tmp_path: Path) -> Path:
    """Five stills from three sources (first path component), listed interleaved."""
    for name, colour in (("alpha/fire.png", RED), ("beta/grey.jpg", GREY), ("alpha/flood.jpg", BLUE),
                         ("gamma/grey.jpg", GREY), ("beta/fire.png", RED)):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        still(tmp_path / name, colour)
    (tmp_path / "labels.csv").write_text(
        "path,fire,flood,traffic\nalpha/fire.png,pos,neg,na\nbeta/grey.jpg,neg,neg,na\n"
        "alpha/flood.jpg,neg,pos,na\ngamma/grey.jpg,neg,neg,na\nbeta/fire.png,pos,neg,na\n")
    return tmp_path
