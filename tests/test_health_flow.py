"""The camera-health flow's parts: newest frame per camera from S3 (SeaweedFS), statuses, and their
retained publication on a real Mosquitto."""

from __future__ import annotations

import io
import json
import threading
import time

import paho.mqtt.client as mqtt
import yaml

from flows.health import camera_statuses, newest_frame_ts, publish_camera_statuses
from pipeline.config.settings import config_from_dict
from pipeline.frames.keys import frame_key

CAMS = ["hf-online", "hf-stale", "hf-old", "hf-never"]


def _put(client, key):
    client.put_object("frames", key, io.BytesIO(b"\xff\xd8x"), 3)


def _setup(minio_client, now):
    if not minio_client.bucket_exists("frames"):
        minio_client.make_bucket("frames")
    for age in (400, 300, 5, 3):
        _put(minio_client, frame_key("hf-online", now - age))
    _put(minio_client, frame_key("hf-stale", now - 61))
    _put(minio_client, frame_key("hf-old", now - 200))
    _put(minio_client, frame_key("hf-online", now + 90))  # stamped in the future: ignored
    _put(minio_client, "hf-online/" + time.strftime("%Y/%m/%d/") + "junk.jpg")


def _config(s3_server, mqtt_url="mqtt://127.0.0.1:1883"):
    return {"s3": {"url": s3_server.url, "access_key": s3_server.access_key, "secret_key": s3_server.secret_key},
            "mqtt": {"url": mqtt_url, "topic_prefix": "hftest"},
            "health": {"stale_after_s": 30, "offline_after_s": 120},
            "cameras": [{"id": c} for c in CAMS]}


def test_newest_frame_and_statuses(minio_client, s3_server):
    now = time.time()
    _setup(minio_client, now)
    assert abs(newest_frame_ts(minio_client, "frames", "hf-online", now, 120) - (now - 3)) < 0.01
    assert newest_frame_ts(minio_client, "frames", "hf-old", now, 120) is None
    assert newest_frame_ts(minio_client, "frames", "hf-old", now, 300) is not None
    statuses = camera_statuses(config_from_dict(_config(s3_server), env={}), minio_client, now)
    assert {c: s["state"] for c, s in statuses.items()} == {
        "hf-online": "online", "hf-stale": "stale", "hf-old": "offline", "hf-never": "offline"}
    assert statuses["hf-never"]["last_frame_time"] is None


def test_publishes_retained_statuses(minio_client, s3_server, mosquitto_factory, tmp_path):
    mqtt_broker = mosquitto_factory().url  # private: retained statuses stay out of the machine's broker
    _setup(minio_client, time.time())
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(_config(s3_server, mqtt_broker)))
    counts = publish_camera_statuses.fn(str(path))
    assert counts == {"online": 1, "stale": 1, "offline": 2}

    got: dict[str, dict] = {}
    done = threading.Event()

    def on_message(client, userdata, msg):
        if msg.retain:
            got[msg.topic.split("/")[2]] = json.loads(msg.payload)
        if len(got) == len(CAMS):
            done.set()

    host, port = mqtt_broker.removeprefix("mqtt://").split(":")
    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    sub.on_message = on_message
    sub.on_connect = lambda c, *a: c.subscribe("hftest/cameras/+/status", qos=1)
    sub.connect(host, int(port))
    sub.loop_start()
    try:
        assert done.wait(10), got
    finally:
        sub.loop_stop()
        sub.disconnect()
    assert got["hf-online"]["state"] == "online" and got["hf-never"]["state"] == "offline"
    assert all(s["source"] == "camera-health" for s in got.values())
