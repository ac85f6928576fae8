"""One edge worker's processing cycle: new frames of a camera -> detectors -> incidents -> outbox.

`Worker.process_camera` is the unit the Prefect tasks call. Per camera it lists the keys after
the checkpoint, fetches and decodes each frame (bad input is counted, logged with its reason and
skipped), runs the camera's :class:`FrameAnalyzer`, stores evidence for every incident message,
and commits the alert messages, the new checkpoint and the incident state in ONE transaction of
the :class:`StateStore`. Only then are messages handed to MQTT (`flush`), so a crash at any moment
loses nothing and starts no incident twice.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import zlib
from collections import Counter
from collections.abc import Callable

from pipeline.alerts.incidents import IncidentEvent
from pipeline.config.settings import CameraConfig, Config
from pipeline.frames.keys import FrameKey, InvalidFrameKey, parse_frame_key
from pipeline.frames.store import BadFrame, FrameStoreUnavailable
from pipeline.processing.analysis import FrameAnalyzer
from pipeline.processing.batch import (
    SNAPSHOT_WIDTH,
    BatchResult,
    alert_messages,
    analysis_width,
    analyze_frame,
    count_batch,
    decode_for_analysis,
    snapshot_frame,
)
from pipeline.processing.metrics import WORKERS
from pipeline.processing.ports import AlertPublisher, FrameSource, SnapshotStore
from pipeline.state.cameras import (
    HEALTH_KEY,
    detectors_key,
    dump_detectors,
    health_value,
    load_detectors,
    restore_health,
)
from pipeline.state.lock import StateDirLock
from pipeline.state.store import OutboxMessage, StateStore

__all__ = ["SNAPSHOT_WIDTH", "BatchResult", "Worker", "analysis_width", "decode_for_analysis"]

log = logging.getLogger(__name__)

#: Commit to the state store at least every this many frames within a batch.
COMMIT_EVERY = 50
#: After the object store failed a camera's whole retry budget, other cameras skip it this long
#: (one outage costs one retry budget per cycle, not one per camera).
STORE_PAUSE_S = 5.0


class Worker:
    """Holds the per-camera detector state and the I/O ends (frames, evidence, state, MQTT)."""

    def __init__(self, config: Config, *, frames: FrameSource, evidence: SnapshotStore,
                 state: StateStore, publisher: AlertPublisher, clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.frames = frames
        self.evidence = evidence
        self.state = state
        self.publisher = publisher
        self.clock = clock
        self.health = restore_health(config, state, clock())  # an open outage survives the process
        self._analyzers: dict[str, FrameAnalyzer] = {}
        self._locks: dict[str, threading.Lock] = {c.id: threading.Lock() for c in config.cameras}
        self._last_frame: dict[str, tuple[float, float]] = {}  # camera -> (frame ts, wall time taken)
        self._last_digest: dict[str, tuple[int, int]] = {}  # camera -> size, CRC-32 of its last frame
        self._junk_seen: dict[str, set[str]] = {}  # camera -> non-frame keys after its checkpoint, logged
        self._store_paused_until = 0.0  # monotonic time; the object store is skipped until then
        #: Set whenever a commit puts messages in the outbox (`WatchSession` sends them at once).
        self.outbox_ready = threading.Event()
        self.state_lock: StateDirLock | None = None  # set by `build_worker`
        WORKERS.add(self)  # outbox depth, dead letters and camera lag at every metrics scrape

    def last_frames(self) -> dict[str, tuple[float, float]]:
        """Camera -> (frame time of its newest processed frame, wall time it was processed)."""
        return dict(self._last_frame)

    def release(self) -> None:
        """Free the state dir for another worker (this one must not process frames afterwards)."""
        if self.state_lock is not None:
            self.state_lock.release()

    # -- per-camera state -------------------------------------------------------------------
    def analyzer(self, camera: CameraConfig) -> FrameAnalyzer:
        """The camera's analyzer, its incident and detector state restored from the state store."""
        if camera.id not in self._analyzers:
            analyzer = FrameAnalyzer(camera, self.config.alerts, self.state.tracker_state(camera.id))
            restored = load_detectors(camera, self.state.saved_value(detectors_key(camera.id)))
            if restored is not None:
                analyzer.detectors = restored  # what they learnt in the previous window or process
            self._analyzers[camera.id] = analyzer
        return self._analyzers[camera.id]

    def save_state(self) -> None:
        """Store every camera's detector state and the camera health (:mod:`pipeline.state.cameras`)
        for the next window's process; the flow calls it when a window ends."""
        values = {HEALTH_KEY: health_value(self.health)}
        for camera in self.config.cameras:
            with self._locks[camera.id]:  # never in the middle of a batch
                if camera.id in self._analyzers:
                    values[detectors_key(camera.id)] = dump_detectors(camera, self._analyzers[camera.id].detectors)
        self.state.save_values(values)

    # -- the cycle ----------------------------------------------------------------------------
    def process_camera(self, camera_id: str) -> BatchResult:
        """Process every frame of one camera added since its checkpoint (up to the batch limit)."""
        camera = self.config.camera(camera_id)
        result = BatchResult(camera_id)
        if camera is None:
            result.error = f"camera {camera_id!r} is not in the registry"
            log.error(result.error)
            return result
        if time.monotonic() < self._store_paused_until:
            result.error = "object store unavailable (paused after a failed retry budget)"
            log.debug("camera %s: %s", camera_id, result.error)
            return result
        with self._locks[camera_id]:
            try:
                self._process(camera, result)
                count_batch(result)
            except FrameStoreUnavailable as exc:
                result.error = str(exc)
                self._store_paused_until = time.monotonic() + STORE_PAUSE_S
                log.warning("camera %s: object store unavailable, will retry next cycle: %s", camera_id, exc)
                self._analyzers.pop(camera_id, None)
                self._last_digest.pop(camera_id, None)
            except Exception as exc:  # noqa: BLE001 - one camera's failure must not stop the others
                result.error = f"{type(exc).__name__}: {exc}"
                log.exception("camera %s: batch failed; resuming from its checkpoint next cycle", camera_id)
                # Frames after the last commit will be fed again: rebuild the detectors and the
                # incident state from the last commit so they see them in order.
                self._analyzers.pop(camera_id, None)
                self._last_digest.pop(camera_id, None)
        return result

    def _process(self, camera: CameraConfig, result: BatchResult) -> None:
        w = self.config.worker
        checkpoint, last_fk = self._checkpoint(camera.id)
        listing = self.frames.list_new(camera.id, checkpoint, w.max_frames_per_batch)
        self._report_junk(camera.id, checkpoint, listing.rejected, result)
        if listing.truncated:
            log.warning("camera %s: listing stopped after %d objects outside the key contract; remove "
                        "them from the camera's folder", camera.id, len(listing.rejected))
        analyzer = self.analyzer(camera)
        pending: list[OutboxMessage] = []
        last_key = checkpoint
        last_ts = None if last_fk is None else last_fk.ts
        now = self.clock()
        counts: Counter = Counter()  # persistent counters not yet committed
        health_changed = False
        for key, fk in zip(listing.keys, listing.parsed):
            if fk.ts > now + w.max_future_s:
                # Later keys are later still: leave them (and the checkpoint) until their time comes.
                result.skipped["future_time"] += 1
                log.warning("camera %s: frame %s is stamped %.0f s in the future; held back",
                            camera.id, key, fk.ts - now)
                break
            last_key = key
            reason = self._frame_problem(camera, key, fk.ts, last_ts)
            if reason is None:
                try:
                    data = self.frames.get(key, w.max_frame_bytes)
                except BadFrame as exc:
                    reason = "bad_frame"
                    log.warning("camera %s: skipped frame %s: %s", camera.id, key, exc)
                else:
                    reason, events = analyze_frame(analyzer, camera, key, fk.ts, data, w.max_frame_pixels)
            if reason is None:
                if self._is_repeat(camera.id, data):
                    result.repeated += 1
                    counts["frames_repeated"] += 1
                self._last_frame[camera.id] = (fk.ts, now)
                outage_end = self.health.frame_seen(camera.id, fk.ts, now)
                events += outage_end
                health_changed = health_changed or bool(outage_end)
                if events:
                    snapshot = snapshot_frame(data, camera, key, w.max_frame_pixels)
                    pending.extend(self._messages(camera, events, key, fk.test, snapshot))
                last_ts = fk.ts
                result.frames += 1
                counts["frames_processed"] += 1
            else:
                result.skipped[reason] += 1
                counts["frames_skipped"] += 1
            if len(pending) or (result.frames and result.frames % COMMIT_EVERY == 0):
                result.alerts += self._commit(camera, last_key, pending, analyzer, counts)
                pending = []
        if last_key != checkpoint or counts:
            result.alerts += self._commit(camera, last_key, pending, analyzer, counts)
        result.checkpoint = last_key
        if health_changed:  # an outage ended (committed above): the next process must not end it again
            self.state.save_values({HEALTH_KEY: health_value(self.health)})
        if result.repeated:
            log.info("camera %s: %d frame(s) byte-identical to the previous one (processed: a frozen "
                     "picture is for the obstruction detector to judge)", camera.id, result.repeated)

    def _checkpoint(self, camera_id: str) -> tuple[str | None, FrameKey | None]:
        """The camera's checkpoint and its parsed key. A checkpoint that is no frame key (left on a
        non-frame object by an older version) is dropped with a warning: listing restarts at the
        camera's oldest stored frame rather than staying blind to every frame sorting before it."""
        checkpoint = self.state.checkpoint(camera_id)
        if checkpoint is None:
            return None, None
        try:
            return checkpoint, parse_frame_key(checkpoint)
        except InvalidFrameKey:
            log.warning("camera %s: checkpoint %r is not a frame key; listing its frames from the start",
                        camera_id, checkpoint[:200])
            return None, None

    def _report_junk(self, camera_id: str, checkpoint: str | None, rejected: list[tuple[str, str]],
                     result: BatchResult) -> None:
        """Log and count each object outside the key contract once, however often it is listed
        again (it stays after the checkpoint until a newer frame sorts after it)."""
        seen = {k for k in self._junk_seen.get(camera_id, ()) if checkpoint is None or k > checkpoint}
        for key, reason in rejected:
            if key not in seen:
                seen.add(key)
                result.skipped["bad_key"] += 1
                log.warning("camera %s: skipped object %r: %s", camera_id, key[:200], reason)
        self._junk_seen[camera_id] = seen

    def _is_repeat(self, camera_id: str, data: bytes) -> bool:
        """Whether ``data`` repeats the camera's previous processed frame (remembered from now on):
        same size and CRC-32 (a counter and a log line hang on it, not a decision; CRC-32 costs a
        sixth of a cryptographic hash on a 150 KB frame)."""
        digest = (len(data), zlib.crc32(data))
        repeat = self._last_digest.get(camera_id) == digest
        self._last_digest[camera_id] = digest
        return repeat

    def _frame_problem(self, camera: CameraConfig, key: str, ts: float, last_ts: float | None) -> str | None:
        if last_ts is not None and ts <= last_ts:
            log.warning("camera %s: frame %s is not newer than the last processed one; skipped", camera.id, key)
            return "out_of_order"
        return None

    def _messages(self, camera: CameraConfig, events: list[IncidentEvent], frame_key: str | None,
                  test: bool, frame=None) -> list[OutboxMessage]:
        return alert_messages(self.config, self.evidence, camera, events, frame_key, test, frame)

    def _commit(self, camera: CameraConfig, last_key: str | None, messages: list[OutboxMessage],
                analyzer: FrameAnalyzer, counts: Counter | None = None) -> int:
        """Alerts, checkpoint, incident state and frame counters in one transaction (``counts`` is
        reset once committed)."""
        self.state.commit_batch(camera.id, last_key, messages, analyzer.tracker.to_state(),
                                counters=dict(counts) if counts else None)
        if counts:
            counts.clear()
        if messages:
            self.outbox_ready.set()
        alerts = f"{self.config.mqtt.topic_prefix}/alerts/"  # not "/alerts/" in the topic: the prefix may hold it
        return sum(1 for m in messages if m.topic.startswith(alerts))

    # -- time-driven events ---------------------------------------------------------------------
    def expire(self) -> int:
        """End incidents of cameras whose frames stopped, raise/clear camera_offline; returns alerts queued."""
        now = self.clock()
        queued = 0
        offline: dict[str, list[IncidentEvent]] = {}
        for event in self.health.check(now):
            offline.setdefault(event.camera_id, []).append(event)
        for camera in self.config.cameras:
            with self._locks[camera.id]:
                analyzer = self.analyzer(camera)
                events = analyzer.expire(self._frame_clock(camera.id, now)) + offline.get(camera.id, [])
                if events:
                    messages = self._messages(camera, events, None, self._test_camera(camera.id))
                    self.state.commit_batch(camera.id, self.state.checkpoint(camera.id), messages,
                                            analyzer.tracker.to_state())
                    queued += len(events)
                    self.outbox_ready.set()
        if offline:  # an outage began: the next process must know to end it
            self.state.save_values({HEALTH_KEY: health_value(self.health)})
        return queued

    def _frame_clock(self, camera_id: str, now: float) -> float:
        """Now, on the camera's frame-time axis: its last frame time plus the wall time since it
        was taken. Replayed footage stamped in the past thus ends incidents only after
        ``end_after_s`` of real silence, never merely because its stamps are old."""
        if camera_id not in self._last_frame:
            _, fk = self._checkpoint(camera_id)  # after a restart: count from now on
            self._last_frame[camera_id] = (fk.ts if fk else now, now)
        frame_ts, taken = self._last_frame[camera_id]
        return frame_ts + max(0.0, now - taken)

    def _test_camera(self, camera_id: str) -> bool:
        """Whether the camera's latest frame was test footage (its incidents' ends are test alerts too)."""
        _, fk = self._checkpoint(camera_id)
        return fk is not None and fk.test

    def publish_statuses(self) -> None:
        """Retained `<prefix>/cameras/<id>/status` for every camera."""
        prefix = self.config.mqtt.topic_prefix
        for camera_id, status in self.health.statuses(self.clock()).items():
            status["worker"] = self.config.worker.name  # whose last will speaks for this camera
            self.publisher.publish_status(f"{prefix}/cameras/{camera_id}/status", json.dumps(status).encode())

    def flush(self, timeout_s: float = 2.0) -> int:
        """Hand queued messages to the broker; returns how many it acknowledged."""
        return self.publisher.flush(timeout_s)
