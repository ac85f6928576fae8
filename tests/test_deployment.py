"""End to end on this machine: a real Prefect server, deployments from deploy/prefect.yaml, two real
process workers (one per shard queue), frames in SeaweedFS's S3 becoming alerts on Mosquitto.

- two shards, two workers: every camera is processed by exactly one worker (its shard's), each
  incident arrives once, checkpoints live only in the owning worker's state;
- a worker killed mid-run (process tree, like a box losing power): after restart its shard's next
  run resumes from the checkpoint (nothing before it is processed again) and catches up.
"""

from __future__ import annotations

import io
import json
import time

import cv2
import numpy as np
import pytest

from pipeline.app.embedded import MosquittoProcess
from pipeline.frames.keys import frame_key, parse_frame_key
from pipeline.state.store import StateStore
from tests.deploy_site import PATTERN, SHARDS, AlertCollector, Site, _wait

pytestmark = [pytest.mark.slow, pytest.mark.integration, pytest.mark.timeout(420)]


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    """A private Mosquitto: the retained statuses and alerts of this test stay out of the machine's."""
    proc = MosquittoProcess(workdir=tmp_path_factory.mktemp("broker")).start()
    yield proc.url
    proc.stop()


@pytest.fixture(scope="module")
def site(tmp_path_factory, s3_server, broker):
    site = Site(tmp_path_factory.mktemp("site"), s3_server, broker)
    try:
        site.start_server()
        site.run_cli("work-pool", "create", "citywatch-edge", "--type", "process")
        out = site.run_cli("--no-prompt", "deploy", "--all", "--prefect-file", "deploy/prefect.yaml", timeout=180)
        assert "watch/watch-shard-1" in out
        site.run_cli("automation", "create", "--from-file", "deploy/automations.yaml")
        for k in range(len(SHARDS)):
            site.start_worker(k)
        yield site
    finally:
        site.stop()


@pytest.fixture(scope="module")
def alerts(broker):
    collector = AlertCollector(broker)
    yield collector
    collector.stop()


def _noise_jpeg(seed: int) -> bytes:
    frame = np.random.default_rng(seed).integers(0, 255, (180, 320, 3), dtype=np.uint8)
    return cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 80])[1].tobytes()


def _incidents(messages: list[dict]) -> dict[tuple[str, int], list[dict]]:
    seen: dict[tuple[str, int], list[dict]] = {}
    for m in messages:
        seen.setdefault((m["incident_id"], m["seq"]), []).append(m)
    return seen


def test_two_workers_process_every_camera_exactly_once(site, alerts):
    automations = [a["name"] for a in site.call("POST", "/automations/filter", json={})]
    assert "citywatch-crash-silent-runs" in automations
    deployments = {d["name"]: d for d in site.call("POST", "/deployments/filter", json={})}
    assert {"watch-shard-0", "watch-shard-1", "camera-health", "housekeeping"} <= set(deployments)
    for name in ("watch-shard-0", "watch-shard-1"):
        assert deployments[name]["global_concurrency_limit"]["limit"] == 1
        assert deployments[name]["concurrency_options"]["collision_strategy"] == "ENQUEUE"
        assert deployments[name]["parameters"]["shard"] == name.removeprefix("watch-")
    assert deployments["watch-shard-1"]["work_queue_name"] == "shard-1"

    start = time.time() - 120
    last_keys = {}
    for cams in site.cameras.values():
        for n, cam in enumerate(cams):
            last_keys[cam] = site.put_frames(cam, start, PATTERN, seed=n)[-1]
    runs = {shard: site.run_deployment(f"watch-{shard}", window_s=6) for shard in SHARDS}
    for run_id in runs.values():
        site.wait_state(run_id, {"COMPLETED"}, timeout=150)

    for k, shard in enumerate(SHARDS):
        # checkpoints: exactly this shard's cameras, each at its last frame, and nothing else
        assert site.checkpoints(k) == {cam: last_keys[cam] for cam in site.cameras[shard]}
    all_cams = [c for cams in site.cameras.values() for c in cams]
    _wait(lambda: len(alerts.alerts(all_cams)) >= 4 * len(all_cams), 20, "all alerts")
    msgs = alerts.alerts(all_cams)
    incidents = _incidents(msgs)
    assert all(len(v) == 1 for v in incidents.values()), "an alert arrived twice"
    for k, shard in enumerate(SHARDS):
        for cam in site.cameras[shard]:
            mine = [m for m in msgs if m["camera"]["id"] == cam]
            assert sorted(m["state"] for m in mine) == ["end", "end", "start", "start"], mine
            assert {m["worker"] for m in mine} == {f"worker-{k}"}  # only the shard's worker
            assert all(m["frame"]["key"].startswith(cam + "/") for m in mine)


def test_killed_worker_resumes_from_checkpoint(site, alerts):
    cams = site.cameras["shard-0"]
    start = time.time() - 60
    first = {cam: site.put_frames(cam, start, PATTERN, seed=10 + n) for n, cam in enumerate(cams)}
    t0 = time.time()
    run_id = site.run_deployment("watch-shard-0", window_s=120)
    site.wait_state(run_id, {"RUNNING"}, timeout=90)
    _wait(lambda: all(site.checkpoints(0).get(c) == first[c][-1] for c in cams)
          and len([m for m in alerts.alerts(cams, t0) if m["state"] == "end"]) >= 2 * len(cams),
          90, "the first frames to be processed")
    assert site.run_state(run_id) == "RUNNING"  # mid-run: the window has ~100 s to go
    site.kill_tree("worker-0")
    at_kill = site.checkpoints(0)
    store = StateStore(site.state_dir(0) / "state.db")
    pending_at_kill = {json.loads(r.payload)["message_id"] for r in store.pending(10_000)}
    store.close()
    before_restart = {m["message_id"] for m in alerts.alerts(cams)}

    # Cameras keep uploading while the box is down.
    later = {cam: site.put_frames(cam, start + len(PATTERN), PATTERN, seed=20 + n) for n, cam in enumerate(cams)}
    # The dead run still holds its shard's slot; mark it crashed as deploy/automations.yaml does
    # after 90 s without heartbeats (or an operator would), which releases the slot.
    site.call("POST", f"/flow_runs/{run_id}/set_state", json={
        "state": {"type": "CRASHED", "name": "Crashed", "message": "worker killed"}, "force": True})
    assert site.run_state(run_id) == "CRASHED"

    t_restart = time.time()
    site.start_worker(0)
    run2 = site.run_deployment("watch-shard-0", window_s=6)
    site.wait_state(run2, {"COMPLETED"}, timeout=150)
    assert {c: site.checkpoints(0)[c] for c in cams} == {c: later[c][-1] for c in cams}

    after = alerts.alerts(cams, t_restart)
    resent = [m for m in after if m["message_id"] in before_restart]
    assert all(m["message_id"] in pending_at_kill for m in resent), "frames before the checkpoint were processed again"
    for cam in cams:
        new = [m for m in after if m["camera"]["id"] == cam and m["message_id"] not in before_restart]
        assert new, f"no alerts for {cam} after the restart"
        assert all(m["frame"]["key"] > at_kill[cam] for m in new), "a frame before the checkpoint was processed again"
        assert [m["state"] for m in new].count("start") >= 1
    assert all(parse_frame_key(m["frame"]["key"]).camera_id in cams for m in after)


def test_only_the_owning_worker_reports_a_camera_offline(site, alerts):
    # Runs after the tests above, whose runs lasted longer than offline_after_s (4 s).
    offline = alerts.alerts(type_="camera_offline")
    assert offline, "no camera_offline alert at all"
    owner = {cam: f"worker-{k}" for k, shard in enumerate(SHARDS) for cam in site.cameras[shard]}
    wrong = sorted({(m["camera"]["id"], m["worker"]) for m in offline if m["worker"] != owner[m["camera"]["id"]]})
    assert not wrong, f"camera_offline raised by a worker that does not own the camera: {wrong}"


def test_camera_state_survives_three_windows_of_the_process_worker(site, alerts):
    """Each run is a fresh process: detector state (here the obstruction detector's frozen-picture
    clock) and camera health (an open camera_offline incident) must carry over between them."""
    cams = site.cameras["shard-0"]
    jpeg = {cam: _noise_jpeg(seed=40 + n) for n, cam in enumerate(cams)}  # one picture, repeated: frozen
    start = time.time() - 5  # after every checkpoint of the tests above
    windows: list[tuple[float, float]] = []
    for w in range(3):  # 40 s of frame time per window; frozen_after_s is 60 s
        for cam in cams:
            for i in range(40 * w, 40 * (w + 1)):
                key = frame_key(cam, start + i)
                site.minio.put_object("frames", key, io.BytesIO(jpeg[cam]), len(jpeg[cam]), content_type="image/jpeg")
        began = time.time()
        run = site.run_deployment("watch-shard-0", window_s=10)  # > offline_after_s (4 s) after the frames
        site.wait_state(run, {"COMPLETED"}, timeout=150)
        windows.append((began, time.time()))
    time.sleep(1.0)

    def in_window(w: int, type_: str, state: str) -> list[dict]:
        began, ended = windows[w]
        with alerts._lock:
            return [m for t, m in alerts.messages if began <= t <= ended and m["type"] == type_
                    and m["state"] == state and m["camera"]["id"] in cams]

    for cam in cams:
        frozen = [[m for m in in_window(w, "camera_obstructed", "start") if m["camera"]["id"] == cam] for w in range(3)]
        assert frozen[0] == [], "frozen after 40 s of frame time"
        assert frozen[1] and frozen[1][0]["level"] == "frozen", "the frozen clock restarted with the new process"
        assert frozen[2], "frozen picture not seen in the third window"
        starts = [m for w in range(3) for m in in_window(w, "camera_offline", "start") if m["camera"]["id"] == cam]
        ends = [m for w in (1, 2) for m in in_window(w, "camera_offline", "end") if m["camera"]["id"] == cam]
        assert len(starts) == 3, starts
        # The outage begun in window w ends with the first frame of window w+1, under the same id.
        assert [m["incident_id"] for m in ends] == [m["incident_id"] for m in starts[:2]], (starts, ends)
