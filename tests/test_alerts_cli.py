"""`citywatch alerts` and the console view: filters, injection refusal, live lines from a real broker."""

from __future__ import annotations

import getpass
import os
import signal
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from typer.testing import CliRunner

from pipeline.alerts.evidence import Evidence
from pipeline.alerts.incidents import IncidentEvent
from pipeline.alerts.payload import alert_topic, build_alert, validate_alert_json
from pipeline.app.cli import app
from pipeline.app.console_view import alert_filter, format_alert_line
from pipeline.config.settings import CameraConfig, MqttSettings
from pipeline.delivery.publisher import MqttPublisher
from pipeline.frames.keys import InvalidCameraId
from pipeline.state.store import OutboxMessage, StateStore

T0 = datetime(2026, 11, 22, 20, 0, 0, tzinfo=UTC).timestamp()


def alert(camera_id: str = "cam-1", event_type: str = "fire", state: str = "start", seq: int = 1,
          with_evidence: bool = True) -> bytes:
    camera = CameraConfig(id=camera_id, name="Main St bridge", location={"lat": 52.5, "lon": 13.4})
    event = IncidentEvent(incident_id=f"{camera_id}-{event_type}-20261122T200000000", camera_id=camera_id,
                          type=event_type, state=state, seq=seq, severity="severe", confidence=0.9,
                          frame_ts=T0 + seq, started_ts=T0)
    evidence = Evidence(bucket="alerts", key=f"{camera_id}/x-{seq}.jpg", sha256="a" * 64,
                        url=f"http://s3.example/alerts/{camera_id}/x-{seq}.jpg?X-Amz-Signature=abc",
                        expires_at=datetime.now(UTC) + timedelta(days=1)) if with_evidence else None
    return build_alert(event, camera, frame_bucket="frames", frame_key=None, evidence=evidence, test=True,
                       worker="worker-1").to_json()


def test_alert_filter_and_injection():
    assert alert_filter("citywatch") == "citywatch/alerts/+/+"
    assert alert_filter("city/a", "fire", "cam-1") == "city/a/alerts/fire/cam-1"
    assert alert_filter("citywatch", camera_id="cam_2") == "citywatch/alerts/+/cam_2"
    for bad in ("+", "#", "fire/#", "Fire", "", "fire smoke"):
        with pytest.raises(ValueError, match="event type"):
            alert_filter("citywatch", bad)
    for bad in ("+", "cam/1", "cam#", ""):
        with pytest.raises(InvalidCameraId):
            alert_filter("citywatch", None, bad)


def test_format_alert_line_shows_what_an_operator_needs():
    line = format_alert_line("citywatch/alerts/fire/cam-1", alert(seq=2, state="update"))
    assert line.split("  ")[:7] == ["2026-11-22T20:00:02Z", "TEST", "cam-1 (Main St bridge)", "fire",
                                    "update", "severe", "#2"]
    assert line.endswith("http://s3.example/alerts/cam-1/x-2.jpg?X-Amz-Signature=abc")
    assert "cam-1-fire-20261122T200000000" in line
    assert format_alert_line("citywatch/alerts/fire/cam-1", alert(with_evidence=False)).endswith("no snapshot")
    assert "not JSON" in format_alert_line("citywatch/alerts/fire/cam-1", b"\xff\x00garbage")
    assert "expected an object" in format_alert_line("citywatch/alerts/fire/cam-1", b"[1, 2]")
    partial = format_alert_line("citywatch/alerts/flood/cam-9", b'{"state": "end"}')
    assert partial.split("  ")[2:5] == ["cam-9", "flood", "end"]


@pytest.mark.parametrize("args, message", [
    (["--type", "fire/#"], "event type"),
    (["--type", "+"], "event type"),
    (["--camera", "cam/+"], "camera"),
    (["--camera", "#"], "camera"),
])
def test_cli_refuses_wildcards_and_separators(args, message):
    result = CliRunner().invoke(app, ["alerts", *args])
    assert result.exit_code == 2
    assert message in result.output


def test_cli_reports_a_bad_config(tmp_path):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("mqtt:\n  url: http://nope\n")
    result = CliRunner().invoke(app, ["alerts", "--config", str(cfg)])
    assert result.exit_code == 2
    assert "mqtt.url" in result.output


def _start_cli(config, *args: str) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-X", "faulthandler", "-c", "from pipeline.app.cli import main; main()", "alerts",
                             "--config", str(config), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = proc.stderr.readline()
    assert line.startswith("subscribed to "), line + proc.stderr.read() if proc.poll() is not None else line
    return proc


def _interrupt(proc: subprocess.Popen) -> tuple[str, str]:
    """Ctrl-C the CLI and collect its output; if it does not stop, fail with its threads' stacks."""
    os.kill(proc.pid, signal.SIGINT)
    try:
        return proc.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGABRT)  # faulthandler prints every thread's stack to stderr
        out, err = proc.communicate(timeout=10)
        pytest.fail(f"the CLI did not stop within 10 s of SIGINT:\n{err}")


def _publish(url: str, prefix: str, tmp_path, messages: list[tuple[str, bytes]]) -> None:
    store = StateStore(tmp_path / f"{uuid.uuid4().hex}.db")
    store.enqueue([OutboxMessage(topic, payload) for topic, payload in messages])
    pub = MqttPublisher(MqttSettings(url=url, topic_prefix=prefix), store, "worker-1",
                        client_id=f"p-{uuid.uuid4().hex[:8]}").start()
    try:
        assert pub.flush(5) == len(messages)
    finally:
        pub.stop()


def test_cli_prints_live_alerts_filtered_until_ctrl_c(mqtt_broker, tmp_path):
    prefix = f"cwtest-{uuid.uuid4().hex[:8]}"
    cfg = tmp_path / "citywatch.yaml"
    cfg.write_text(f"mqtt:\n  url: {mqtt_broker}\n  topic_prefix: {prefix}\n")
    proc = _start_cli(cfg, "--type", "fire")
    try:
        _publish(mqtt_broker, prefix, tmp_path, [
            (alert_topic(prefix, "fire", "cam-1"), alert("cam-1")),
            (alert_topic(prefix, "flood", "cam-1"), alert("cam-1", "flood")),   # filtered out by --type
            (alert_topic(prefix, "fire", "cam-2"), alert("cam-2", seq=3, state="end")),
        ])
        first, second = proc.stdout.readline(), proc.stdout.readline()
        time.sleep(0.3)
    finally:
        out, err = _interrupt(proc)
    assert proc.returncode == 0, err
    assert " cam-1 (Main St bridge)  fire  start  severe  #1 " in first
    assert " cam-2 (Main St bridge)  fire  end  severe  #3 " in second
    assert out == "", "the flood alert must not be printed"
    assert "Traceback" not in err


def test_cli_json_prints_raw_payloads_for_one_camera(mqtt_broker, tmp_path):
    prefix = f"cwtest-{uuid.uuid4().hex[:8]}"
    cfg = tmp_path / "citywatch.yaml"
    cfg.write_text(f"mqtt:\n  url: {mqtt_broker}\n  topic_prefix: {prefix}\n")
    proc = _start_cli(cfg, "--camera", "cam-2", "--json", "--count", "1")
    wanted = alert("cam-2", "congestion")
    _publish(mqtt_broker, prefix, tmp_path, [
        (alert_topic(prefix, "fire", "cam-1"), alert("cam-1")),
        (alert_topic(prefix, "congestion", "cam-2"), wanted),
    ])
    out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    doc = validate_alert_json(out.strip())
    assert doc["camera"]["id"] == "cam-2" and doc["type"] == "congestion"
    assert out.strip().encode() == wanted


def test_cli_says_when_the_broker_refuses_it(mosquitto_factory, tmp_path):
    passwd = tmp_path / "passwd"
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(passwd), "ioc", "right-pass"], check=True)
    broker = mosquitto_factory(allow_anonymous=False, extra_config=f"password_file {passwd}\nuser {getpass.getuser()}")
    cfg = tmp_path / "citywatch.yaml"
    cfg.write_text(f"mqtt:\n  url: {broker.url}\n  username: ioc\n  password: wrong-pass\n")
    result = subprocess.run([sys.executable, "-c", "from pipeline.app.cli import main; main()", "alerts",
                             "--config", str(cfg), "--connect-timeout", "2"],
                            capture_output=True, text=True, timeout=20)
    assert result.returncode == 1
    assert "refused the connection" in result.stderr and "wrong-pass" not in result.stderr + result.stdout
