"""`citywatch bench`: decode vs full-path frames/s on one core, end-to-end throughput and alert
latency, detector state and worker memory, measured on this machine in one run."""

from __future__ import annotations

import json
import logging
import os
import platform
import time
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from pipeline.app.bench import REPEATS, SIZES, load_average, micro_bench, peak_rss_mb
from pipeline.app.bench_e2e import CAMERA_FPS, CAMERAS, POLL_S, STEADY_AFTER_S, run_e2e
from pipeline.processing.runner import THREADS

TARGETS = {"ratio_720p": (">=", 0.6), "ratio_1080p": (">=", 0.6), "e2e_fps": (">=", 150.0),
           "latency_p95_s": ("<=", 1.0), "worker_cpu_ms_per_frame": ("<=", 5.0),
           "state_mb_per_camera": ("<=", 5.0)}


def run_all(cameras: int, fps: float, seconds: float, repeats: int, frames: int | None, threads: int,
            e2e_size: str, poll_s: float = POLL_S, workers: int = 2, echo=lambda _: None,
            notices: bool = True, quiet_share: float = 0.0) -> dict[str, Any]:
    """Every measurement of the bench as one JSON-able dict (the keys of ``--json``)."""
    report: dict[str, Any] = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                                          "load_1min_start": round(load_average(), 2)},
                              "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    report.update(micro_bench(frames=frames, repeats=repeats, on_step=echo))
    e2e = run_e2e(cameras, fps, seconds, size=SIZES[e2e_size], threads=threads, poll_s=poll_s,
                  workers=workers, notices=notices, quiet_share=quiet_share, on_step=echo)
    report.update({
        "e2e_cameras": cameras, "e2e_fps_per_camera": fps, "e2e_seconds": seconds, "e2e_frame_size": e2e_size,
        "e2e_workers": e2e.workers, "e2e_threads": threads, "e2e_poll_interval_s": poll_s, "e2e_frame_notices": notices,
        "e2e_quiet_share": quiet_share, "e2e_quiet_cameras": e2e.quiet_cameras,
        "e2e_offered_fps": e2e.offered_fps,
        "e2e_put_fps": e2e.put_fps, "e2e_fps": e2e.e2e_fps,
        "e2e_frames_put": e2e.frames_put, "e2e_frames_processed": e2e.frames_processed,
        "e2e_alerts_received": e2e.alerts, "latency_samples": len(e2e.latencies_s),
        "latency_p50_s": e2e.quantile(0.50), "latency_p95_s": e2e.quantile(0.95),
        "worker_cpu_cores": e2e.worker_cpu_cores, "s3_cpu_cores": e2e.s3_cpu_cores,
        "s3_server": "SeaweedFS (weed mini)", "s3_startup_s": e2e.s3_startup_s,
        "s3_cpu_ms_per_frame": 1000.0 * e2e.s3_cpu_cores / e2e.e2e_fps if e2e.e2e_fps else None,
        "cameras_cpu_cores": e2e.cameras_cpu_cores, "broker": e2e.broker, "e2e_errors": e2e.errors,
        "state_mb_per_camera": max(report["state_mb_per_camera"], e2e.state_mb_per_camera),
        "peak_rss_mb": e2e.peak_rss_mb, "process_peak_rss_mb": peak_rss_mb(),
    })
    # Capacity at 1 frame/s per camera. One core of the full per-frame path (decode + detectors +
    # policy), and the worker's whole cost per frame end to end (S3 client, evidence, outbox, MQTT
    # included) spread over every core of this machine, were S3 and the cameras elsewhere.
    cpus = os.cpu_count() or 1
    report["cameras_per_core_at_1fps_720p"] = report["pipeline_fps_720p"]
    worker_ms = 1000.0 * e2e.worker_cpu_cores / e2e.e2e_fps if e2e.e2e_fps else None
    report["worker_cpu_ms_per_frame"] = worker_ms
    split = e2e.cpu_split_ms()
    for i, part in enumerate(("decode", "analysis", "rest")):
        report[f"worker_{part}_cpu_ms_per_frame"] = split[i] if split else None
    report["cameras_per_server_at_1fps"] = cpus * 1000.0 / worker_ms if worker_ms else None
    report["worker_steady_cpu_ms_per_frame"] = e2e.steady_cpu_ms()
    report["e2e_steady_after_s"] = STEADY_AFTER_S
    report["machine"]["load_1min_end"] = round(load_average(), 2)
    return report


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 10 else f"{value:.0f}"
    return str(value)


def _quiet_note(report: dict[str, Any]) -> str:
    quiet = report.get("e2e_quiet_cameras") or 0
    return f", {quiet} of them on the quiet scene" if quiet else ""


def _verdict(key: str, value: Any) -> str:
    if key not in TARGETS or value is None:
        return ""
    op, bound = TARGETS[key]
    ok = value >= bound if op == ">=" else value <= bound
    return f"[green]ok ({op} {bound:g})[/green]" if ok else f"[red]missed ({op} {bound:g})[/red]"


def print_report(report: dict[str, Any], console: Console) -> None:
    """The figures as rich tables: headline with targets, then ms per stage and detector."""
    table = Table(title=f"citywatch bench ({report['machine']['cpus']} CPUs, load "
                        f"{report['machine']['load_1min_start']} -> {report['machine']['load_1min_end']})")
    for col in ("measure", "value", "target"):
        table.add_column(col)
    rows = []
    for size in report["detector_ms"]:
        rows += [(f"decode only, {size} JPEG, full size (frames/s, 1 core)", f"decode_fps_{size}"),
                 (f"  reduced decode as the worker does ({report['analysis_width']} px wide)",
                  f"decode_reduced_fps_{size}"),
                 (f"full path {size}: reduced decode + detectors + alert policy", f"pipeline_fps_{size}"),
                 (f"ratio {size} (full path / decode only)", f"ratio_{size}"),
                 (f"  ratio {size} against the worker's reduced decode", f"ratio_reduced_{size}")]
    rows += [
        (f"end to end: {report['e2e_cameras']} cameras x {report['e2e_fps_per_camera']:g}/s offered, "
         f"{report['e2e_workers']} worker process(es), "
         f"{'new-frame notices' if report.get('e2e_frame_notices') else 'polling only'}"
         f"{_quiet_note(report)}", "e2e_offered_fps"),
        ("frames/s the cameras managed to put", "e2e_put_fps"),
        ("end to end sustained (frames/s)", "e2e_fps"), ("workers' CPU (cores busy)", "worker_cpu_cores"),
        ("S3 server (SeaweedFS, same box) CPU (cores)", "s3_cpu_cores"),
        ("  S3 server CPU per frame: a put and a get (ms)", "s3_cpu_ms_per_frame"),
        ("  S3 server start-up until it answers (s)", "s3_startup_s"),
        ("camera simulator CPU (cores)", "cameras_cpu_cores"),
        ("alert latency p50 (s)", "latency_p50_s"), ("alert latency p95 (s)", "latency_p95_s"),
        ("latency samples (alerts with a timed frame)", "latency_samples"),
        ("worker CPU per frame, end to end (ms)", "worker_cpu_ms_per_frame"),
        ("  of which the reduced decode (ms)", "worker_decode_cpu_ms_per_frame"),
        ("  of which detectors, verifiers and alert policy (ms)", "worker_analysis_cpu_ms_per_frame"),
        ("  the rest: S3 client, state, evidence, outbox, MQTT (ms)", "worker_rest_cpu_ms_per_frame"),
        (f"  after each camera's first {STEADY_AFTER_S:g} s (cold start: scene warm-up) (ms)",
         "worker_steady_cpu_ms_per_frame"),
        ("cameras per server at 1 frame/s (worker CPU, all cores)", "cameras_per_server_at_1fps"),
        ("detector state per camera (MB)", "state_mb_per_camera"), ("peak RSS of a worker process (MB)", "peak_rss_mb")]
    for label, key in rows:
        table.add_row(label, _fmt(report.get(key)), _verdict(key, report.get(key)))
    console.print(table)
    stages = Table(title="milliseconds per frame (1 core, best pass)")
    stages.add_column("stage")
    sizes = list(report["detector_ms"])
    for size in sizes:
        stages.add_column(size, justify="right")
    names = sorted({n for ms in report["detector_ms"].values() for n in ms},
                   key=lambda n: -report["detector_ms"][sizes[0]].get(n, 0))
    for name in names:
        stages.add_row(name, *(f"{report['detector_ms'][s].get(name, 0):.2f}" for s in sizes))
    console.print(stages)
    if report.get("e2e_errors"):
        console.print(f"[yellow]end-to-end errors:[/yellow] {report['e2e_errors']}")


def bench_command(
    json_out: Path | None = typer.Option(None, "--json", help="Also write every figure as JSON here"),
    cameras: int = typer.Option(CAMERAS, "--cameras", min=1, max=2000, help="End to end: simulated cameras"),
    fps: float = typer.Option(CAMERA_FPS, "--fps", min=0.1, max=30.0, help="End to end: frames/s per camera"),
    seconds: float = typer.Option(30.0, "--seconds", min=1.0, max=3600.0, help="End to end: seconds of feeding"),
    repeats: int = typer.Option(REPEATS, "--repeats", min=1, max=50,
                                help="Micro-benchmarks: rounds of interleaved passes (the best of each is kept)"),
    frames: int | None = typer.Option(None, "--frames", min=2,
                                         help="Micro-benchmarks: frames per pass (default: the 56-frame fire scene)"),
    threads: int = typer.Option(THREADS, "--threads", min=1, max=64, help="End to end: the worker's thread pool"),
    e2e_size: str = typer.Option("720p", "--e2e-size", help="End to end: frame size, 720p or 1080p"),
    workers: int = typer.Option(os.cpu_count() or 1, "--workers", min=1, max=64,
                                help="End to end: worker processes (shards of the cameras); default one per core"),
    poll: float = typer.Option(POLL_S, "--poll", min=0.05, max=60.0, help="End to end: the worker's poll_interval_s (its default)"),
    notices: bool = typer.Option(True, "--notices/--no-notices", help="End to end: the cameras announce each "
                                 "put on MQTT and the workers process a camera on its notice (off: polling only)"),
    quiet_share: float = typer.Option(0.0, "--quiet-share", min=0.0, max=1.0,
                                      help="End to end: share of the cameras that play the quiet street scene "
                                      "(no event, as most of a city's cameras) instead of the fire scene"),
) -> None:
    """Measure decode and full-path frames/s (720p, 1080p, one core), end-to-end frames/s and alert
    latency through S3, the worker and MQTT, detector state and worker memory."""
    if e2e_size not in SIZES:
        raise typer.BadParameter(f"must be one of {', '.join(SIZES)}", param_hint="--e2e-size")
    err = Console(stderr=True)
    if not logging.getLogger().isEnabledFor(logging.DEBUG):  # one line per incident x 60 cameras: too many
        for name in ("pipeline.processing.worker", "pipeline.delivery.publisher", "pipeline.processing.runner"):
            logging.getLogger(name).setLevel(logging.WARNING)
    report = run_all(cameras, fps, seconds, repeats, frames, threads, e2e_size, poll, workers,
                     echo=lambda msg: err.print(f"[dim]{msg} ...[/dim]"), notices=notices,
                     quiet_share=quiet_share)
    out = Console() if Console().is_terminal else Console(width=120)
    print_report(report, out)
    if json_out:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        out.print(f"wrote {json_out}")


def register(app: typer.Typer) -> None:
    app.command("bench")(bench_command)
