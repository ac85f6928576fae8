"""`WatchSession` against real SeaweedFS S3 and Mosquitto: alerts leave as soon as their camera's batch
commits them, not when the slowest camera of the cycle is done."""

from __future__ import annotations

import threading
import time
import uuid

from pipeline.delivery.mqtt import Subscriber
from pipeline.processing.runner import WatchSession
from tests.faults_support import Inbox, frame_store, put_scene, write_config


def test_an_alert_is_delivered_while_another_camera_of_its_cycle_is_still_busy(s3_server, mqtt_broker, tmp_path):
    tag = uuid.uuid4().hex[:8]
    _, config = write_config(tmp_path, s3_url=s3_server.url, mqtt_url=mqtt_broker, prefix=f"cwsend-{tag}",
                             cameras=["cam-fire", "cam-slow"], bucket=f"send-{tag}", worker_name=f"send-{tag}")
    put_scene(frame_store(config), "cam-fire", "fire", time.time() - 120)
    inbox, alert_received = Inbox(), threading.Event()

    def on_message(topic: str, payload: bytes, retain: bool) -> None:
        inbox(topic, payload, retain)
        if "/alerts/" in topic:
            alert_received.set()

    held: list[bool] = []
    with Subscriber(config.mqtt, f"sub-{tag}", [f"{config.mqtt.topic_prefix}/alerts/#"], on_message) as sub:
        assert sub.wait_subscribed(10)
        with WatchSession(config, threads=2) as session:
            process_camera = session.worker.process_camera

            def busy_until_an_alert_arrives(camera_id: str):
                if camera_id == "cam-slow":  # the cycle cannot end before this camera's batch does
                    held.append(alert_received.wait(30))
                return process_camera(camera_id)

            session.worker.process_camera = busy_until_an_alert_arrives  # type: ignore[method-assign]
            stats = session.cycle()
            assert session.worker.state.outbox_size() == 0
    assert held == [True], "the fire alert waited for the end of the cycle"
    assert stats.alerts >= 1 and stats.delivered >= stats.alerts
    fire = [a for a in inbox.alerts() if a["type"] == "fire"]
    assert fire and fire[0]["state"] == "start" and fire[0]["camera"]["id"] == "cam-fire"
