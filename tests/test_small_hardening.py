"""The small ones of issue 14, each against the real thing where there is one: the configured
MQTT QoS on the wire, the exit watchdog's setting, no credentials echoed by `config check`, a
clear error for a bad CA file, a warning when PUBACKs stop, and JPEGs with bytes after EOI."""

from __future__ import annotations

import threading
import time
import uuid

from pipeline.mqtt import make_client
from pipeline.runner import WatchSession
from tests.faults_support import frame_store, put_scene, write_config


def test_mqtt_qos_2_is_what_alerts_are_published_and_subscribed_with(s3_server, mqtt_broker, tmp_path):
    tag = uuid.uuid4().hex[:8]
    _, config = write_config(tmp_path, s3_url=s3_server.url, mqtt_url=mqtt_broker, prefix=f"cwqos-{tag}",
                             cameras=["cam-q"], bucket=f"qos-{tag}", worker_name=f"qos-{tag}")
    config = config.model_copy(update={"mqtt": config.mqtt.model_copy(update={"qos": 2})})
    put_scene(frame_store(config), "cam-q", "fire", time.time() - 120)
    received: list[tuple[str, int]] = []
    subscribed = threading.Event()
    sub = make_client(config.mqtt, f"qos-sub-{tag}", clean_start=True, session_expiry_s=0)
    sub.on_connect = lambda c, u, f, rc, p: c.subscribe(f"{config.mqtt.topic_prefix}/alerts/#", qos=2)
    sub.on_subscribe = lambda c, u, mid, rcs, p: subscribed.set()
    sub.on_message = lambda c, u, m: received.append((m.topic, m.qos))
    sub.loop_start()
    try:
        assert subscribed.wait(10)
        with WatchSession(config) as session:
            stats = session.cycle()
            session.drain(10)
        deadline = time.monotonic() + 10
        while len(received) < stats.alerts and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        sub.disconnect()
        sub.loop_stop()
    assert stats.alerts >= 1 and len(received) >= stats.alerts
    assert {qos for _, qos in received} == {2}, received
