"""End-to-end part of `citywatch bench`: cameras -> S3 -> WatchSession -> MQTT subscriber.

``N`` simulated cameras (:mod:`pipeline.app.bench_cameras`) put fire-scene JPEGs (a frame sure
to trigger; a share of them, optionally, the quiet scene) into a real S3 server,
SeaweedFS (:class:`~pipeline.app.embedded_s3.SeaweedS3`, its own process on this machine), at ``M``
frames/s each, from a separate process (cameras are elsewhere on a real site) with the
least-privilege ``ingest`` identity; the workers use the ``worker`` identity. The cameras are split into shards,
each watched by a worker process exactly as a watch flow run does (:class:`WatchSession` slices:
list, fetch, decode, detect, alert policy, evidence, outbox, MQTT): one process cannot use two
cores, as the detectors' many small numpy calls hold the GIL between them. This process
subscribes like the operations center. Latency is the receipt time of an alert minus the time
the put of the frame named in its ``frame.key`` was issued.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import statistics
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from pipeline.app.bench import state_bytes, synthetic_jpegs
from pipeline.app.bench_cameras import FeedPlan, quiet_cameras, run_cameras
from pipeline.app.embedded import MosquittoProcess, port_open
from pipeline.app.embedded_s3 import SeaweedS3
from pipeline.config.settings import WorkerSettings, config_from_dict
from pipeline.delivery.mqtt import Subscriber
from pipeline.processing.runner import THREADS, WatchSession

SYSTEM_BROKER = ("127.0.0.1", 1883)
SLICE_S = 1.0
#: Cameras x frames/s fed by default: 166 frames/s, 10 % above the 150 frames/s target, since a
#: run can sustain no more than it is offered.
CAMERAS, CAMERA_FPS = 83, 2.0
#: The workers poll at the worker's own default interval unless told otherwise.
POLL_S = WorkerSettings.model_fields["poll_interval_s"].default
#: Seconds after the first put from which the steady-state CPU per frame is counted: every camera
#: starts cold at once, and its first seconds hold the scene verifier's warm-up scorings (10 s)
#: and the confirmations of a new stream, which a camera running for hours no longer pays.
STEADY_AFTER_S = 15.0


@dataclass
class E2EResult:
    """Throughput, alert latency and memory of one end-to-end run."""

    offered_fps: float
    e2e_fps: float
    frames_put: int
    frames_processed: int
    alerts: int
    latencies_s: list[float] = field(default_factory=list)
    peak_rss_mb: float = 0.0
    state_mb_per_camera: float = 0.0
    worker_cpu_cores: float = 0.0
    s3_cpu_cores: float = 0.0
    s3_startup_s: float = 0.0
    cameras_cpu_cores: float = 0.0
    broker: str = ""
    workers: int = 1
    quiet_cameras: int = 0  # cameras playing the quiet scene (no event) instead of the fire scene
    put_fps: float = 0.0  # the rate the cameras managed to put (below offered when S3 lags)
    #: Workers' CPU seconds over the timed window: all of it (what ``worker_cpu_cores`` spreads over
    #: the span), and of it the reduced decode and the analysis (detectors, verifiers, alert
    #: policy) from the worker's own per-thread counters; the rest is the S3 client, state,
    #: evidence, outbox and MQTT.
    worker_cpu_s: float = 0.0
    decode_cpu_s: float = 0.0
    analysis_cpu_s: float = 0.0
    #: The same after :data:`STEADY_AFTER_S` (0 when the run is too short to have that part)
    steady_cpu_s: float = 0.0
    steady_frames: int = 0
    errors: list[str] = field(default_factory=list)

    def cpu_split_ms(self) -> tuple[float, float, float] | None:
        """Worker CPU ms per frame end to end (``worker_cpu_cores`` / ``e2e_fps``) split into
        decode, analysis and the rest by their shares of the measured CPU seconds."""
        if not self.e2e_fps or self.worker_cpu_s <= 0:
            return None
        total = 1000.0 * self.worker_cpu_cores / self.e2e_fps
        decode, analysis = (total * s / self.worker_cpu_s for s in (self.decode_cpu_s, self.analysis_cpu_s))
        return decode, analysis, total - decode - analysis

    def steady_cpu_ms(self) -> float | None:
        """Worker CPU ms per frame processed after :data:`STEADY_AFTER_S` (None: none were)."""
        return 1000.0 * self.steady_cpu_s / self.steady_frames if self.steady_frames else None

    def quantile(self, q: float) -> float | None:
        if not self.latencies_s:
            return None
        if len(self.latencies_s) == 1:
            return self.latencies_s[0]
        return statistics.quantiles(self.latencies_s, n=100, method="inclusive")[round(q * 100) - 1]


class _RssSampler(threading.Thread):
    def __init__(self, period_s: float = 0.2) -> None:
        super().__init__(daemon=True, name="rss-sampler")
        self.proc, self.period_s, self.peak = psutil.Process(), period_s, 0
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            self.peak = max(self.peak, self.proc.memory_info().rss)
            self._stop_event.wait(self.period_s)

    def stop(self) -> int:
        self._stop_event.set()
        self.join()
        return max(self.peak, self.proc.memory_info().rss)


@dataclass
class WorkerPlan:
    """One worker process: a shard of the cameras, as one watch flow run on the edge server."""

    config: dict
    cameras: list[str]
    threads: int


def _work(plan: WorkerPlan, conn: Any) -> None:  # child process: one shard's worker
    config = config_from_dict(plan.config, env={})
    sampler = _RssSampler()
    sampler.start()
    errors: list[str] = []
    with WatchSession(config, plan.cameras, threads=plan.threads) as session:
        done: list[tuple[float, int]] = []  # (when a batch with frames was done, its frames)
        process_camera = session.worker.process_camera

        def timed_process_camera(camera_id: str):  # when each batch was done, to the millisecond
            batch = process_camera(camera_id)
            if batch.frames:
                done.append((time.time(), batch.frames))
            return batch

        session.worker.process_camera = timed_process_camera  # type: ignore[method-assign]
        conn.send("ready")
        expected, deadline, steady_at = conn.recv()
        cpu0, stages0, processed = _cpu(None), _stage_cpu(), 0
        steady: tuple[float, int] | None = None  # (CPU s, frames processed) when steady_at passed
        while time.time() < deadline and processed < expected:
            if steady is None and time.time() >= steady_at:
                steady = (_cpu(None), processed)
            stats = session.run_slice(SLICE_S)  # the watch flow's loop, in short slices
            processed += stats.frames
            errors.extend(e for e in stats.errors if e not in errors)
        cpu1 = _cpu(None)
        busy = cpu1 - cpu0
        steady_cpu, steady_frames = (cpu1 - steady[0], processed - steady[1]) if steady else (0.0, 0)
        stages = {k: v - stages0[k] for k, v in _stage_cpu().items()}
        session.drain(10)
        state = max((state_bytes(a.detectors) for a in session.worker._analyzers.values()), default=0)
    done.sort()
    conn.send({"processed": processed, "first_done_at": done[0][0] if done else 0.0,
               "done_at": done[-1][0] if done else 0.0,
               "after_first": sum(n for _, n in done[1:]), "cpu_s": busy, "stage_cpu_s": stages,
               "steady_cpu_s": steady_cpu, "steady_frames": steady_frames,
               "state_mb": state / 1e6,
               "peak_rss_mb": sampler.stop() / 2**20, "errors": errors})


def _stage_cpu() -> dict[str, float]:
    """This process's CPU seconds so far in the decode and the analysis (the worker's counters)."""
    from prometheus_client import REGISTRY

    return {stage: REGISTRY.get_sample_value("citywatch_frame_stage_cpu_seconds_total", {"stage": stage}) or 0.0
            for stage in ("decode", "detectors")}


def run_e2e(cameras: int, fps: float, seconds: float, *, size: tuple[int, int] = (1280, 720),
            workers: int = 2, threads: int = THREADS, poll_s: float = POLL_S, first_frame: int = 10,
            drain_s: float = 30.0, notices: bool = True, quiet_share: float = 0.0,
            on_step: Callable[[str], None] = lambda _: None) -> E2EResult:
    """Feed ``cameras`` x ``fps`` frames/s for ``seconds`` and measure what reaches the subscriber.

    The cameras are split into ``workers`` shards, each watched by its own process (one flow run
    per shard, as on an edge server with a shard per core). Camera ``c`` plays the 2 frames/s
    fire scene from frame ``first_frame + 3c`` (frame 10 is the fire's onset), looping; a fresh
    detector judges fire after about 5 s of frames. With ``notices`` the cameras announce each put
    on MQTT (as `citywatch ingest` does) and the workers process a camera on its notice. A
    ``quiet_share`` of the cameras plays the quiet street scene instead (no event: what most
    cameras of a city show; see :mod:`pipeline.app.bench_cameras`)."""
    if cameras < 1 or fps <= 0 or seconds <= 0 or workers < 1:
        raise ValueError(f"need cameras >= 1, fps > 0, seconds > 0, workers >= 1 "
                         f"(got {cameras}, {fps}, {seconds}, {workers})")
    ctx = mp.get_context("spawn")
    with tempfile.TemporaryDirectory(prefix="citywatch-bench-") as tmp, _Broker() as broker_url:
        work = Path(tmp)
        on_step(f"rendering {size[0]}x{size[1]} fire-scene frames")
        files = _write_frames(work / "fire", synthetic_jpegs(*size))
        quiet = quiet_cameras(cameras, quiet_share)
        quiet_files = _write_frames(work / "quiet", synthetic_jpegs(*size, scene="quiet")) if any(quiet) else []
        with SeaweedS3(workdir=work / "s3") as server:
            server.client().make_bucket("frames")
            server.client().make_bucket("alerts")
            on_step(f"SeaweedFS S3 at {server.url} (ready in {server.startup_s:.2f} s)")
            prefix, name = f"bench-{uuid.uuid4().hex[:8]}", f"bench-{uuid.uuid4().hex[:6]}"
            ids = [f"bench-{i:03d}" for i in range(cameras)]
            worker, ingest = server.identities["worker"], server.identities["ingest"]
            s3 = {"url": server.url, "access_key": worker.access_key, "secret_key": worker.secret_key,
                  "frames_bucket": "frames", "alerts_bucket": "alerts"}
            shards = []
            mqtt = {"url": broker_url, "topic_prefix": prefix}
            for k in range(min(workers, cameras)):
                config = {"s3": s3, "mqtt": mqtt,
                          "worker": {"name": f"{name}-{k}", "state_dir": str(work / f"state-{k}"),
                                     "poll_interval_s": poll_s, "max_frames_per_batch": 500,
                                     "frame_notices": notices},
                          "cameras": [{"id": c, "name": c, "location": {"lat": 0, "lon": 0}} for c in ids]}
                shards.append(WorkerPlan(config, ids[k::workers], threads))
            feed_s3 = {**s3, "access_key": ingest.access_key, "secret_key": ingest.secret_key}
            plan = FeedPlan(feed_s3, ids, fps, seconds, files, 0.0, str(work / "puts.json"), first_frame,
                            quiet_files=quiet_files, quiet=quiet, mqtt=mqtt if notices else None)
            result = _measure(config_from_dict(shards[0].config, env={}), shards, plan, ctx, server.pid,
                              drain_s, on_step)
            result.broker = broker_url
            result.quiet_cameras = sum(quiet)
            result.s3_startup_s = server.startup_s or 0.0
            return result


def _write_frames(folder: Path, frames: list[tuple[float, bytes]]) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    files = [str(folder / f"{i:04d}.jpg") for i in range(len(frames))]
    for file, (_, jpeg) in zip(files, frames):
        Path(file).write_bytes(jpeg)
    return files


def _cpu(pid: int | None) -> float:
    """CPU seconds (user + system) a process (None: this one) has used so far; 0 once it is gone."""
    try:
        t = psutil.Process(pid).cpu_times()
        return t.user + t.system
    except (psutil.Error, ValueError):
        return 0.0


def _measure(config, shards: list[WorkerPlan], plan: FeedPlan, ctx, s3_pid: int | None, drain_s: float,
             on_step: Callable[[str], None]) -> E2EResult:
    received: list[tuple[float, dict]] = []

    def on_message(topic: str, payload: bytes, retain: bool) -> None:
        received.append((time.time(), json.loads(payload)))

    prefix = config.mqtt.topic_prefix
    ids, fps, seconds = plan.cameras, plan.fps, plan.seconds
    result = E2EResult(offered_fps=len(ids) * fps, e2e_fps=0.0, frames_put=0, frames_processed=0, alerts=0)
    on_step(f"starting {len(shards)} worker process(es)")
    procs, conns = [], []
    with Subscriber(config.mqtt, f"{prefix}-ioc", [f"{prefix}/alerts/#"], on_message) as sub:
        if not sub.wait_subscribed(10):
            raise RuntimeError(f"could not subscribe to {prefix}/alerts/#: {sub.refusal or 'no answer'}")
        try:
            for shard in shards:
                ours, theirs = ctx.Pipe()
                procs.append(ctx.Process(target=_work, args=(shard, theirs), daemon=True))
                procs[-1].start()
                conns.append(ours)
            for conn in conns:
                if not conn.poll(120) or conn.recv() != "ready":
                    raise RuntimeError("a worker process did not start within 120 s")
            plan.start_at = time.time() + 1.0
            feeder = ctx.Process(target=run_cameras, args=(plan,), daemon=True)
            on_step(f"feeding {len(ids)} cameras x {fps:g} frames/s for {seconds:g} s")
            feeder.start()
            s3_cpu0, cam_cpu0 = _cpu(s3_pid), _cpu(feeder.pid)
            deadline = plan.start_at + seconds + drain_s
            for conn, shard in zip(conns, shards):
                conn.send((len(shard.cameras) * int(seconds * fps), deadline, plan.start_at + STEADY_AFTER_S))
            reports: list[Any] = [conn.recv() if conn.poll(seconds + drain_s + 120) else None for conn in conns]
            s3_cpu1, cam_cpu1 = _cpu(s3_pid), _cpu(feeder.pid)
            feeder.join(seconds + 60)
            time.sleep(0.5)  # last PUBACKed messages on their way to the subscriber
        finally:
            for proc in procs:
                proc.join(10)
                if proc.is_alive():
                    proc.kill()
    if any(r is None for r in reports):
        result.errors.append("a worker process gave no report")
    reports = [r for r in reports if r]
    span = max(1e-6, max([r["done_at"] for r in reports] + [plan.start_at]) - plan.start_at)
    result.s3_cpu_cores = (s3_cpu1 - s3_cpu0) / span
    result.cameras_cpu_cores = (cam_cpu1 - cam_cpu0) / span
    result.worker_cpu_s = sum(r["cpu_s"] for r in reports)
    result.worker_cpu_cores = result.worker_cpu_s / span
    result.decode_cpu_s = sum(r["stage_cpu_s"]["decode"] for r in reports)
    result.analysis_cpu_s = sum(r["stage_cpu_s"]["detectors"] for r in reports)
    result.steady_cpu_s = sum(r["steady_cpu_s"] for r in reports)
    result.steady_frames = sum(r["steady_frames"] for r in reports)
    result.state_mb_per_camera = max((r["state_mb"] for r in reports), default=0.0)
    result.peak_rss_mb = max((r["peak_rss_mb"] for r in reports), default=0.0)
    result.workers = len(shards)
    for r in reports:
        result.errors.extend(e for e in r["errors"] if e not in result.errors)
    out = Path(plan.out_file)
    feed: dict[str, Any] = (json.loads(out.read_text()) if out.exists()
                            else {"puts": {}, "errors": ["camera process died"]})
    result.errors.extend(feed["errors"])
    puts = feed["puts"]
    result.frames_put, result.frames_processed = len(puts), sum(r["processed"] for r in reports)
    # Sustained: each worker's rate of completing frames between its first and its last batch
    # done (the first batch's frames are not counted: they were done before the timed span
    # started), summed over the workers. Equal to the offered rate while the workers keep up;
    # their capacity when they do not.
    result.e2e_fps = sum(r["after_first"] / (r["done_at"] - r["first_done_at"])
                         for r in reports if r["done_at"] > r["first_done_at"])
    if feed.get("ended"):
        result.put_fps = result.frames_put / max(1e-6, feed["ended"] - plan.start_at)
    alerts = [(t, a) for t, a in received if a.get("frame") and a["frame"].get("key") in puts]
    result.alerts = len(received)
    result.latencies_s = sorted(t - puts[a["frame"]["key"]] for t, a in alerts)
    return result


class _Broker:
    """The machine's Mosquitto at 127.0.0.1:1883 when it runs, else a private one for the run."""

    def __enter__(self) -> str:
        self._own = None
        if port_open(*SYSTEM_BROKER):
            return f"mqtt://{SYSTEM_BROKER[0]}:{SYSTEM_BROKER[1]}"
        self._own = MosquittoProcess().start()
        return self._own.url

    def __exit__(self, *exc: object) -> None:
        if self._own is not None:
            self._own.stop()
