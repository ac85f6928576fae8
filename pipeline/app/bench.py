"""`citywatch bench`: how fast this machine decodes frames and runs the whole per-frame path.

Micro-benchmarks on one core (OpenCV's own thread pool set to 1 thread) over the same synthetic
720p and 1080p JPEGs — the sample scenes rendered up to that size with sensor noise, so files
weigh what camera JPEGs weigh (~100-300 KB):

- ``decode``: a plain full-size decode of each JPEG (``cv2.imdecode``, what any consumer of the
  frame pays: the floor the issue measures against), and the reduced-size decode the worker does
  (:func:`pipeline.processing.worker.decode_for_analysis`: DCT scaling to the detectors' width) for reference;
- ``pipeline``: the worker's per-frame path exactly — its reduced decode, the shrink to the
  analysis width, and :meth:`FrameAnalyzer.analyze` (every detector and the alert policy) — with
  the milliseconds each stage, detector and the policy take;
- detector state per camera: bytes of numpy arrays and Python objects the analyzer holds after
  warm-up.

Each figure is the best of ``repeats`` passes (the least disturbed by other work on a shared
machine). The end-to-end run lives in :mod:`pipeline.app.bench_e2e`.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from pipeline.config.settings import AlertSettings, CameraConfig
from pipeline.frames.decode import decode_frame, shrink_to_width
from pipeline.processing.analysis import FrameAnalyzer
from pipeline.processing.worker import analysis_width

SIZES = {"720p": (1280, 720), "1080p": (1920, 1080)}
MAX_PIXELS = 40_000_000
#: Rounds of interleaved passes in the micro-benchmarks (the best pass of each kind is kept).
REPEATS = 5
JPEG_QUALITY = 85
SENSOR_NOISE = 5.0  # grey levels of Gaussian noise added after upscaling: real-camera grain


def synthetic_jpegs(width: int, height: int, scene: str = "fire", count: int | None = None,
                    seed: int = 1) -> list[tuple[float, bytes]]:
    """``(seconds, JPEG)`` frames of a sample scene re-rendered at ``width`` x ``height``: upscaled,
    with sensor noise, JPEG quality 85. Deterministic for a seed."""
    from sample_media import load_scene

    if width < 16 or height < 16:
        raise ValueError(f"frame size {width}x{height} is too small (at least 16x16)")
    rng = np.random.default_rng(seed)
    frames = load_scene(scene)
    if count is not None:
        if count < 1:
            raise ValueError(f"count must be >= 1, got {count}")
        frames = frames[:count]
    out = []
    for ts, jpeg in frames:
        image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
        image = cv2.resize(image, (width, height), interpolation=cv2.INTER_CUBIC).astype(np.float32)
        image += rng.normal(0.0, SENSOR_NOISE, image.shape).astype(np.float32)
        ok, buf = cv2.imencode(".jpg", np.clip(image, 0, 255).astype(np.uint8),
                               [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        if not ok:
            raise RuntimeError(f"OpenCV could not encode a {width}x{height} JPEG")
        out.append((ts, buf.tobytes()))
    return out


@contextlib.contextmanager
def single_core() -> Iterator[None]:
    """Run the body with OpenCV on one thread (numpy ufuncs are single-threaded already)."""
    before = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        yield
    finally:
        cv2.setNumThreads(before)


def bench_camera(camera_id: str = "bench-cam") -> CameraConfig:
    """A camera with every detector enabled at default settings."""
    return CameraConfig(id=camera_id, name="bench", location={"lat": 0.0, "lon": 0.0, "district": "bench"})


def decode_pass(jpegs: list[bytes], max_width: int | None) -> Callable[[], None]:
    """One pass of :func:`decode_frame` over ``jpegs``: full size without ``max_width``, else the
    cheapest DCT scale still that wide (as the worker decodes)."""
    def run() -> None:
        for data in jpegs:
            decode_frame(data, max_pixels=MAX_PIXELS, max_width=max_width)
    return run


class _Timed:
    """Wraps a callable and adds its run time (seconds) to ``totals[name]``."""

    def __init__(self, fn: Callable, name: str, totals: dict[str, float]) -> None:
        self.fn, self.name, self.totals = fn, name, totals

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return self.fn(*args, **kwargs)
        finally:
            self.totals[self.name] += time.perf_counter() - started


@dataclass
class PipelineResult:
    """Frames/s of decode + analyze, and where each frame's milliseconds went (best pass)."""

    fps: float
    ms_per_frame: dict[str, float] = field(default_factory=dict)
    state_bytes: int = 0


class PipelinePass:
    """Decode as the worker does and run one camera's :class:`FrameAnalyzer` over ``frames``,
    one pass per call; remembers the fastest pass and where its milliseconds went.

    The first call is a warm-up that fills the detectors' history and is not counted; each pass
    continues the scene's time axis, as a camera repeating the clip would.
    """

    def __init__(self, frames: list[tuple[float, bytes]], alerts: AlertSettings | None = None) -> None:
        self.frames = frames
        self.analyzer = FrameAnalyzer(bench_camera(), alerts or AlertSettings())
        self.totals: dict[str, float] = defaultdict(float)
        for detector in self.analyzer.detectors:
            detector.detect = _Timed(detector.detect, type(detector).__name__, self.totals)  # type: ignore[method-assign]
        for verifier in self.analyzer.verifiers:
            verifier.verify = _Timed(verifier.verify, type(verifier).__name__, self.totals)  # type: ignore[method-assign]
        tracker = self.analyzer.tracker
        tracker.observe = _Timed(tracker.observe, "alert policy", self.totals)  # type: ignore[method-assign]
        self._decode = _Timed(decode_frame, "decode", self.totals)
        self._shrink = _Timed(shrink_to_width, "shrink", self.totals)
        self._width = analysis_width(self.analyzer.camera)  # decode_for_analysis, its stages timed apart
        self._span = (frames[-1][0] + 1.0) if frames else 1.0
        self._passes = 0
        self.best: float = float("inf")
        self.best_ms: dict[str, float] = {}

    def __call__(self) -> None:  # what Worker._process does per frame, without the I/O
        self.totals.clear()
        base = self._passes * self._span
        started = time.perf_counter()
        for ts, data in self.frames:
            frame = self._decode(data, max_pixels=MAX_PIXELS, max_width=self._width)
            self.analyzer.analyze(self._shrink(frame, self._width), base + ts)
        elapsed = time.perf_counter() - started
        if self._passes and elapsed < self.best:
            self.best = elapsed
            self.best_ms = {name: 1000.0 * t / len(self.frames) for name, t in self.totals.items()}
        self._passes += 1

    def result(self) -> PipelineResult:
        ms = dict(self.best_ms)
        ms["other"] = max(0.0, 1000.0 * self.best / len(self.frames) - sum(ms.values()))
        return PipelineResult(len(self.frames) / self.best, ms, state_bytes(self.analyzer.detectors))


def interleaved_best(passes: dict[str, Callable[[], None]], repeats: int) -> dict[str, float]:
    """The fastest time (s) of each pass over ``repeats`` rounds that run every pass in turn, so a
    machine that speeds up or slows down during the bench shifts all of them alike."""
    best = {name: float("inf") for name in passes}
    for _ in range(max(1, repeats)):
        for name, run in passes.items():
            started = time.perf_counter()
            run()
            best[name] = min(best[name], time.perf_counter() - started)
    return best


def state_bytes(obj: Any) -> int:
    """Bytes held by ``obj`` and everything it references: numpy buffers (each counted once, views
    charged to their base) plus Python objects. Classes, modules and functions are not followed."""
    seen: set[int] = set()
    total = 0
    stack = [obj]
    skip = (type, type(sys), type(state_bytes), type(len), str, bytes, int, float, bool, type(None))
    while stack:
        item = stack.pop()
        if id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, np.ndarray):
            base = item
            while isinstance(base.base, np.ndarray):
                base = base.base
            if base is not item and id(base) in seen:
                continue
            seen.add(id(base))
            total += base.nbytes + sys.getsizeof(np.empty(0))
            continue
        total += sys.getsizeof(item)
        if isinstance(item, skip):
            continue
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, (list, tuple, set, frozenset)) or type(item).__name__ == "deque":
            stack.extend(item)
        else:
            if hasattr(item, "__dict__"):
                stack.append(vars(item))
            for slot in getattr(type(item), "__slots__", ()):
                if hasattr(item, slot):
                    stack.append(getattr(item, slot))
    return total


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (MB)."""
    import resource

    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # kilobytes on Linux
    return kb / 1024.0


def load_average() -> float:
    """The 1-minute load average (how busy the shared machine was)."""
    return os.getloadavg()[0]


def micro_bench(sizes: dict[str, tuple[int, int]] | None = None, frames: int | None = None,
                repeats: int = REPEATS, on_step: Callable[[str], None] = lambda _: None) -> dict[str, Any]:
    """Decode-only and full-path frames/s per size on one core, their ratio, ms per stage, state.

    ``ratio_<size>`` is the full path's frames/s over a plain full-size decode's (the issue's
    measure: what the pipeline costs against the decode every consumer of the JPEG pays);
    ``ratio_reduced_<size>`` is over the reduced decode the worker itself does (stricter: the
    detectors and policy against only the worker's own decode)."""
    result: dict[str, Any] = {"analysis_width": analysis_width(bench_camera()), "detector_ms": {}}
    state_mb = 0.0
    with single_core():
        for label, (width, height) in (sizes or SIZES).items():
            on_step(f"rendering {label} frames")
            clip = synthetic_jpegs(width, height, count=frames)
            jpegs = [data for _, data in clip]
            result[f"jpeg_kb_{label}"] = round(sum(map(len, jpegs)) / len(jpegs) / 1024, 1)
            on_step(f"decode only, reduced decode and full path {label}, passes interleaved")
            pipe_pass = PipelinePass(clip)
            pipe_pass()  # warm-up: the detectors' history
            best = interleaved_best({"full": decode_pass(jpegs, None),
                                     "reduced": decode_pass(jpegs, result["analysis_width"]),
                                     "pipeline": pipe_pass}, repeats)
            full, reduced = len(jpegs) / best["full"], len(jpegs) / best["reduced"]
            pipe = pipe_pass.result()
            result[f"decode_fps_{label}"] = full
            result[f"decode_reduced_fps_{label}"] = reduced
            result[f"pipeline_fps_{label}"] = pipe.fps
            result[f"ratio_{label}"] = pipe.fps / full
            result[f"ratio_reduced_{label}"] = pipe.fps / reduced
            result["detector_ms"][label] = {k: round(v, 3) for k, v in pipe.ms_per_frame.items()}
            state_mb = max(state_mb, pipe.state_bytes / 1e6)
    result["state_mb_per_camera"] = state_mb
    return result
