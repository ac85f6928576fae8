"""Building a worker from the config, and the bounded polling loop the watch flow runs.

`WatchSession` owns one :class:`Worker` and runs *slices*: a slice polls its cameras every
``poll_interval_s`` for a few seconds, processes new frames on a small thread pool (OpenCV and
numpy release the GIL, so both cores work), ends incidents of silent cameras, publishes camera
status and flushes the outbox. Between polls it processes a camera as soon as a new-frame notice
names it (:mod:`pipeline.frames.notices`); cameras whose notices arrive are then listed by the
poll only every ``notice_sweep_s``. A sender thread hands alerts to the broker as soon as a camera's
batch commits them, so an alert does not wait for the other cameras of its cycle. The Prefect
flow wraps one task around each slice, so Prefect sees a few tasks per minute, never one per frame.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import cv2

from pipeline.alerts.evidence import EvidenceStore
from pipeline.config.settings import Config
from pipeline.delivery.acks import AckRecorder
from pipeline.delivery.publisher import MqttPublisher
from pipeline.frames.notices import FrameNotices
from pipeline.frames.store import FrameStore, make_minio
from pipeline.processing.metrics import serve_from_env
from pipeline.processing.worker import BatchResult, Worker
from pipeline.state.lock import StateDirLock
from pipeline.state.store import StateStore

log = logging.getLogger(__name__)

#: Cameras processed at once. Twice the cores: while one thread waits for S3 the others decode
#: and detect (OpenCV and numpy release the GIL); `citywatch bench` measured 2 threads well below 4.
THREADS = 4
#: OpenCV's own threads per process while a session runs. The session already works on several
#: cameras at once (and a box runs a process per shard); OpenCV's pool on top only adds threads that
#: spin between small calls: profiled at ~1 ms of CPU per 720p frame in them, for no throughput.
OPENCV_THREADS = 1
#: How long the sender thread waits for the broker's PUBACKs before it looks for new alerts again.
SEND_WAIT_S = 2.0


def build_worker(config: Config) -> Worker:
    """Connect a worker to the object store, its state dir and the broker named in ``config``.

    The worker holds its state dir's lock (:class:`StateDirLock`) until ``worker.release()``:
    a second worker on the same dir raises :class:`StateDirLocked` naming the holder's pid."""
    state_dir = Path(config.worker.state_dir).expanduser()
    lock = StateDirLock(state_dir).acquire(config.worker.lock_wait_s)
    client = make_minio(config.s3)
    frames = FrameStore(client, config.s3.frames_bucket)
    evidence = EvidenceStore(client, config.s3.alerts_bucket, config.s3.presign_expiry_s, config.console.zone())
    state = StateStore(state_dir / "state.db")
    publisher = MqttPublisher(config.mqtt, state, config.worker.name)
    worker = Worker(config, frames=frames, evidence=evidence, state=state, publisher=publisher)
    worker.state_lock = lock
    return worker


@dataclass
class SliceStats:
    """Totals of one slice, returned to the flow as the task result."""

    cycles: int = 0
    frames: int = 0
    alerts: int = 0
    delivered: int = 0
    repeated: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    def add(self, result: BatchResult) -> None:
        self.frames += result.frames
        self.alerts += result.alerts
        self.repeated += result.repeated
        for reason, n in result.skipped.items():
            self.skipped[reason] = self.skipped.get(reason, 0) + n
        if result.error and result.error not in self.errors:
            self.errors.append(result.error)

    def merge(self, other: SliceStats) -> None:
        self.cycles += other.cycles
        self.frames += other.frames
        self.alerts += other.alerts
        self.delivered += other.delivered
        self.repeated += other.repeated
        for reason, n in other.skipped.items():
            self.skipped[reason] = self.skipped.get(reason, 0) + n
        self.errors.extend(e for e in other.errors if e not in self.errors)

    def as_dict(self) -> dict:
        return {"cycles": self.cycles, "frames": self.frames, "alerts": self.alerts,
                "delivered": self.delivered, "repeated": self.repeated, "skipped": self.skipped,
                "errors": self.errors}


class WatchSession:
    """A started worker plus the loop that polls a set of cameras."""

    def __init__(self, config: Config, camera_ids: list[str] | None = None, threads: int = THREADS,
                 worker: Worker | None = None) -> None:
        self.config = config
        self.camera_ids = camera_ids if camera_ids is not None else [c.id for c in config.cameras]
        unknown = [c for c in self.camera_ids if config.camera(c) is None]
        if unknown:
            raise ValueError(f"cameras not in the registry: {', '.join(unknown)}")
        if len(self.camera_ids) != len(config.cameras):
            # A shard's worker owns only its cameras: their health, incidents and statuses.
            mine = set(self.camera_ids)
            config = config.model_copy(update={"cameras": [c for c in config.cameras if c.id in mine]})
            self.config = config
        self._owns_worker = worker is None  # then close() frees the state dir for the next session
        self.worker = worker or build_worker(config)
        self._pool = ThreadPoolExecutor(max_workers=max(1, threads), thread_name_prefix="citywatch")
        self._started = False
        self._acks: AckRecorder | None = None
        self._sender: threading.Thread | None = None
        self._sender_stop = threading.Event()
        self._sent = 0  # acknowledged by the sender thread, not yet counted in a cycle's stats
        self._sent_lock = threading.Lock()
        self._notices: FrameNotices | None = None
        self._last_sweep = float("-inf")

    def start(self) -> WatchSession:
        if not self._started:
            serve_from_env()  # /metrics when CITYWATCH_METRICS_PORT is set (once per process)
            cv2.setNumThreads(OPENCV_THREADS)
            for store in (self.worker.frames, self.worker.evidence):
                try:
                    store.ensure_bucket()
                except Exception as exc:  # noqa: BLE001 - the cycle retries; say why now
                    log.warning("could not ensure bucket %s: %s", getattr(store, "bucket", "?"), exc)
            self.worker.publisher.start()
            self._start_ack_recorder()
            self._start_notices()
            self._sender_stop.clear()
            self._sender = threading.Thread(target=self._send_loop, name="citywatch-sender", daemon=True)
            self._sender.start()
            self._started = True
        return self

    def process(self, camera_ids: list[str]) -> SliceStats:
        """The new frames of ``camera_ids``, on the thread pool."""
        stats = SliceStats()
        for result in self._pool.map(self.worker.process_camera, camera_ids):
            stats.add(result)
        return stats

    def _polled(self) -> list[str]:
        """The cameras this poll lists: all of them at a sweep, else those without fresh notices."""
        sweep_s = self.config.worker.notice_sweep_s
        now = time.monotonic()
        if self._notices is None or now - self._last_sweep >= sweep_s:
            self._last_sweep = now
            return self.camera_ids
        return [c for c in self.camera_ids if not self._notices.fresh(c, sweep_s)]

    def cycle(self) -> SliceStats:
        """One pass: the polled cameras' new frames, expiries, statuses, flush."""
        stats = self.process(self._polled())
        stats.cycles = 1
        stats.alerts += self.worker.expire()
        self.worker.publish_statuses()
        stats.delivered += self.worker.flush(timeout_s=2.0)  # statuses, expiries, what the sender left
        with self._sent_lock:
            stats.delivered, self._sent = stats.delivered + self._sent, 0
        return stats

    def run_slice(self, duration_s: float) -> SliceStats:
        """Cycle for ``duration_s`` seconds, starting a cycle at most every ``poll_interval_s``.

        A cycle that outlasts the interval (a backlog) is followed at once; quicker ones wait, so
        the object store is not asked to list every camera back to back (`citywatch bench`: at
        60 cameras such lists cost S3 more than the frames themselves). While waiting, the
        cameras that new-frame notices name are processed as they come.
        """
        stats = SliceStats()
        deadline = time.monotonic() + duration_s
        while True:
            started = time.monotonic()
            stats.merge(self.cycle())
            now = time.monotonic()
            while (pause := min(started + self.config.worker.poll_interval_s, deadline) - now) > 0:
                if self._notices is None:
                    time.sleep(pause)
                elif due := self._notices.take(pause):
                    stats.merge(self.process(due))
                now = time.monotonic()
            if now >= deadline:
                return stats

    def drain(self, timeout_s: float = 10.0) -> int:
        """Flush until the outbox is empty or ``timeout_s`` passes; returns messages acknowledged."""
        delivered = 0
        deadline = time.monotonic() + timeout_s
        while self.worker.state.outbox_size() and time.monotonic() < deadline:
            acked = self.worker.flush(timeout_s=min(2.0, max(0.1, deadline - time.monotonic())))
            delivered += acked
            if not acked:
                time.sleep(0.2)  # broker down: don't spin
        return delivered

    def _send_loop(self) -> None:
        """Flush the outbox whenever a commit queues messages (broker down: they wait there)."""
        ready = self.worker.outbox_ready
        while not self._sender_stop.is_set():
            if not ready.wait(0.5):
                continue
            ready.clear()
            if self._sender_stop.is_set():
                break
            try:
                acked = self.worker.flush(timeout_s=SEND_WAIT_S)
            except Exception:  # noqa: BLE001 - the cycle's own flush retries; keep the thread alive
                log.exception("sending queued alerts failed; the cycle's flush will retry")
                self._sender_stop.wait(1.0)
                continue
            with self._sent_lock:
                self._sent += acked

    def _stop_sender(self) -> None:
        if self._sender is not None:
            self._sender_stop.set()
            self.worker.outbox_ready.set()  # wake it
            self._sender.join(SEND_WAIT_S + 5)
            self._sender = None

    def _client_id(self, role: str) -> str:
        """This worker's MQTT client id for ``role``, one per camera set (a shard's session)."""
        shard = hashlib.sha1(",".join(sorted(self.camera_ids)).encode()).hexdigest()[:8]
        return f"citywatch-{role}-{self.config.worker.name}-{shard}"

    def _start_notices(self) -> None:
        """Subscribe to new-frame notices for this session's cameras (polling only if that fails)."""
        if not self.config.worker.frame_notices:
            return
        try:
            self._notices = FrameNotices(self.config.mqtt, self._client_id("notices"),
                                         self.config.s3.frames_bucket, self.camera_ids).start()
        except Exception as exc:  # noqa: BLE001 - notices only shorten latency; polling carries on
            log.warning("not listening for new-frame notices (polling every %.1f s): %s",
                        self.config.worker.poll_interval_s, exc)

    def _start_ack_recorder(self) -> None:
        """Record operators' acks (``<prefix>/ack/+``) in the state store; one session per camera set."""
        try:
            recorder = AckRecorder(self.config.mqtt, self._client_id("acks"), self.worker.state.record_ack)
            recorder.start()
            self._acks = recorder
        except Exception as exc:  # noqa: BLE001 - acks are a side channel; never stop the watch
            log.warning("not recording acknowledgements: %s", exc)

    def save_state(self) -> None:
        """Store detector state and camera health for the next window or process (never raises)."""
        try:
            self.worker.save_state()
        except Exception:  # noqa: BLE001 - losing warm-up state must not stop the window's end
            log.exception("could not save the cameras' detector state and health")

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        self.save_state()
        self._stop_sender()
        if self._notices is not None:
            self._notices.stop()
            self._notices = None
        if self._acks is not None:
            self._acks.stop()
            self._acks = None
        if self._started:
            self.worker.publisher.stop()
            self._started = False
        if self._owns_worker:
            self.worker.release()

    def __enter__(self) -> WatchSession:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
