"""`citywatch bench` on tiny parameters: every JSON key is there and the figures are coherent.
(No timing is asserted: the machine is shared; the bench itself reports against the targets.)"""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from pipeline.app.bench import micro_bench, state_bytes, synthetic_jpegs
from pipeline.app.cli import app
from pipeline.frames.decode import jpeg_dimensions

REQUIRED = ("decode_fps_720p", "pipeline_fps_720p", "ratio_720p", "decode_fps_1080p", "pipeline_fps_1080p",
            "ratio_1080p", "e2e_fps", "latency_p50_s", "latency_p95_s", "state_mb_per_camera", "peak_rss_mb")


def test_synthetic_frames_have_the_size_and_weight_of_camera_jpegs():
    frames = synthetic_jpegs(1280, 720, count=2)
    assert [ts for ts, _ in frames] == [0.0, 0.5]
    for _, jpeg in frames:
        assert jpeg_dimensions(jpeg) == (1280, 720)
        assert 60_000 < len(jpeg) < 450_000
    assert synthetic_jpegs(1280, 720, count=2) == frames, "same seed, same bytes"
    with pytest.raises(ValueError, match="count must be >= 1"):
        synthetic_jpegs(1280, 720, count=0)


def test_state_bytes_counts_arrays_once_and_views_by_their_base():
    big = np.zeros((100, 1000), np.uint8)
    holder = {"a": big, "b": big, "view": big[10:20], "nested": [np.ones(500, np.float64)]}
    total = state_bytes(holder)
    assert 100_000 + 4_000 <= total < 100_000 + 4_000 + 5_000


def test_micro_bench_reports_coherent_figures():
    result = micro_bench(sizes={"720p": (1280, 720)}, frames=4, repeats=1)
    assert result["decode_fps_720p"] > 0 and result["pipeline_fps_720p"] > 0
    assert result["ratio_720p"] == pytest.approx(result["pipeline_fps_720p"] / result["decode_fps_720p"])
    ms = result["detector_ms"]["720p"]
    assert {"decode", "alert policy", "FireDetector", "FloodDetector", "CongestionDetector"} <= set(ms)
    assert all(v >= 0 for v in ms.values())
    # The stages add up to the measured time per frame (the rest is "other").
    assert sum(ms.values()) == pytest.approx(1000 / result["pipeline_fps_720p"], abs=0.01)
    assert 0.05 < result["state_mb_per_camera"] < 50


@pytest.mark.slow
def test_bench_command_writes_every_figure(tmp_path, mqtt_broker):
    out = tmp_path / "bench.json"
    res = CliRunner().invoke(app, ["bench", "--json", str(out), "--cameras", "2", "--fps", "2", "--seconds", "14",
                                   "--frames", "3", "--repeats", "1", "--workers", "2"])
    assert res.exit_code == 0, res.output
    assert "ratio 720p" in res.output
    report = json.loads(out.read_text())
    for key in REQUIRED:
        assert key in report, key
    for size in ("720p", "1080p"):
        assert report[f"ratio_{size}"] == pytest.approx(report[f"pipeline_fps_{size}"] / report[f"decode_fps_{size}"])
    assert report["e2e_frames_put"] == report["e2e_frames_processed"] == 2 * 28
    assert 0 < report["e2e_fps"] <= report["e2e_offered_fps"] * 1.2
    # Both cameras start mid-fire: their fire starts arrive and are timed from the put of their frame
    # (the fire verifier confirms the synthetic fire after ~9 s of frames, once its flames have grown).
    assert report["latency_samples"] >= 2
    assert 0 < report["latency_p50_s"] <= report["latency_p95_s"] < 30
    assert report["peak_rss_mb"] > 50 and report["state_mb_per_camera"] > 0
    assert report["e2e_workers"] == 2 and report["worker_cpu_cores"] > 0
    # the worker's own CPU per frame, split: decode and analysis measured per thread, the rest
    split = [report[f"worker_{part}_cpu_ms_per_frame"] for part in ("decode", "analysis", "rest")]
    assert split[0] > 0 and split[1] > 0
    assert sum(split) == pytest.approx(report["worker_cpu_ms_per_frame"])
    assert "of which the reduced decode" in res.output
    # 14 s of feeding: frames after each camera's first 15 s only if the workers lagged behind
    steady = report["worker_steady_cpu_ms_per_frame"]
    assert (steady is None or steady > 0) and report["e2e_steady_after_s"] == 15
    assert report["e2e_frame_notices"] is True and "new-frame notices" in res.output
    assert not report["e2e_errors"]


def test_worker_decodes_straight_to_the_analysis_width_with_the_same_incidents():
    """The worker decodes at the detectors' width by DCT scaling (a bench finding: 720p decodes to
    320x180 at 1/4 directly). The picture is within a grey level of a 1/2 decode shrunk by area
    averaging, and the fire scene starts the same incidents either way, within a frame (updates on
    material change may shift by a frame or two: smoke samples its model every 0.9 s)."""
    from pipeline.app.bench import bench_camera
    from pipeline.config.settings import AlertSettings
    from pipeline.frames.decode import decode_frame, reduction_for, shrink_to_width
    from pipeline.processing.analysis import FrameAnalyzer
    from pipeline.processing.worker import analysis_width, decode_for_analysis

    camera = bench_camera()
    assert analysis_width(camera) == 320 and reduction_for(1280, 320) == 4 and reduction_for(1920, 320) == 4
    direct, via_half = FrameAnalyzer(camera, AlertSettings()), FrameAnalyzer(camera, AlertSettings())
    events = ([], [])
    for ts, jpeg in synthetic_jpegs(1280, 720):
        small = decode_for_analysis(jpeg, camera, 40_000_000)
        assert small.shape == (180, 320, 3)
        reference = shrink_to_width(decode_frame(jpeg, max_pixels=40_000_000, max_width=640), 320)
        assert np.abs(small.astype(np.int16) - reference).mean() < 1.0
        for analyzer, frame, out in ((direct, small, events[0]), (via_half, reference, events[1])):
            out += [(e.type, e.state, e.frame_ts) for e in analyzer.analyze(frame, ts)[1]]
    starts = [sorted((t, ts) for t, state, ts in run if state == "start") for run in events]
    assert [t for t, _ in starts[0]] == [t for t, _ in starts[1]] and "fire" in {t for t, _ in starts[0]}
    assert all(abs(a[1] - b[1]) <= 0.5 for a, b in zip(*starts))
    _, jpeg = synthetic_jpegs(1920, 1080, count=1)[0]
    assert decode_for_analysis(jpeg, camera, 40_000_000).shape == (180, 320, 3)


def test_shrink_to_width_keeps_narrow_frames_and_rounds_height_like_the_detectors():
    from detectors import working_size
    from pipeline.frames.decode import shrink_to_width

    narrow = np.zeros((240, 300, 3), np.uint8)
    assert shrink_to_width(narrow, 320) is narrow
    odd = np.zeros((541, 963, 3), np.uint8)
    assert shrink_to_width(odd, 320).shape[:2] == working_size(541, 963, 320)


def test_the_worker_cpu_split_shares_the_end_to_end_figure():
    from pipeline.app.bench_e2e import E2EResult

    run = E2EResult(offered_fps=100, e2e_fps=100.0, frames_put=3000, frames_processed=3000, alerts=0,
                    worker_cpu_cores=1.0, worker_cpu_s=30.0, decode_cpu_s=6.0, analysis_cpu_s=15.0)
    assert run.cpu_split_ms() == pytest.approx((2.0, 5.0, 3.0))  # 10 ms a frame: 20 %, 50 %, the rest
    idle = E2EResult(offered_fps=100, e2e_fps=0.0, frames_put=0, frames_processed=0, alerts=0)
    assert idle.cpu_split_ms() is None and idle.steady_cpu_ms() is None
    run.steady_cpu_s, run.steady_frames = 12.0, 1500  # the frames after the cold start
    assert run.steady_cpu_ms() == pytest.approx(8.0)


def test_quiet_cameras_are_the_asked_share_spread_over_the_list():
    from pipeline.app.bench_cameras import quiet_cameras

    assert quiet_cameras(4, 0.0) == [False] * 4 and quiet_cameras(4, 1.0) == [True] * 4
    assert quiet_cameras(10, 0.5) == [False, True] * 5
    spread = quiet_cameras(83, 0.9)
    assert sum(spread) == 75
    fire = [c for c, quiet in enumerate(spread) if not quiet]
    assert max(b - a for a, b in zip(fire, fire[1:])) <= 11, "the fire cameras are spread, not bunched"
    with pytest.raises(ValueError, match="between 0 and 1"):
        quiet_cameras(4, 1.5)


@pytest.mark.slow
def test_cameras_on_the_quiet_scene_are_processed_and_raise_no_alert(mqtt_broker):
    from pipeline.app.bench_e2e import run_e2e

    result = run_e2e(2, 2.0, 14.0, workers=1, quiet_share=1.0, drain_s=10.0)
    assert result.quiet_cameras == 2 and not result.errors
    assert result.frames_put == result.frames_processed == 2 * 28
    # the fire scene alerts within these 14 s (the bench command's test); the quiet street must not
    assert result.alerts == 0 and not result.latencies_s
