"""Clip-level evaluation of the detectors and alert policy against a labels file.

Each listed media file takes a camera frame's production path: sampled at the camera rate by the
ingest reader (a still replayed for :data:`STILL_SECONDS`), JPEG-encoded like ``citywatch ingest``,
decoded straight to the detectors' width like the worker, fed to a fresh :class:`~pipeline.analysis.FrameAnalyzer`.
A clip is *alarmed* for a type when an incident of that type starts; for ``fire`` a smoke incident
counts too (many fires show smoke first); fire-only / smoke-only rows are reported beside it.
"""

from __future__ import annotations

import csv
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Literal, Protocol

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationError

from pipeline.config import AlertSettings, CameraConfig, WorkerSettings, format_validation_error
from pipeline.decode import BadFrame
from pipeline.ingest import IMAGE_SUFFIXES, IngestError, open_source
from pipeline.worker import decode_for_analysis  # the worker's decode, so frames match the flow's

STILL_SECONDS = 10.0
INGEST_JPEG_QUALITY = 90  # what `citywatch ingest` encodes with by default
EPOCH = 1_767_225_600.0  # 2026-01-01T00:00:00Z: frame times of replayed media start here


class EvaluationError(ValueError):
    """A labels file that cannot be evaluated; the message names the file, line and column."""


class LabeledMedia(BaseModel):
    """One row of the labels file (only the columns evaluation needs)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    path: str
    fire: Literal["pos", "neg", "neg_tricky", "ambiguous"]
    flood: Literal["pos", "neg", "neg_tricky", "ambiguous"]
    traffic: Literal["congested", "medium", "free", "empty", "na"]
    line: int = 0

    @property
    def is_still(self) -> bool:
        return Path(self.path).suffix.lower() in IMAGE_SUFFIXES


def read_labels(path: Path) -> list[LabeledMedia]:
    """Parse and validate a labels CSV; raises :class:`EvaluationError` naming what is wrong."""
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise EvaluationError(f"labels file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise EvaluationError(f"labels file {path} cannot be read: {exc}") from None
    reader = csv.DictReader(text.splitlines())
    missing = {"path", "fire", "flood", "traffic"} - set(reader.fieldnames or [])
    if missing:
        raise EvaluationError(f"{path}: header lacks column(s) {sorted(missing)} (has {reader.fieldnames})")
    rows = []
    for row in reader:
        try:
            rows.append(LabeledMedia.model_validate({**row, "line": reader.line_num}))
        except ValidationError as exc:
            raise EvaluationError(f"{path}:{reader.line_num}: {format_validation_error(exc)}") from None
    if not rows:
        raise EvaluationError(f"{path} lists no media")
    return rows


def truth(media: LabeledMedia, task: str) -> bool | None:
    """Whether ``media`` is a positive (True) or negative (False) for ``task``; None = left out."""
    if task == "congestion":
        return {"congested": True, "free": False, "empty": False}.get(media.traffic)
    if task == "congestion_medium":
        return True if media.traffic == "medium" else None
    label = media.flood if task == "flood" else media.fire
    return {"pos": True, "neg": False, "neg_tricky": False}.get(label)


#: Reported task -> incident types whose start alarms it. The first three are the headline.
TASKS: dict[str, tuple[str, ...]] = {
    "fire": ("fire", "smoke"),
    "flood": ("flood",),
    "congestion": ("congestion",),
    "fire_only": ("fire",),
    "smoke_only": ("smoke",),
    "congestion_medium": ("congestion",),
}
HEADLINE = ("fire", "flood", "congestion")


class Analyzer(Protocol):
    def analyze(self, frame: np.ndarray, ts: float) -> tuple[list[Any], list[Any]]: ...


AnalyzerFactory = Callable[[CameraConfig, AlertSettings], Analyzer]


def default_analyzer(camera: CameraConfig, alerts: AlertSettings) -> Analyzer:
    """The flows' analyzer (imported late so the metric code does not need the detectors)."""
    from pipeline.analysis import FrameAnalyzer

    return FrameAnalyzer(camera, alerts)


@dataclass
class MediaResult:
    """What happened to one media file: its frames and the first start of each incident type."""

    media: LabeledMedia
    frames: int = 0
    footage_s: float = 0.0
    process_s: float = 0.0  # worker-side work: reduced decode + detectors + alert policy
    analyze_s: float = 0.0  # detectors + alert policy alone
    first_start_s: dict[str, float] = field(default_factory=dict)
    starts: dict[str, int] = field(default_factory=dict)
    judged: set[str] = field(default_factory=set)  # finding types that were ready at least once
    error: str | None = None

    def alarm_s(self, task: str) -> float | None:
        """Seconds of footage to the first alarm of ``task``; None if it never alarmed."""
        times = [self.first_start_s[t] for t in TASKS[task] if t in self.first_start_s]
        return min(times) if times else None


def media_frames(path: Path, fps: float, still: bool) -> Iterator[tuple[float, np.ndarray]]:
    """``(seconds from the start, BGR frame)`` sampled at ``fps``: a video by its own timestamps, a
    still repeated for :data:`STILL_SECONDS`, a folder of images as frames ``1/fps`` apart."""
    source = open_source(path, fps, duration=STILL_SECONDS if still else None)
    for t, _, image in source.frames:
        yield t, image


def as_camera_sends_it(image: np.ndarray) -> bytes:
    """The JPEG ``citywatch ingest`` would put into the frames bucket for this image."""
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, INGEST_JPEG_QUALITY])
    if not ok:
        raise BadFrame("JPEG encoding failed")
    return buf.tobytes()


def run_media(media: LabeledMedia, root: Path, fps: float, index: int,
              factory: AnalyzerFactory = default_analyzer, alerts: AlertSettings | None = None) -> MediaResult:
    """Replay one media file through a fresh analyzer; errors are recorded, not raised."""
    result = MediaResult(media)
    alerts = alerts or AlertSettings()
    camera = CameraConfig(id=f"eval-{index:04d}", name=media.path[-200:], fps=fps)
    max_pixels = WorkerSettings().max_frame_pixels
    path = root / media.path
    if not path.exists():
        result.error = "file not found"
        return result
    try:
        analyzer = factory(camera, alerts)
        last_t = 0.0
        for t, image in media_frames(path, fps, media.is_still):
            jpeg = as_camera_sends_it(image)
            began = time.perf_counter()
            frame = decode_for_analysis(jpeg, camera, max_pixels)
            decoded = time.perf_counter()
            findings, events = analyzer.analyze(frame, EPOCH + t)
            done = time.perf_counter()
            result.judged.update(f.type for f in findings if getattr(f, "ready", True))
            result.process_s += done - began
            result.analyze_s += done - decoded
            result.frames += 1
            last_t = t
            for event in events:
                if event.state == "start":
                    result.starts[event.type] = result.starts.get(event.type, 0) + 1
                    result.first_start_s.setdefault(event.type, round(event.frame_ts - EPOCH, 3))
        result.footage_s = last_t + 1.0 / fps if result.frames else 0.0
    except (IngestError, BadFrame, cv2.error) as exc:
        result.error = f"unreadable: {exc}"
    if result.frames == 0 and result.error is None:
        result.error = "unreadable: no frame could be decoded"
    return result


@dataclass(frozen=True)
class Score:
    """Clip-level confusion counts and the derived rates for one task over some media."""

    tp: int
    fp: int
    fn: int
    tn: int
    ttd_s: tuple[float, ...]  # time to first alarm of each true positive
    unjudged: int = 0  # of the counted media, those where the detector never said it could judge

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 0.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 0.0

    @property
    def accuracy(self) -> float:
        n = self.tp + self.fp + self.fn + self.tn
        return (self.tp + self.tn) / n if n else 0.0

    def ttd(self, q: float) -> float | None:
        return round(float(np.percentile(self.ttd_s, q)), 3) if self.ttd_s else None

    def as_dict(self) -> dict[str, Any]:
        return {"tp": self.tp, "fp": self.fp, "fn": self.fn, "tn": self.tn,
                "precision": round(self.precision, 4), "recall": round(self.recall, 4),
                "accuracy": round(self.accuracy, 4), "median_ttd_s": self.ttd(50), "p90_ttd_s": self.ttd(90)}


def score(results: list[MediaResult], task: str) -> Score:
    """Clip-level TP/FP/FN/TN of ``task`` over the readable media that have a label for it."""
    tp = fp = fn = tn = unjudged = 0
    ttd: list[float] = []
    for r in results:
        label = truth(r.media, task)
        if r.error or label is None:
            continue
        unjudged += not r.judged.intersection(TASKS[task])
        alarm = r.alarm_s(task)
        if label and alarm is not None:
            tp += 1
            ttd.append(alarm)
        elif label:
            fn += 1
        elif alarm is not None:
            fp += 1
        else:
            tn += 1
    return Score(tp, fp, fn, tn, tuple(ttd), unjudged)


@dataclass
class Evaluation:
    """The results of one evaluation run."""

    results: list[MediaResult]
    fps: float
    wall_s: float

    @property
    def evaluated(self) -> list[MediaResult]:
        return [r for r in self.results if r.error is None]

    @property
    def skipped(self) -> list[MediaResult]:
        return [r for r in self.results if r.error is not None]

    def subset(self, kind: Literal["all", "clips", "stills"]) -> list[MediaResult]:
        if kind == "all":
            return self.evaluated
        return [r for r in self.evaluated if r.media.is_still == (kind == "stills")]

    @property
    def frames(self) -> int:
        return sum(r.frames for r in self.evaluated)

    @property
    def frames_per_s(self) -> float:
        """Frames per second of worker-side work (reduced decode + detectors + alert policy)."""
        busy = sum(r.process_s for r in self.evaluated)
        return self.frames / busy if busy else 0.0

    @property
    def analyze_frames_per_s(self) -> float:
        """Frames per second of the detectors and alert policy alone."""
        busy = sum(r.analyze_s for r in self.evaluated)
        return self.frames / busy if busy else 0.0

    def to_json(self) -> dict[str, Any]:
        """The ``--json`` document: the three headline tasks over all media, frames, frames/s."""
        out: dict[str, Any] = {task: score(self.evaluated, task).as_dict() for task in HEADLINE}
        out["frames"] = self.frames
        out["frames_per_s"] = round(self.frames_per_s, 2)
        return out


def evaluate(labels: Path, root: Path | None = None, fps: float = 2.0, *,
             factory: AnalyzerFactory = default_analyzer, alerts: AlertSettings | None = None,
             on_media: Callable[[int, int, MediaResult], None] | None = None) -> Evaluation:
    """Run every media file of ``labels`` (paths relative to ``root``, default the labels' folder)."""
    if not 0 < fps <= 30:
        raise EvaluationError(f"fps must be > 0 and <= 30, got {fps:g}")
    rows = read_labels(labels)
    root = Path(root) if root is not None else Path(labels).resolve().parent
    if not root.is_dir():
        raise EvaluationError(f"media root {root} is not a folder")
    began = time.perf_counter()
    results = []
    for i, media in enumerate(rows):
        results.append(run_media(media, root, fps, i, factory, alerts))
        if on_media:
            on_media(i + 1, len(rows), results[-1])
    return Evaluation(results, fps, time.perf_counter() - began)
