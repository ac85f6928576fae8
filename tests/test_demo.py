"""`citywatch demo` as a new user runs it, with its alerts sent to another broker."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from pipeline.config.settings import MqttSettings
from pipeline.delivery.mqtt import Subscriber

pytestmark = [pytest.mark.slow, pytest.mark.integration]
ROOT = Path(__file__).resolve().parents[1]


def test_demo_delivers_fire_flood_congestion_to_the_configured_broker(mqtt_broker, tmp_path):
    received: list[dict] = []
    lock = threading.Lock()

    def on_message(topic: str, payload: bytes, retain: bool) -> None:
        with lock:
            received.append(json.loads(payload))

    env = dict(os.environ, CITYWATCH_MQTT_URL=mqtt_broker, PREFECT_HOME=str(tmp_path / "prefect"))
    env.pop("CITYWATCH_S3_URL", None)
    sub = Subscriber(MqttSettings(url=mqtt_broker), "demo-test-ioc", ["citywatch/alerts/#"], on_message).start()
    try:
        assert sub.wait_subscribed(10)
        run = subprocess.run([sys.executable, "-m", "pipeline.app.cli", "demo"], cwd=ROOT, env=env,
                             capture_output=True, text=True, timeout=600)
    finally:
        sub.stop()
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "all expected event types alerted" in run.stdout
    assert "CAP 1.2 on citywatch/cap/fire/demo-fire" in run.stdout
    with lock:
        mine = [a for a in received if a["camera"]["id"].startswith("demo-")]
    starts = {(a["camera"]["id"], a["type"]) for a in mine if a["state"] == "start"}
    assert {("demo-fire", "fire"), ("demo-flood", "flood"), ("demo-traffic", "congestion")} <= starts
    assert all(a["test"] for a in mine)
    assert not [a for a in mine if a["camera"]["id"] == "demo-quiet"]
