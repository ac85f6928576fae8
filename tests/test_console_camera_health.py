"""Camera health in ``/api/cameras`` judged as the page judges it: a camera whose reports stopped
coming is stale, then offline; one whose worker left its last will is "worker offline", whatever
its last report said."""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime

from starlette.testclient import TestClient

from pipeline.app.console import create_app
from pipeline.app.console.camera_health import camera_health
from tests.test_console import make_config, publish


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


def report(state: str, checked_ts: float, worker: str = "edge-01") -> dict:
    return {"camera_id": "cam-x", "state": state, "checked_at": iso(checked_ts), "silent_s": 0.4, "fps": 1.0,
            "worker": worker}


def test_rules_unknown_reported_stale_offline_and_worker_offline():
    now = 1_800_000_000.0
    assert camera_health(None, [], now, 30, 120)["state"] == "unknown"
    assert camera_health(report("online", now - 5), [], now, 30, 120) == {
        "state": "online", "reason": "reported", "age_s": 5.0, "worker": None}
    stale = camera_health(report("online", now - 45), [], now, 30, 120)
    assert (stale["state"], stale["reason"], stale["age_s"]) == ("stale", "no_report_for", 45.0)
    assert camera_health(report("online", now - 121), [], now, 30, 120)["state"] == "offline"
    down = [{"name": "edge-01", "state": "offline", "ts": iso(now - 3)}]
    gone = camera_health(report("online", now - 4), down, now, 30, 120)
    assert (gone["state"], gone["reason"], gone["worker"]) == ("offline", "worker_offline", "edge-01")
    # a report newer than the last will (the worker came back) is believed again
    assert camera_health(report("online", now - 1), [{**down[0], "ts": iso(now - 60)}], now, 30, 120)["state"] == "online"
    assert camera_health(report("bogus", now - 1), [], now, 30, 120)["state"] == "unknown"


def test_only_the_cameras_own_worker_going_offline_marks_it_offline():
    """Two shards: edge-02 leaving its last will says nothing about edge-01's cameras."""
    now = 1_800_000_000.0
    other_down = [{"name": "edge-02", "state": "offline", "ts": iso(now - 3)}]
    assert camera_health(report("online", now - 4, worker="edge-01"), other_down, now, 30, 120)["state"] == "online"
    gone = camera_health(report("online", now - 4, worker="edge-02"), other_down, now, 30, 120)
    assert (gone["state"], gone["worker"]) == ("offline", "edge-02")
    legacy = {k: v for k, v in report("online", now - 4).items() if k != "worker"}  # a status naming no worker
    assert camera_health(legacy, other_down, now, 30, 120)["state"] == "offline"


def test_api_cameras_never_shows_a_silent_camera_or_a_dead_workers_camera_as_online():
    prefix = f"cwhealth{uuid.uuid4().hex[:6]}"
    cfg = make_config("mqtt://127.0.0.1:1", prefix)
    app = create_app(cfg, client_id="console-health-test", extra_hosts=["testserver"], tick_s=60)
    with TestClient(app) as client:
        board, now = app.state.board, time.time()
        board.handle(f"{prefix}/cameras/cam-north/status", json.dumps(report("online", now - 600)).encode())
        board.handle(f"{prefix}/cameras/cam-south/status", json.dumps(report("online", now - 2)).encode())
        health = {c["id"]: c["health"] for c in client.get("/api/cameras").json()["cameras"]}
        assert health["cam-north"]["state"] == "offline" and health["cam-north"]["age_s"] >= 600
        assert health["cam-south"]["state"] == "online"
        board.handle(f"{prefix}/workers/edge-01/status",
                     json.dumps({"state": "offline", "reason": "connection lost", "ts": iso(now)}).encode())
        body = client.get("/api/cameras").json()
        south = next(c for c in body["cameras"] if c["id"] == "cam-south")
        assert south["status"]["state"] == "online"  # the last report, as received
        assert south["health"] == {"state": "offline", "reason": "worker_offline", "age_s": south["health"]["age_s"],
                                   "worker": "edge-01"}
        assert body["workers"][0]["state"] == "offline"


def test_the_camera_health_jobs_stopped_status_does_not_mark_cameras_offline(mqtt_broker):
    """flows/health.py publishes camera statuses through an MqttPublisher named ``<worker>-health``,
    whose stop() leaves ``offline, stopped``: that must not turn every camera to "worker offline"."""
    import tempfile
    from pathlib import Path

    from pipeline.delivery.publisher import MqttPublisher
    from pipeline.state.store import StateStore

    prefix = f"cwhealthjob{uuid.uuid4().hex[:6]}"
    cfg = make_config(mqtt_broker, prefix)
    app = create_app(cfg, client_id=f"console-{prefix}", extra_hosts=["testserver"], tick_s=60)
    with TestClient(app) as client, tempfile.TemporaryDirectory() as tmp:
        board = app.state.board
        board.handle(f"{prefix}/workers/edge-01/status", json.dumps(
            {"state": "online", "worker": "edge-01", "reason": "connected", "ts": iso(time.time() - 300)}).encode())
        store = StateStore(Path(tmp) / "state.db")
        job = MqttPublisher(cfg.mqtt, store, f"{cfg.worker.name}-health", client_id=f"{prefix}-health").start()
        try:
            assert job.wait_connected(10.0)
            job.publish_status(f"{prefix}/cameras/cam-north/status", json.dumps(
                {**report("online", time.time()), "source": "camera-health"}).encode())
            job.flush(5.0)
        finally:
            job.stop()
            store.close()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            body = client.get("/api/cameras").json()
            if any(w["name"].endswith("-health") and w["state"] == "offline" for w in body["workers"]):
                break
            time.sleep(0.1)
        else:
            raise AssertionError(f"the job's offline status never arrived: {body['workers']}")
        north = next(c for c in body["cameras"] if c["id"] == "cam-north")
        assert north["health"]["state"] == "online", north
    publish(cfg.mqtt, f"{prefix}/workers/{cfg.worker.name}-health/status", b"", retain=True)
    publish(cfg.mqtt, f"{prefix}/cameras/cam-north/status", b"", retain=True)
