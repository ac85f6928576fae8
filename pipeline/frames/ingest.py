"""Replay media into the frame store the way a camera would: ``citywatch ingest`` without the CLI.

A source is a video file, a folder of images (sorted by name), a single image (one frame, or a
static scene for ``duration`` seconds) or a live stream URL (RTSP/HTTP, read with
``cv2.VideoCapture``). Frames are sampled at ``fps``, stamped ``start`` + media time, encoded as
JPEG and put under the object-key contract. ``speed`` paces uploads at that multiple of media
time (1 = real time); ``None`` uploads as fast as possible. Live streams are paced by the stream.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import cv2
import numpy as np

from pipeline.frames.keys import frame_key, validate_camera_id
from pipeline.frames.store import FrameStore

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})
MAX_FPS = 30.0
ProgressCallback = Callable[[int, "int | None", str], None]


class IngestError(ValueError):
    """A source or option that cannot be ingested; the message says what is wrong."""


@dataclass
class IngestResult:
    """What one ingest run put into the bucket."""

    camera_id: str
    frames: int = 0
    bytes: int = 0
    elapsed_s: float = 0.0
    first_key: str | None = None
    last_key: str | None = None
    skipped: list[tuple[str, str]] = field(default_factory=list)
    interrupted: bool = False


@dataclass
class _Source:
    frames: Generator[tuple[float, str, np.ndarray], None, None]  # (media seconds, label, BGR image)
    expected: int | None
    live: bool = False


def is_stream_url(source: str) -> bool:
    return "://" in source and source.split("://", 1)[0].lower() in {"rtsp", "rtsps", "http", "https", "rtmp", "udp", "tcp"}


def redact(source: str) -> str:
    """``source`` with any ``user:password@`` removed, for messages and logs."""
    if not is_stream_url(source):
        return source
    scheme, rest = source.split("://", 1)
    host, slash, path = rest.partition("/")
    return f"{scheme}://{host.rsplit('@', 1)[-1]}{slash}{path}"


def _open_capture(source: str) -> cv2.VideoCapture:
    cap = cv2.VideoCapture(source)
    if not cap.isOpened():
        cap.release()
        raise IngestError(f"cannot open {redact(source)!r} as video (unsupported codec, bad file or unreachable stream)")
    return cap


def _video_source(path: str, fps: float, duration: float | None) -> _Source:
    cap = _open_capture(path)
    reported = cap.get(cv2.CAP_PROP_FPS)
    native = reported if 0 < reported < 1000 else None
    count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
    expected = None
    if native and count > 0:
        length = count / native if duration is None else min(duration, count / native)
        expected = max(1, int(length * min(fps, native) + 0.999))

    def frames() -> Generator[tuple[float, str, np.ndarray], None, None]:
        index, next_t, step = 0, 0.0, 1.0 / fps
        try:
            while cap.grab():
                t = index / native if native else cap.get(cv2.CAP_PROP_POS_MSEC) / 1000.0
                index += 1
                if duration is not None and t >= duration:
                    break
                if t + 1e-6 < next_t:
                    continue
                ok, image = cap.retrieve()
                if ok and image is not None:
                    yield t, f"{Path(path).name}@{t:.3f}s", image
                while next_t <= t + 1e-6:
                    next_t += step
        finally:
            cap.release()
    return _Source(frames(), expected)


def _stream_source(url: str, fps: float, duration: float | None, clock: Callable[[], float]) -> _Source:
    cap = _open_capture(url)

    def frames() -> Generator[tuple[float, str, np.ndarray], None, None]:
        t0, next_t, step = clock(), 0.0, 1.0 / fps
        try:
            while True:
                ok, image = cap.read()  # read every frame so the capture buffer never lags
                t = clock() - t0
                if not ok or image is None:
                    log.warning("stream %s ended after %.1f s", redact(url), t)
                    return
                if duration is not None and t >= duration:
                    return
                if t + 1e-6 >= next_t:
                    yield t, f"stream@{t:.3f}s", image
                    while next_t <= t:
                        next_t += step
        finally:
            cap.release()
    expected = int(duration * fps) if duration else None
    return _Source(frames(), expected, live=True)


def _folder_source(folder: Path, fps: float, skipped: list[tuple[str, str]]) -> _Source:
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise IngestError(f"folder {folder} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")

    def frames() -> Generator[tuple[float, str, np.ndarray], None, None]:
        t = 0.0
        for path in files:
            image = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if image is None:
                log.warning("skipping %s: not a readable image", path.name)
                skipped.append((path.name, "not a readable image"))
                continue
            yield t, path.name, image
            t += 1.0 / fps
    return _Source(frames(), len(files))


def _image_source(path: Path, fps: float, duration: float | None) -> _Source:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise IngestError(f"{path} is not a readable image")
    count = 1 if duration is None else max(1, int(duration * fps))
    return _Source(((i / fps, path.name, image) for i in range(count)), count)


def open_source(source: str | Path, fps: float, duration: float | None = None,
                skipped: list[tuple[str, str]] | None = None,
                clock: Callable[[], float] = time.monotonic) -> _Source:
    """Pick the reader for ``source``: stream URL, folder, image file or video file."""
    text = str(source)
    if is_stream_url(text):
        return _stream_source(text, fps, duration, clock)
    path = Path(text)
    if not path.exists():
        raise IngestError(f"source {text!r} does not exist (expected a video, image, folder or stream URL)")
    if path.is_dir():
        if duration is not None:
            raise IngestError("--duration applies to a single image or a stream, not a folder")
        return _folder_source(path, fps, skipped if skipped is not None else [])
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return _image_source(path, fps, duration)
    return _video_source(text, fps, duration)


def ingest(source: str | Path, camera_id: str, store: FrameStore, fps: float = 2.0,
           speed: float | None = None, test: bool = False, start: datetime | None = None, *,
           duration: float | None = None, jpeg_quality: int = 90,
           on_frame: ProgressCallback | None = None,
           clock: Callable[[], float] = time.monotonic,
           sleep: Callable[[float], None] = time.sleep) -> IngestResult:
    """Put the frames of ``source`` into ``store`` as camera ``camera_id``; see the module doc.

    ``on_frame(done, expected, key)`` is called after each upload (``expected`` may be None).
    Ctrl-C stops the run cleanly with ``interrupted=True``.
    """
    validate_camera_id(camera_id)
    if not 0 < fps <= MAX_FPS:
        raise IngestError(f"fps must be > 0 and <= {MAX_FPS:g}, got {fps:g}")
    if speed is not None and speed <= 0:
        raise IngestError(f"speed must be > 0, got {speed:g}")
    if duration is not None and duration <= 0:
        raise IngestError(f"duration must be > 0 seconds, got {duration:g}")
    if not 1 <= jpeg_quality <= 100:
        raise IngestError(f"JPEG quality must be 1..100, got {jpeg_quality}")
    start = start or datetime.now(UTC)
    if start.tzinfo is None:
        raise IngestError("start time must carry a timezone (e.g. 2026-11-22T20:00:00Z)")
    result = IngestResult(camera_id=camera_id)
    src = open_source(source, fps, duration, result.skipped, clock)
    store.ensure_bucket()
    began = clock()
    try:
        for media_s, label, image in src.frames:
            when = start + timedelta(seconds=media_s)
            if result.last_key is not None and frame_key(camera_id, when, test=test) <= result.last_key:
                result.skipped.append((label, "same or earlier millisecond as the previous frame"))
                continue
            ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality])
            if not ok:
                result.skipped.append((label, "JPEG encoding failed"))
                continue
            if speed is not None and not src.live:
                wait = began + media_s / speed - clock()
                if wait > 0:
                    sleep(wait)
            data = buf.tobytes()
            key = store.put_frame(camera_id, when, data, test=test)
            result.frames += 1
            result.bytes += len(data)
            result.first_key = result.first_key or key
            result.last_key = key
            if on_frame is not None:
                on_frame(result.frames, src.expected, key)
    except KeyboardInterrupt:
        result.interrupted = True
    finally:
        result.elapsed_s = clock() - began
        src.frames.close()  # releases the capture at once
    if result.frames == 0 and not result.interrupted:
        raise IngestError(f"no frame could be read from {redact(str(source))!r}")
    return result
