"""Secrets never reach the logs: a watch cycle with an S3 secret key and an MQTT password (from the
environment) at DEBUG level, in-process (caplog, every logger) and as a subprocess (its stderr),
including the failure paths that like to print credentials: a refused MQTT login, an S3 outage,
a bad config."""

from __future__ import annotations

import logging
import os
import subprocess
import time
import uuid

import pytest
import yaml
from typer.testing import CliRunner

from pipeline.app.cli import app
from pipeline.app.embedded import free_port
from pipeline.config.settings import config_from_dict
from pipeline.delivery.mqtt import Subscriber
from pipeline.delivery.publisher import MqttPublisher
from pipeline.frames.store import FrameStore, FrameStoreUnavailable, make_minio
from pipeline.processing.runner import WatchSession
from pipeline.state.store import StateStore
from tests.faults_support import (
    CAMERA_LOCATION,
    TESTER_ACCESS_KEY,
    TESTER_SECRET_KEY,
    Inbox,
    put_scene,
    start_worker_process,
)

S3_SECRET = TESTER_SECRET_KEY  # the session's S3 server checks it (unique to this run)
MQTT_USER = "citywatch-worker"
MQTT_PASSWORD = f"MqttPw-{uuid.uuid4().hex}"
SECRETS = (S3_SECRET, MQTT_PASSWORD)


@pytest.fixture
def auth_broker(mosquitto_factory, tmp_path):
    """A private Mosquitto that only lets MQTT_USER in with MQTT_PASSWORD."""
    pwfile = tmp_path / "passwd"
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(pwfile), MQTT_USER, MQTT_PASSWORD], check=True,
                   capture_output=True)
    pwfile.chmod(0o600)
    return mosquitto_factory(extra_config=f"password_file {pwfile}", allow_anonymous=False)


def _yaml_without_secrets(tmp_path, s3_server, broker, tag: str) -> tuple[dict, dict[str, str]]:
    data = {
        "s3": {"url": s3_server.url, "access_key": TESTER_ACCESS_KEY, "frames_bucket": f"secrets-{tag}",
               "alerts_bucket": f"secrets-{tag}-alerts"},
        "mqtt": {"url": broker.url, "username": MQTT_USER, "topic_prefix": f"cwsec-{tag}"},
        "alerts": {"end_after_s": 5},
        "worker": {"name": f"sec-{tag}", "state_dir": str(tmp_path / "state"), "poll_interval_s": 0.2},
        "cameras": [{"id": "cam-s", "name": "Secret street", "location": CAMERA_LOCATION}],
    }
    env = {"CITYWATCH_S3_SECRET_KEY": S3_SECRET, "CITYWATCH_MQTT_PASSWORD": MQTT_PASSWORD}
    return data, env


def _assert_no_secret(text: str, where: str) -> None:
    for secret in SECRETS:
        assert secret not in text, f"a secret appears in {where}"


def test_watch_cycle_at_debug_logs_no_secret(s3_server, auth_broker, tmp_path, caplog, capsys):
    tag = uuid.uuid4().hex[:8]
    data, env = _yaml_without_secrets(tmp_path, s3_server, auth_broker, tag)
    config = config_from_dict(data, env=env)
    assert config.s3.secret_key.get_secret_value() == S3_SECRET
    caplog.set_level(logging.DEBUG)  # every logger: ours, paho's, urllib3's, minio's
    for name in ("pipeline", "pipeline.delivery.mqtt.paho", "urllib3"):
        logging.getLogger(name).setLevel(logging.DEBUG)

    store = FrameStore(make_minio(config.s3), config.s3.frames_bucket)
    store.ensure_bucket()
    put_scene(store, "cam-s", "fire", time.time() - 600)
    inbox = Inbox()
    sub = Subscriber(config.mqtt, f"sub-{tag}", [f"{config.mqtt.topic_prefix}/alerts/#"], inbox).start()
    try:
        assert sub.wait_subscribed(10), sub.refusal
        with WatchSession(config) as session:
            stats = session.cycle()
            session.drain(10)
            print(repr(config), str(config.mqtt), config.model_dump())  # what a careless debug print shows
        assert stats.frames == 56 and stats.alerts > 0
        assert inbox.wait_for(lambda i: len(i.alerts()) >= stats.alerts, 10)

        # Failure paths: a wrong password, and an S3 endpoint that is down.
        wrong = config.mqtt.model_copy(update={"password": type(config.mqtt.password)("wrong-" + MQTT_PASSWORD)})
        with StateStore(tmp_path / "wrong.db") as state:
            publisher = MqttPublisher(wrong, state, f"wrong-{tag}").start()
            time.sleep(1.5)
            assert not publisher.connected
            publisher.stop()
        down = config.s3.model_copy(update={"url": f"http://127.0.0.1:{free_port()}"})
        with pytest.raises(FrameStoreUnavailable):
            FrameStore(make_minio(down), "frames", retry_for_s=0.5).list_new("cam-s", None, 10)
    finally:
        sub.stop()

    text = caplog.text
    assert "Sending CONNECT" in text, "paho debug output was not captured"
    assert "refused connection" in text, "the wrong password was not logged"
    assert "giving up after" in text, "the S3 outage was not logged"
    _assert_no_secret(text, "the log records")
    _assert_no_secret(capsys.readouterr().out, "repr/str/model_dump of the config")
    for record in caplog.records:
        _assert_no_secret(repr(record.args) + str(record.msg), f"a record of {record.name}")


def test_worker_process_at_debug_writes_no_secret_to_stderr(s3_server, auth_broker, tmp_path):
    tag = uuid.uuid4().hex[:8]
    data, env = _yaml_without_secrets(tmp_path, s3_server, auth_broker, tag)
    config = config_from_dict(data, env=env)
    store = FrameStore(make_minio(config.s3), config.s3.frames_bucket)
    store.ensure_bucket()
    frames = len(put_scene(store, "cam-s", "fire", time.time() - 600))
    path = tmp_path / "citywatch.yaml"
    path.write_text(yaml.safe_dump(data))
    log_path = tmp_path / "worker.log"
    proc = start_worker_process(path, frames, log_path, timeout_s=60, log_level="DEBUG",
                                env={**os.environ, **env})
    assert proc.wait(90) == 0, log_path.read_text()[-3000:]
    stderr = log_path.read_text()
    assert "MQTT connected" in stderr and " DEBUG " in stderr and "incident" in stderr
    _assert_no_secret(stderr, "the worker's stderr")


def test_bad_config_errors_do_not_echo_secrets(tmp_path):
    bad = {
        "s3": {"url": "http://127.0.0.1:9000", "secret_key": S3_SECRET, "timeout_s": "slow"},
        "mqtt": {"url": f"mqtt://{MQTT_USER}:{MQTT_PASSWORD}@broker:notaport"},
        "cameras": [{"id": "c1", "name": "C", "location": CAMERA_LOCATION}],
    }
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(bad))
    for args in (["watch", "--config", str(path), "--once"], ["config", "check", str(path)]):
        result = CliRunner().invoke(app, args)
        assert result.exit_code != 0
        assert "s3.timeout_s" in result.output and "mqtt.url" in result.output, result.output
        _assert_no_secret(result.output, f"`citywatch {args[0]}` output")
    good = {**bad, "s3": {"url": "http://127.0.0.1:9000", "secret_key": S3_SECRET},
            "mqtt": {"url": f"mqtt://{MQTT_USER}:{MQTT_PASSWORD}@broker:1883"}}
    path.write_text(yaml.safe_dump(good))
    result = CliRunner().invoke(app, ["config", "check", str(path)])
    assert result.exit_code == 0 and "ok:" in result.output
    _assert_no_secret(result.output, "`citywatch config check` output")
