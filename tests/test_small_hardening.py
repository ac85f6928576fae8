"""The small ones of issue 14, each against the real thing where there is one: the configured
MQTT QoS on the wire, the exit watchdog's setting, no credentials echoed by `config check`, a
clear error for a bad CA file, a warning when PUBACKs stop, and JPEGs with bytes after EOI."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time
import uuid

import pytest

from pipeline.delivery.mqtt import make_client
from pipeline.processing.runner import WatchSession
from tests.faults_support import ROOT, frame_store, put_scene, write_config


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


def _python(code: str, env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env={**os.environ, **env}, capture_output=True,
                          text=True, timeout=timeout)


def test_a_bad_exit_grace_setting_never_breaks_the_import_and_falls_back_with_a_warning(caplog):
    out = _python("import flows.watch", {"CITYWATCH_PREFECT_EXIT_GRACE_S": "soon"})
    assert out.returncode == 0, out.stderr
    from flows.watchdog import DEFAULT_EXIT_GRACE_S, exit_grace_s

    for bad in ("soon", "-1", "0", "nan", "1e9"):
        assert exit_grace_s({"CITYWATCH_PREFECT_EXIT_GRACE_S": bad}) == DEFAULT_EXIT_GRACE_S
    assert "CITYWATCH_PREFECT_EXIT_GRACE_S='soon'" in caplog.text
    assert exit_grace_s({"CITYWATCH_PREFECT_EXIT_GRACE_S": "30"}) == 30.0
    assert exit_grace_s({}) == DEFAULT_EXIT_GRACE_S


def test_the_exit_watchdog_ends_a_process_stuck_on_a_dead_prefect_api_once_armed_and_only_then():
    from pipeline.app.embedded import free_port

    env = {"PREFECT_API_URL": f"http://127.0.0.1:{free_port()}/api"}  # nothing listens there
    started = time.monotonic()
    stuck = _python("import time; from flows.watchdog import ExitWatchdog; ExitWatchdog().arm(1.0); "
                    "time.sleep(60)", env)
    assert stuck.returncode == 1 and "exiting now" in stuck.stderr, stuck.stderr
    assert time.monotonic() - started < 40
    calm = _python("import time; from flows.watchdog import ExitWatchdog; w = ExitWatchdog(); w.arm(1.0); "
                   "w.disarm(); time.sleep(3); print('done')", env)
    assert calm.returncode == 0 and calm.stdout.strip() == "done", calm.stderr
    source = (ROOT / "flows" / "watchdog.py").read_text()
    assert "threading._" not in source, "the watchdog must not read private threading state"


def test_config_check_never_echoes_credentials_in_the_s3_url(tmp_path):
    from typer.testing import CliRunner

    from pipeline.app.cli import app
    from pipeline.config.settings import ConfigError, config_from_dict

    path = tmp_path / "c.yaml"
    path.write_text("s3: {url: 'http://AKIAURLKEY:url-secret-93@minio.example:9000'}\n")
    result = CliRunner().invoke(app, ["config", "check", str(path)])
    assert result.exit_code == 0, result.output
    assert "url-secret-93" not in result.output and "AKIAURLKEY" not in result.output
    assert "S3 http://minio.example:9000" in result.output
    cfg = config_from_dict({"s3": {"url": "http://AKIAURLKEY:url-secret-93@minio.example:9000"}}, env={})
    assert cfg.s3.endpoint == "minio.example:9000"  # what the minio client dials
    assert cfg.s3.access_key.get_secret_value() == "AKIAURLKEY"
    assert cfg.s3.secret_key.get_secret_value() == "url-secret-93"
    try:
        config_from_dict({"s3": {"url": "ftp://AKIAURLKEY:url-secret-93@minio.example"}}, env={})
    except ConfigError as exc:
        assert "s3.url" in str(exc) and "url-secret-93" not in str(exc)
    else:
        raise AssertionError("an ftp:// S3 URL was accepted")


def test_a_bad_ca_file_gives_a_clear_error_not_a_traceback(tmp_path):
    from typer.testing import CliRunner

    from pipeline.app.cli import app
    from pipeline.config.settings import MqttSettings
    from pipeline.delivery.mqtt import MqttSetupError

    bad = tmp_path / "ca.crt"
    bad.write_text("-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n")
    with pytest.raises(MqttSetupError, match=f"mqtt.ca_file: {bad}"):
        make_client(MqttSettings(url="mqtts://localhost:8883", ca_file=bad), "c1")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"mqtt: {{url: 'mqtts://localhost:8883', ca_file: '{bad}'}}\n")
    result = CliRunner().invoke(app, ["alerts", "--config", str(cfg)])
    assert result.exit_code == 2, result.output
    assert "mqtt.ca_file" in result.output and "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_a_warning_is_logged_when_pubacks_stop_coming_and_a_note_when_they_return(
        mosquitto_factory, tmp_path, caplog):
    import signal

    from pipeline.config.settings import MqttSettings
    from pipeline.delivery.publisher import MqttPublisher
    from pipeline.state.store import OutboxMessage, StateStore

    broker = mosquitto_factory()
    store = StateStore(tmp_path / "s.db")
    pub = MqttPublisher(MqttSettings(url=broker.url, topic_prefix="cwpuback"), store, "w-puback",
                        client_id=f"p-{uuid.uuid4().hex[:8]}", puback_warn_s=1.0).start()
    caplog.set_level(logging.INFO, logger="pipeline.delivery.publisher")
    try:
        assert pub.wait_connected(5)
        broker.proc.send_signal(signal.SIGSTOP)  # the connection stays up; nothing is acknowledged
        try:
            store.enqueue([OutboxMessage(f"cwpuback/alerts/fire/cam-{i}", b"x") for i in range(3)])
            assert pub.flush(2.5) == 0
        finally:
            broker.proc.send_signal(signal.SIGCONT)
        assert "has not acknowledged 3 message(s) for 1 s" in caplog.text
        assert pub.flush(5) == 3 and store.outbox_size() == 0
        assert "acknowledges again" in caplog.text
    finally:
        pub.stop()


def _with_exif_thumbnail(jpeg: bytes) -> bytes:
    """``jpeg`` with an APP1 segment holding a whole small JPEG (its own ff d9 before the scan)."""
    import cv2
    import numpy as np

    thumb = cv2.imencode(".jpg", np.full((16, 16, 3), 90, np.uint8))[1].tobytes()
    body = b"Exif\x00\x00" + thumb
    return jpeg[:2] + b"\xff\xe1" + (len(body) + 2).to_bytes(2, "big") + body + jpeg[2:]


@pytest.mark.parametrize("trailer", [b"\x00" * 64, b"\xff" * 64, b"camera-metadata:v=2;" * 40,
                                     b"\xff\xd8\xff\xe0 a second, broken image"])
def test_bytes_after_the_end_of_image_marker_are_accepted(trailer):
    from pipeline.frames.decode import BadFrame, decode_frame
    from sample_media import load_scene

    jpeg = load_scene("fire")[0][1]
    reference = decode_frame(jpeg, max_pixels=4_000_000)
    for data in (jpeg + trailer, _with_exif_thumbnail(jpeg) + trailer):
        image = decode_frame(data, max_pixels=4_000_000)
        assert image.shape == reference.shape and abs(int(image.mean()) - int(reference.mean())) <= 1
    for cut in (_with_exif_thumbnail(jpeg)[: len(jpeg) // 2], jpeg[: len(jpeg) // 2] + b"\x00" * 64):
        with pytest.raises(BadFrame, match="truncated JPEG"):  # a thumbnail's ff d9 is no end of image
            decode_frame(cut, max_pixels=4_000_000)
