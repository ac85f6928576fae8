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


def test_alert_counts_are_json_alerts_even_when_the_prefix_holds_alerts(s3_server, mqtt_broker, tmp_path):
    tag = uuid.uuid4().hex[:8]
    prefix = f"cwcount-{tag}/alerts"  # CAP copies go to <prefix>/cap/...: they hold "/alerts/" too
    _, config = write_config(tmp_path, s3_url=s3_server.url, mqtt_url=mqtt_broker, prefix=prefix,
                             cameras=["cam-c"], bucket=f"count-{tag}", worker_name=f"count-{tag}",
                             alerts={"cap": {"enabled": True}})
    put_scene(frame_store(config), "cam-c", "fire", time.time() - 120)
    topics = _received_while(config, f"{prefix}/#", lambda: WatchSession(config))
    stats = topics.pop()
    json_alerts = sum(t.startswith(f"{prefix}/alerts/") for t in topics)
    cap_copies = sum(t.startswith(f"{prefix}/cap/") for t in topics)
    assert json_alerts == cap_copies >= 1
    assert stats.alerts == json_alerts, (stats.alerts, json_alerts, cap_copies)


def _received_while(config, topic_filter: str, make_session) -> list:
    """Topics received on ``topic_filter`` while a session runs one cycle, then the cycle's stats."""
    received: list = []
    subscribed = threading.Event()
    sub = make_client(config.mqtt, f"sub-{uuid.uuid4().hex[:8]}", clean_start=True, session_expiry_s=0)
    sub.on_connect = lambda c, u, f, rc, p: c.subscribe(topic_filter, qos=1)
    sub.on_subscribe = lambda c, u, mid, rcs, p: subscribed.set()
    sub.on_message = lambda c, u, m: received.append(m.topic)
    sub.loop_start()
    try:
        assert subscribed.wait(10)
        with make_session() as session:
            stats = session.cycle()
            session.drain(10)
        time.sleep(1.0)
    finally:
        sub.disconnect()
        sub.loop_stop()
    return [t for t in received if "/workers/" not in t and "/cameras/" not in t] + [stats]
