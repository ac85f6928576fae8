"""Clip-level evaluation of the detectors and alert policy against a labels file.

Each listed media file takes a camera frame's production path: sampled at the camera rate by the
ingest reader (a still replayed for :data:`STILL_SECONDS`), JPEG-encoded like ``citywatch ingest``,
decoded straight to the detectors' width like the worker, fed to a fresh :class:`~pipeline.processing.analysis.FrameAnalyzer`.
A clip is *alarmed* for a type when an incident of that type starts; for ``fire`` a smoke incident
counts too (many fires show smoke first); fire-only / smoke-only rows are reported beside it.

``folds="none"`` runs every media with one analyzer factory (default: the shipped one, in-sample
where its models were fitted on this footage); ``folds="source"`` holds out each source (first path
component) in turn: a :class:`Trainer` fits on the others' rows, the held-out media run with that.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import cv2
import numpy as np

from pipeline.app.evaluate.labels import HEADLINE, TASKS, EvaluationError, LabeledMedia, parse_onset, read_labels, truth
from pipeline.app.evaluate.results import LEVEL_RANK, Score, evaluation_json, score, traffic_confusion
from pipeline.config.settings import AlertSettings, CameraConfig, CameraDetectors, WorkerSettings
from pipeline.frames.decode import BadFrame
from pipeline.frames.ingest import IngestError, open_source
from pipeline.processing.worker import decode_for_analysis  # the worker's decode, so frames match the flow's

#: Which media of an evaluation to score.
Subset = Literal["all", "clips", "stills"]

__all__ = ["EPOCH", "HEADLINE", "STILL_SECONDS", "TASKS", "AlarmFrame", "Analyzer", "AnalyzerFactory",
           "Evaluation", "EvaluationError", "LabeledMedia", "MediaResult", "Score", "Trainer",
           "default_analyzer", "evaluate", "parse_onset", "read_labels", "run_media", "score",
           "traffic_confusion", "truth"]

STILL_SECONDS = 10.0
INGEST_JPEG_QUALITY = 90  # what `citywatch ingest` encodes with by default
EPOCH = 1_767_225_600.0  # 2026-01-01T00:00:00Z: frame times of replayed media start here
IN_SAMPLE = "in-sample"


class Analyzer(Protocol):
    def analyze(self, frame: np.ndarray, ts: float) -> tuple[list[Any], list[Any]]: ...


AnalyzerFactory = Callable[[CameraConfig, AlertSettings], Analyzer]


class Trainer(Protocol):
    """Fits whatever the analyzer learns on ``train`` (media paths relative to ``root``) and
    returns the factory that builds analyzers using it."""

    def __call__(self, train: list[LabeledMedia], root: Path) -> AnalyzerFactory: ...


def default_analyzer(camera: CameraConfig, alerts: AlertSettings) -> Analyzer:
    """The flows' analyzer (imported late so the metric code does not need the detectors)."""
    from pipeline.processing.analysis import FrameAnalyzer

    return FrameAnalyzer(camera, alerts)


@dataclass
class AlarmFrame:
    """The frame (as the detectors saw it) on which the media's first incident started, and the
    normalized ``(x, y, w, h)`` boxes of each type that started on it."""

    t_s: float
    image: np.ndarray
    boxes: dict[str, tuple[tuple[float, float, float, float], ...]]


@dataclass
class MediaResult:
    """What happened to one media file: its frames and the first start of each incident type."""

    media: LabeledMedia
    fold: str = IN_SAMPLE  # "in-sample" or the held-out source whose fold ran it
    frames: int = 0
    footage_s: float = 0.0
    process_s: float = 0.0  # worker-side work: reduced decode + detectors + alert policy
    analyze_s: float = 0.0  # detectors + alert policy alone
    first_start_s: dict[str, float] = field(default_factory=dict)
    starts: dict[str, int] = field(default_factory=dict)
    judged: set[str] = field(default_factory=set)  # finding types that were ready at least once
    max_confidence: dict[str, float] = field(default_factory=dict)  # over all findings of a type
    predicted_traffic: str = "not judged"  # heavy / medium / free / not judged
    alarm_frame: AlarmFrame | None = None
    error: str | None = None

    @property
    def source(self) -> str:
        return self.media.source

    def alarm_s(self, task: str) -> float | None:
        """Seconds of footage to the first alarm of ``task``; None if it never alarmed."""
        times = [self.first_start_s[t] for t in TASKS[task] if t in self.first_start_s]
        return min(times) if times else None

    def tta_s(self, task: str) -> float | None:
        """Time to alert: the first alarm of ``task`` minus the labelled onset (0 when none given);
        None unless the media is a positive of ``task`` that alarmed (the onset is its event's)."""
        alarm = self.alarm_s(task)
        if alarm is None or truth(self.media, task) is not True:
            return None
        return round(alarm - (self.media.onset_s or 0.0), 3)


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


def _observe(result: MediaResult, frame: np.ndarray, findings: list[Any], events: list[Any]) -> str | None:
    """Fold one frame's findings and events into ``result``; returns the highest congestion level
    an incident started with or was updated to on this frame."""
    for f in findings:
        if getattr(f, "ready", True):
            result.judged.add(f.type)
        conf = float(getattr(f, "confidence", 0.0))
        result.max_confidence[f.type] = max(result.max_confidence.get(f.type, conf), conf)
    level = None
    started: dict[str, tuple] = {}
    for event in events:
        if event.type == "congestion" and event.state in ("start", "update") and event.level in LEVEL_RANK:
            level = max(level or event.level, event.level, key=LEVEL_RANK.__getitem__)
        if event.state == "start":
            result.starts[event.type] = result.starts.get(event.type, 0) + 1
            result.first_start_s.setdefault(event.type, round(event.frame_ts - EPOCH, 3))
            boxes = tuple(getattr(event, "boxes", ()) or ())
            if not boxes:  # the event carries its finding's boxes; fall back to this frame's finding
                boxes = next((tuple(f.boxes) for f in findings if f.type == event.type), ())
            started[event.type] = boxes
    if started and result.alarm_frame is None:
        t = round(events[0].frame_ts - EPOCH, 3)
        result.alarm_frame = AlarmFrame(t, frame.copy(), started)
    return level


def run_media(media: LabeledMedia, root: Path, fps: float, index: int,
              factory: AnalyzerFactory = default_analyzer, alerts: AlertSettings | None = None, *,
              detectors: CameraDetectors | None = None, fold: str = IN_SAMPLE) -> MediaResult:
    """Replay one media file through a fresh analyzer; errors are recorded, not raised.
    ``detectors`` are the synthetic camera's detector settings (default: the built-in ones)."""
    result = MediaResult(media, fold=fold)
    alerts = alerts or AlertSettings()
    camera = CameraConfig(id=f"eval-{index:04d}", name=media.path[-200:], fps=fps,
                          detectors=detectors or CameraDetectors())
    max_pixels = WorkerSettings().max_frame_pixels
    path = root / media.path
    if not path.exists():
        result.error = "file not found"
        return result
    level: str | None = None
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
            result.process_s += done - began
            result.analyze_s += done - decoded
            result.frames += 1
            last_t = t
            seen = _observe(result, frame, findings, events)
            if seen is not None:
                level = max(level or seen, seen, key=LEVEL_RANK.__getitem__)
        result.footage_s = last_t + 1.0 / fps if result.frames else 0.0
    except (IngestError, BadFrame, cv2.error) as exc:
        result.error = f"unreadable: {exc}"
    if result.frames == 0 and result.error is None:
        result.error = "unreadable: no frame could be decoded"
    result.predicted_traffic = level or ("free" if "congestion" in result.judged else "not judged")
    return result


@dataclass
class Evaluation:
    """The results of one evaluation run (in labels order)."""

    results: list[MediaResult]
    fps: float
    wall_s: float
    folds: Literal["none", "source"] = "none"
    held_out: tuple[str, ...] = ()  # the sources, one fold each, when folds == "source"

    @property
    def mode(self) -> str:
        """How the analyzers were made: what a reader must know before trusting the numbers."""
        if self.folds == "source":
            return f"leave-one-source-out: {len(self.held_out)} folds"
        return "in-sample: shipped models"

    @property
    def evaluated(self) -> list[MediaResult]:
        return [r for r in self.results if r.error is None]

    @property
    def skipped(self) -> list[MediaResult]:
        return [r for r in self.results if r.error is not None]

    def subset(self, kind: Subset) -> list[MediaResult]:
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
        """The ``--json`` document: the three headline tasks over all media, frames, frames/s, the
        fold mode, the traffic confusion table and one entry per media."""
        return evaluation_json(self)


def _fold_factories(rows: list[LabeledMedia], root: Path, trainer: Trainer,
                    on_fold: Callable[[str, int, int], None] | None) -> Iterator[tuple[str, AnalyzerFactory]]:
    """``(held-out source, factory trained without it)`` per source, in labels order."""
    sources = list(dict.fromkeys(m.source for m in rows))
    if len(sources) < 2:
        raise EvaluationError(f"leave-one-source-out folds need at least 2 sources, the labels list {len(sources)}")
    for k, source in enumerate(sources):
        if on_fold:
            on_fold(source, k + 1, len(sources))
        try:
            make = trainer([m for m in rows if m.source != source], root)
        except ValueError as exc:
            raise EvaluationError(f"training the fold without {source} failed: {exc}") from None
        yield source, make


def evaluate(labels: Path, root: Path | None = None, fps: float = 2.0, *,
             factory: AnalyzerFactory = default_analyzer, alerts: AlertSettings | None = None,
             detectors: CameraDetectors | None = None, trainer: Trainer | None = None,
             folds: Literal["none", "source"] = "none",
             on_media: Callable[[int, int, MediaResult], None] | None = None,
             on_fold: Callable[[str, int, int], None] | None = None) -> Evaluation:
    """Run every media file of ``labels`` (paths relative to ``root``, default the labels' folder).

    ``folds="none"``: every media runs with ``factory``. ``folds="source"``: for each source S in
    labels order, ``trainer(rows not from S, root)`` gives the factory S's media run with."""
    if not 0 < fps <= 30:
        raise EvaluationError(f"fps must be > 0 and <= 30, got {fps:g}")
    if folds not in ("none", "source"):
        raise EvaluationError(f"folds must be 'none' or 'source', got {folds!r}")
    rows = read_labels(labels)
    root = Path(root) if root is not None else Path(labels).resolve().parent
    if not root.is_dir():
        raise EvaluationError(f"media root {root} is not a folder")
    began = time.perf_counter()
    results: dict[int, MediaResult] = {}

    def run(i: int, media: LabeledMedia, make: AnalyzerFactory, fold: str) -> None:
        results[i] = run_media(media, root, fps, i, make, alerts, detectors=detectors, fold=fold)
        if on_media:
            on_media(len(results), len(rows), results[i])

    held_out: list[str] = []
    if folds == "none":
        for i, media in enumerate(rows):
            run(i, media, factory, IN_SAMPLE)
    elif trainer is None:
        raise EvaluationError("leave-one-source-out folds (folds='source') need a trainer to fit each fold's models")
    else:
        for source, make in _fold_factories(rows, root, trainer, on_fold):
            held_out.append(source)
            for i, media in enumerate(rows):
                if media.source == source:
                    run(i, media, make, source)
    ordered = [results[i] for i in range(len(rows))]
    return Evaluation(ordered, fps, time.perf_counter() - began, folds, tuple(held_out))
